"""Checkpoints of the original repository (``fundamentalvision/
Deformable-DETR``: ``r50_deformable_detr-checkpoint.pth``,
``..._plus_iterative_bbox_refinement-checkpoint.pth``,
``..._plus_plus_two_stage-checkpoint.pth``) to ``ddetr_plugin`` ones.

:func:`original_to_ddetr` converts a state_dict (the file's ``model`` entry),
:func:`convert_original_checkpoint` a file
(``tools/model_converters/original_to_ddetr.py``). The table follows the
repository's ``models/deformable_detr.py``, ``deformable_transformer.py``,
``backbone.py`` and ``ops/modules/ms_deform_attn.py``:

original -> ddetr_plugin:

* ``backbone.0.body.*`` (torchvision ResNet-50, ``FrozenBatchNorm2d``) ->
  ``backbone.*`` (mmdet ``ResNet``, + ``num_batches_tracked``), see
  :mod:`.resnet_keys`
* ``input_proj.{i}.0.*`` (1x1 Conv2d, with bias) ->
  ``neck.input_projs.{i}.conv.*``
* ``input_proj.{i}.1.*`` (GroupNorm) -> ``neck.input_projs.{i}.gn.*``
* ``input_proj.{n+j}.{0,1}.*`` (3x3 stride 2) ->
  ``neck.extra_projs.{j}.{conv,gn}.*``
* ``query_embed.weight`` -> ``transformer.query_embedding.weight``
* ``transformer.level_embed`` -> ``transformer.level_embed``
* ``transformer.reference_points.*`` ->
  ``transformer.reference_points_fc.*``
* ``transformer.enc_output.*`` -> ``transformer.memory_trans_fc.*``
* ``transformer.enc_output_norm.*`` -> ``transformer.memory_trans_norm.*``
* ``transformer.pos_trans.*`` -> ``transformer.pos_trans_fc.*``
* ``transformer.pos_trans_norm.*`` -> ``transformer.pos_trans_norm.*``
* ``transformer.encoder.layers.{i}.self_attn.*`` (``MSDeformAttn``:
  ``sampling_offsets``, ``attention_weights``, ``value_proj``,
  ``output_proj``) -> ``transformer.encoder.layers.{i}.self_attn.*``
* ``...encoder.layers.{i}.norm1`` / ``norm2`` -> ``...self_attn_norm`` /
  ``ffn_norm``
* ``...encoder.layers.{i}.linear1`` / ``linear2`` -> ``...ffn.layers.0.0``
  / ``ffn.layers.1``
* ``...decoder.layers.{i}.self_attn.*`` (``nn.MultiheadAttention``:
  ``in_proj_*``, ``out_proj.*``) ->
  ``...decoder.layers.{i}.self_attn.attn.*``
* ``...decoder.layers.{i}.cross_attn.*`` ->
  ``...decoder.layers.{i}.cross_attn.*``
* ``...decoder.layers.{i}.norm2`` / ``norm1`` / ``norm3`` ->
  ``...self_attn_norm`` / ``cross_attn_norm`` / ``ffn_norm``
* ``...decoder.layers.{i}.linear1`` / ``linear2`` -> ``...ffn.layers.0.0``
  / ``ffn.layers.1``
* ``class_embed.{i}.*`` -> ``bbox_head.cls_branches.{i}.*``
* ``bbox_embed.{i}.layers.{0,1,2}.*`` ->
  ``bbox_head.reg_branches.{i}.{0,2,4}.*``
* ``transformer.decoder.{bbox,class}_embed.*`` -> dropped: aliases of the
  head (refinement, two-stage), checked equal

The norms of a decoder layer are numbered in the order the original
creates them (``norm1`` after the cross-attention, ``norm2`` after the
self-attention), not the order they run.

Classes: the released checkpoints were trained with ``num_classes=91``:
output ``c`` is COCO category id ``c`` (ids without a category, and 0,
never get a positive). The converter keeps the 91 rows; the checkpoint's
class list (:data:`~.coco_classes.COCO_91_CLASSES`, ``'N/A'`` at the
unused ids) goes into ``meta['dataset_meta']['classes']``. Loading into a
model with other classes (e.g. COCO's 80 with ``num_classes=80``) keeps
the rows by class name with ``PretrainedClassesHook``, see
:mod:`.class_rows`. The neck's convolutions have biases:
configs for these weights set ``model.neck.bias=True``.
"""
import argparse
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor

from .coco_classes import coco_classes_for
from .detr_keys import (HEAD_RULES, check_converted, convert_backbone,
                        convert_input_projs, drop_head_aliases,
                        expand_shared_branches, num_classes, rename, rule,
                        save_converted, split_prefix)

_ENCODER = r'transformer\.encoder\.layers\.(\d+)\.'
_DECODER = r'transformer\.decoder\.layers\.(\d+)\.'
_OURS_ENCODER = r'transformer.encoder.layers.\1.'
_OURS_DECODER = r'transformer.decoder.layers.\1.'
_RULES = HEAD_RULES + [
    rule(r'query_embed\.weight', 'transformer.query_embedding.weight'),
    rule(r'transformer\.level_embed', 'transformer.level_embed'),
    rule(r'transformer\.reference_points\.(weight|bias)',
         r'transformer.reference_points_fc.\1'),
    rule(r'transformer\.enc_output\.(weight|bias)',
         r'transformer.memory_trans_fc.\1'),
    rule(r'transformer\.enc_output_norm\.(weight|bias)',
         r'transformer.memory_trans_norm.\1'),
    rule(r'transformer\.pos_trans\.(weight|bias)',
         r'transformer.pos_trans_fc.\1'),
    rule(r'transformer\.pos_trans_norm\.(weight|bias)',
         r'transformer.pos_trans_norm.\1'),
    rule(_ENCODER + r'self_attn\.(\w+\.(?:weight|bias))',
         _OURS_ENCODER + r'self_attn.\2'),
    rule(_ENCODER + r'norm1\.(weight|bias)', _OURS_ENCODER +
         r'self_attn_norm.\2'),
    rule(_ENCODER + r'norm2\.(weight|bias)', _OURS_ENCODER + r'ffn_norm.\2'),
    rule(_ENCODER + r'linear1\.(weight|bias)',
         _OURS_ENCODER + r'ffn.layers.0.0.\2'),
    rule(_ENCODER + r'linear2\.(weight|bias)',
         _OURS_ENCODER + r'ffn.layers.1.\2'),
    rule(_DECODER + r'self_attn\.(in_proj_weight|in_proj_bias|'
         r'out_proj\.weight|out_proj\.bias)',
         _OURS_DECODER + r'self_attn.attn.\2'),
    rule(_DECODER + r'cross_attn\.(\w+\.(?:weight|bias))',
         _OURS_DECODER + r'cross_attn.\2'),
    rule(_DECODER + r'norm1\.(weight|bias)',
         _OURS_DECODER + r'cross_attn_norm.\2'),
    rule(_DECODER + r'norm2\.(weight|bias)',
         _OURS_DECODER + r'self_attn_norm.\2'),
    rule(_DECODER + r'norm3\.(weight|bias)', _OURS_DECODER + r'ffn_norm.\2'),
    rule(_DECODER + r'linear1\.(weight|bias)',
         _OURS_DECODER + r'ffn.layers.0.0.\2'),
    rule(_DECODER + r'linear2\.(weight|bias)',
         _OURS_DECODER + r'ffn.layers.1.\2'),
]


def original_to_ddetr(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Convert an original-repository Deformable DETR state_dict.

    All three released variants convert (see the module docstring for the
    table); the variant is in the keys (``transformer.enc_output`` =
    two-stage, distinct ``class_embed.{i}`` = box refinement). Tensors are
    not copied.

    Args:
        state_dict (Mapping[str, Tensor]): the ``model`` entry of an
            original checkpoint (``torch.load(f)['model']``).

    Returns:
        dict[str, Tensor]: our keys, loadable with ``strict=True`` into our
        ``DeformableDETR`` of the same variant with ``neck.bias=True`` and
        ``num_classes`` equal to the checkpoint's (91 for COCO).

    Raises:
        KeyError: keys that are no weight of the original model, or keys
            the variant needs and ``state_dict`` lacks; the message lists
            them.
        ValueError: a decoder alias of the head differs from the head.
    """
    state_dict = drop_head_aliases(state_dict, 'transformer.decoder.')
    backbone, rest = split_prefix(state_dict, 'backbone.0.body.')
    input_projs, rest = split_prefix(rest, 'input_proj.')
    converted, unknown, missing = convert_backbone(backbone,
                                                   'backbone.0.body.')
    necks, neck_unknown = convert_input_projs(
        {f'input_proj.{k}': v for k, v in input_projs.items()})
    others, other_unknown = rename(rest, _RULES)
    converted.update(necks)
    converted.update(others)
    num_decoder_layers = len({
        k.split('.')[3] for k in converted
        if k.startswith('transformer.decoder.layers.')
    })
    two_stage = 'transformer.memory_trans_fc.weight' in converted
    expand_shared_branches(converted, num_decoder_layers + int(two_stage))
    check_converted('original-repository', converted,
                    unknown + neck_unknown + other_unknown, missing)
    return converted


def allow_original_checkpoint_types() -> None:
    """Allow ``argparse.Namespace`` in torch's safe loading (idempotent).

    The released files are training checkpoints whose ``args`` is an
    ``argparse.Namespace``: an object of plain attributes, rebuilt by
    setting its ``__dict__`` (no code runs). Everything else stays refused.
    """
    torch.serialization.add_safe_globals([argparse.Namespace])


def load_original_checkpoint(src: str) -> dict:
    """Read an original-repository checkpoint file safely.

    The released files hold ``model``, and possibly ``optimizer``,
    ``lr_scheduler``, ``epoch`` and ``args``. They are read with
    ``torch.load(weights_only=True)``, allowing
    :func:`allow_original_checkpoint_types` and the Runner-checkpoint types
    that importing ``ddetr_plugin`` allow-lists
    (:mod:`ddetr_plugin.engine.checkpoint`) besides torch's defaults.

    Raises:
        pickle.UnpicklingError: the file holds other pickled objects.
    """
    allow_original_checkpoint_types()
    return torch.load(src, map_location='cpu', weights_only=True)


def convert_original_checkpoint(src: str, out: Optional[str] = None) -> dict:
    """Convert an original-repository checkpoint file with
    :func:`original_to_ddetr`.

    Args:
        src (str): ``*-checkpoint.pth`` of the original repository (any of
            the three variants); a bare state_dict is accepted too.
        out (str, optional): where to ``torch.save`` the result; its folder
            is created.

    Returns:
        dict: see :func:`~.detr_keys.save_converted`; the classes are
        :data:`~.coco_classes.COCO_91_CLASSES` for a 91-class checkpoint.

    Raises:
        KeyError, ValueError: see :func:`original_to_ddetr`.
        pickle.UnpicklingError: see :func:`load_original_checkpoint`.
    """
    checkpoint = load_original_checkpoint(src)
    state_dict = original_to_ddetr(checkpoint.get('model', checkpoint))
    return save_converted(state_dict,
                          coco_classes_for(num_classes(state_dict)), out)
