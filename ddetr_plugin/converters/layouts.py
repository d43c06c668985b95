"""Which of the four checkpoint layouts a state_dict is in, and conversion
of any of them to ours (what ``load_from`` / ``init_cfg`` use, see
:mod:`.load_hook`).

* ``ddetr`` (ours): ``transformer.encoder.layers.*`` and ``bbox_head.*``;
  kept as it is
* ``mmdet`` (mmdet 3.x): ``encoder.layers.*`` and ``bbox_head.*``;
  :func:`.mmdet_to_ddetr`
* ``original`` (fundamentalvision/Deformable-DETR):
  ``transformer.encoder.layers.*`` and ``class_embed.*``;
  :func:`.original_to_ddetr`
* ``hf`` (Hugging Face): ``model.encoder.layers.*``; :func:`.hf_to_ddetr`
"""
from typing import Dict, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from .coco_classes import coco_classes_for
from .hf_checkpoint import hf_to_ddetr
from .mmdet_checkpoint import mmdet_to_ddetr
from .original_checkpoint import original_to_ddetr

_CONVERTERS = dict(
    mmdet=mmdet_to_ddetr, original=original_to_ddetr, hf=hf_to_ddetr)


def unwrap_state_dict(checkpoint: Mapping) -> Mapping[str, Tensor]:
    """The weights of a loaded checkpoint: its ``state_dict`` (mmengine)
    or ``model`` (original repository) entry, else the mapping itself."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def detect_layout(state_dict: Mapping[str, Tensor]) -> str:
    """``'ddetr'``, ``'mmdet'``, ``'original'`` or ``'hf'`` (see the
    module docstring).

    Raises:
        ValueError: none of them; the message shows some of the keys.
    """
    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in state_dict)

    if has('model.encoder.layers.'):
        return 'hf'
    if has('transformer.encoder.layers.'):
        if has('bbox_head.'):
            return 'ddetr'
        if has('class_embed.'):
            return 'original'
    if has('encoder.layers.') and has('bbox_head.'):
        return 'mmdet'
    raise ValueError('not a Deformable DETR checkpoint of a known layout '
                     '(ddetr_plugin, mmdet, original repository, Hugging '
                     f'Face); its first keys are {list(state_dict)[:8]}')


def any_to_ddetr(state_dict: Mapping[str, Tensor]
             ) -> Tuple[Dict[str, Tensor], str]:
    """Convert a state_dict of any layout to ours.

    Args:
        state_dict (Mapping[str, Tensor]): weights in any layout of the
            module docstring.

    Returns:
        tuple: ``(our state_dict, layout found)``; ours is returned as it
        is.

    Raises:
        ValueError: see :func:`detect_layout`.
        KeyError: see the layout's converter.
    """
    layout = detect_layout(state_dict)
    if layout == 'ddetr':
        return dict(state_dict), layout
    return _CONVERTERS[layout](state_dict), layout


def checkpoint_classes(checkpoint: Mapping, num_classes: int
                       ) -> Optional[Sequence[str]]:
    """Names of a checkpoint's class rows: ``meta['dataset_meta']
    ['classes']`` (Runner checkpoints, our converters), else COCO's for 91
    or 80 rows (:func:`~.coco_classes.coco_classes_for`), else None."""
    meta = checkpoint.get('meta') or {}
    classes = (meta.get('dataset_meta') or {}).get('classes')
    if classes is not None and len(classes) == num_classes:
        return tuple(classes)
    return coco_classes_for(num_classes)
