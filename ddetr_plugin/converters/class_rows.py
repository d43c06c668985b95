"""Fine-tuning on other classes: keep the rows of the checkpoint's class
layers whose class names the new model has, initialise the others.

The issue most reported on the peers' trackers ("AP stays near 0 on my
data": Deformable-DETR issues 27, 55, 173; mmdet 10208) is answered with
"fine-tune from COCO and re-initialise the class head"; classes the
checkpoint knows keep what it learnt for them.
"""
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

_CLASS_LAYER = re.compile(r'bbox_head\.cls_branches\.(\d+)\.(weight|bias)|'
                          r'dn_query_generator\.label_embedding\.weight')


def remap_class_rows(state_dict: Mapping[str, Tensor],
                     checkpoint_classes: Sequence[str],
                     classes: Sequence[str],
                     initial: Mapping[str, Tensor],
                     proposal_layer: Optional[int] = None
                     ) -> Tuple[Dict[str, Tensor], List[str], List[str]]:
    """Rebuild every classification layer for ``classes``.

    Row ``j`` of each ``bbox_head.cls_branches.{i}.{weight,bias}`` (every
    decoder layer and the two-stage proposal layer) and of DINO's
    denoising ``dn_query_generator.label_embedding.weight`` is the
    checkpoint's row
    of the class named ``classes[j]`` if it has one, else the row of
    ``initial`` (the model's own freshly initialised weights: the head's
    ``init_weights``, i.e. the focal-loss prior bias
    ``-log((1 - 0.01) / 0.01)``, and ``nn.Linear``'s weights). Row 0 of
    the two-stage Deformable DETR proposal layer is its foreground score
    (the proposal loss uses class 0), so it is always the checkpoint's row
    0 (DINO's proposal layer scores every class: no such row).

    Args:
        state_dict (Mapping[str, Tensor]): our layout, with
            ``len(checkpoint_classes)`` rows per class layer.
        checkpoint_classes (Sequence[str]): names of its rows.
        classes (Sequence[str]): the new model's classes, in order.
        initial (Mapping[str, Tensor]): the new model's state_dict (its
            class layers have ``len(classes)`` rows).
        proposal_layer (int, optional): index of the two-stage proposal
            layer in ``cls_branches`` whose row 0 is a foreground score;
            None for single-stage models and DINO.

    Returns:
        tuple: ``(state_dict, kept, new)``: the remapped state_dict (other
        tensors shared, not copied), the classes whose rows were kept and
        those initialised.

    Raises:
        ValueError: a class layer whose row count is not
            ``len(checkpoint_classes)``, naming the key and its shape.
    """
    index = {name: i for i, name in enumerate(checkpoint_classes)}
    kept = [name for name in classes if name in index]
    new = [name for name in classes if name not in index]
    remapped = dict(state_dict)
    for key, old in state_dict.items():
        match = _CLASS_LAYER.fullmatch(key)
        if match is None:
            continue
        if old.shape[0] != len(checkpoint_classes):
            raise ValueError(
                f'{key} has shape {tuple(old.shape)}, expected '
                f'{len(checkpoint_classes)} rows, one per checkpoint class')
        rows = initial[key].clone()
        for j, name in enumerate(classes):
            if name in index:
                rows[j] = old[index[name]]
        if proposal_layer is not None and match[1] is not None and \
                int(match[1]) == proposal_layer:
            rows[0] = old[0]
        remapped[key] = rows
    return remapped, kept, new
