"""mmdet 3.x ``DeformableDETR`` checkpoints to ``ddetr_plugin`` ones.

:func:`from_mmdet` converts a state_dict, :func:`convert_mmdet_checkpoint`
a checkpoint file (``tools/model_converters/mmdet_to_ddetr.py``).

All three mmdet variants (single stage, ``with_box_refine``,
``as_two_stage``) convert. Our layout groups the transformer under
``transformer.`` and names the layer norms by what they follow:

================================================  ==========================
mmdet                                             ddetr_plugin
================================================  ==========================
``backbone.*``, ``bbox_head.*``                   unchanged
``neck.convs.{i}.*``                              ``neck.input_projs.{i}.*``
``neck.extra_convs.{i}.*``                        ``neck.extra_projs.{i}.*``
``level_embed``, ``query_embedding``,             ``transformer.<same>``
``reference_points_fc``, ``memory_trans_fc``,
``memory_trans_norm``, ``pos_trans_fc``,
``pos_trans_norm``
``encoder.layers.{i}.{self_attn,ffn}.*``          ``transformer.<same>``
``encoder.layers.{i}.norms.{0,1}``                ``...self_attn_norm``,
                                                  ``...ffn_norm``
``decoder.layers.{i}.{self_attn,cross_attn,       ``transformer.<same>``
ffn}.*``
``decoder.layers.{i}.norms.{0,1,2}``              ``...self_attn_norm``,
                                                  ``...cross_attn_norm``,
                                                  ``...ffn_norm``
================================================  ==========================
"""
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor

from ..engine.checkpoint import register_safe_checkpoint_types

_LINEAR = ('weight', 'bias')
_MSDA = [
    f'{proj}.{p}'
    for proj in ('sampling_offsets', 'attention_weights', 'value_proj',
                 'output_proj') for p in _LINEAR
]
_FFN = [f'ffn.layers.0.0.{p}' for p in _LINEAR] + \
    [f'ffn.layers.1.{p}' for p in _LINEAR]

# mmdet suffix -> our suffix, for every key of one layer
_ENCODER_LAYER = {
    **{f'self_attn.{k}': f'self_attn.{k}' for k in _MSDA},
    **{k: k for k in _FFN},
    **{f'norms.0.{p}': f'self_attn_norm.{p}' for p in _LINEAR},
    **{f'norms.1.{p}': f'ffn_norm.{p}' for p in _LINEAR},
}
_DECODER_LAYER = {
    **{
        f'self_attn.attn.{k}': f'self_attn.attn.{k}'
        for k in ('in_proj_weight', 'in_proj_bias', 'out_proj.weight',
                  'out_proj.bias')
    },
    **{f'cross_attn.{k}': f'cross_attn.{k}' for k in _MSDA},
    **{k: k for k in _FFN},
    **{f'norms.0.{p}': f'self_attn_norm.{p}' for p in _LINEAR},
    **{f'norms.1.{p}': f'cross_attn_norm.{p}' for p in _LINEAR},
    **{f'norms.2.{p}': f'ffn_norm.{p}' for p in _LINEAR},
}
_LAYERS = {'encoder': _ENCODER_LAYER, 'decoder': _DECODER_LAYER}

_SINGLE_STAGE = ['query_embedding.weight'] + \
    [f'reference_points_fc.{p}' for p in _LINEAR]
_TWO_STAGE = [
    f'{m}.{p}' for m in ('memory_trans_fc', 'memory_trans_norm',
                         'pos_trans_fc', 'pos_trans_norm') for p in _LINEAR
]
_TRANSFORMER = ['level_embed'] + _SINGLE_STAGE + _TWO_STAGE

_PREFIXES = {
    'backbone.': 'backbone.',
    'bbox_head.': 'bbox_head.',
    'neck.convs.': 'neck.input_projs.',
    'neck.extra_convs.': 'neck.extra_projs.',
}
_LAYER_KEY = re.compile(r'(encoder|decoder)\.layers\.(\d+)\.(.+)')


def _convert_key(key: str) -> str:
    """Our name of one mmdet key; '' if there is none."""
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    if key in _TRANSFORMER:
        return f'transformer.{key}'
    match = _LAYER_KEY.fullmatch(key)
    if match and match[3] in _LAYERS[match[1]]:
        return (f'transformer.{match[1]}.layers.{match[2]}.'
                f'{_LAYERS[match[1]][match[3]]}')
    return ''


def _missing_keys(state_dict: Mapping[str, Tensor]) -> list:
    """mmdet keys that a DeformableDETR of this variant must have."""
    two_stage = 'memory_trans_fc.weight' in state_dict
    expected = ['level_embed'] + (_TWO_STAGE if two_stage else _SINGLE_STAGE)
    for part, layer_keys in _LAYERS.items():
        indices = {
            int(m[2])
            for m in map(_LAYER_KEY.fullmatch, state_dict)
            if m and m[1] == part
        }
        num_layers = max(indices) + 1 if indices else 1
        expected += [
            f'{part}.layers.{i}.{k}' for i in range(num_layers)
            for k in layer_keys
        ]
    return [k for k in expected if k not in state_dict]


def from_mmdet(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Convert an mmdet 3.x ``DeformableDETR`` state_dict to our layout.

    Backbone and head keys are kept; neck and transformer keys are renamed
    (see the module docstring). The variant is read from the keys
    (``memory_trans_fc`` = two-stage); tensors are not copied.

    Args:
        state_dict (Mapping[str, Tensor]): mmdet model weights, e.g.
            ``torch.load(ckpt)['state_dict']``.

    Returns:
        dict[str, Tensor]: an ``OrderedDict`` in the input's order, loadable
        with ``strict=True`` into our ``DeformableDETR`` of the same config.

    Raises:
        KeyError: unknown keys (no mmdet DeformableDETR parameter), or keys
            missing for the variant (``level_embed``, the queries or
            proposal layers, a parameter of some encoder/decoder layer); the
            message lists them.
    """
    unknown = [k for k in state_dict if not _convert_key(k)]
    missing = _missing_keys(state_dict)
    if unknown or missing:
        raise KeyError('not an mmdet DeformableDETR state_dict: '
                       f'unknown keys {unknown}, missing keys {missing}')
    return OrderedDict((_convert_key(k), v) for k, v in state_dict.items())


def convert_mmdet_checkpoint(src: str, out: Optional[str] = None) -> dict:
    """Convert the mmdet checkpoint file ``src`` with :func:`from_mmdet`.

    ``src`` is read with ``torch.load(weights_only=True)`` (plus the
    Runner-checkpoint types of :mod:`ddetr_plugin.engine.checkpoint`); a
    bare state_dict is accepted too. Only ``meta`` and the converted
    ``state_dict`` are kept (the optimizer state and anything else is
    dropped), so the result loads with ``load_from=OUT`` or
    ``tools/test.py CONFIG OUT`` and the matching config of
    ``configs/deformable_detr/`` (``strict=True``).

    Args:
        src (str): An mmdet 3.x ``DeformableDETR`` checkpoint (any variant).
        out (str, optional): Where to ``torch.save`` the result; its folder
            is created.

    Returns:
        dict: ``{'meta': <src's meta or {}>, 'state_dict': <converted>}``.

    Raises:
        KeyError: See :func:`from_mmdet`.
        pickle.UnpicklingError: ``src`` holds other pickled objects
            (refused by ``weights_only``).
    """
    register_safe_checkpoint_types()
    checkpoint = torch.load(src, map_location='cpu', weights_only=True)
    state_dict = checkpoint.get('state_dict', checkpoint)
    converted = dict(
        meta=checkpoint.get('meta', {}), state_dict=from_mmdet(state_dict))
    if out is not None:
        if osp.dirname(out):
            os.makedirs(osp.dirname(out), exist_ok=True)
        torch.save(converted, out)
    return converted
