"""mmdet 3.x ``DeformableDETR`` and ``DINO`` checkpoints to ``ddetr_plugin``
ones.

:func:`mmdet_to_ddetr` converts a state_dict, :func:`convert_mmdet_checkpoint`
a checkpoint file (``tools/model_converters/mmdet_to_ddetr.py``).

All three mmdet ``DeformableDETR`` variants (single stage,
``with_box_refine``, ``as_two_stage``) and mmdet's ``DINO`` convert. Our
layout groups the transformer under ``transformer.`` and names the layer norms by what they follow:

================================================  ==========================
mmdet                                             ddetr_plugin
================================================  ==========================
``backbone.*``, ``bbox_head.*``                   unchanged
``neck.convs.{i}.*``                              ``neck.input_projs.{i}.*``
``neck.extra_convs.{i}.*``                        ``neck.extra_projs.{i}.*``
``level_embed``, ``query_embedding``,             ``transformer.<same>``
``reference_points_fc``, ``memory_trans_fc``,
``memory_trans_norm``, ``pos_trans_fc``,
``pos_trans_norm``, (DINO) ``decoder.norm``,
``decoder.ref_point_head``
``dn_query_generator.*`` (DINO)                  unchanged
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
from typing import Dict, List, Mapping, Optional

import torch
from torch import Tensor

from .detr_keys import (DECODER_LAYER_KEYS, DINO_KEYS, ENCODER_LAYER_KEYS,
                        SINGLE_STAGE_KEYS, TWO_STAGE_KEYS, missing_keys)

_LAYERS = {'encoder': ENCODER_LAYER_KEYS, 'decoder': DECODER_LAYER_KEYS}
_TRANSFORMER = ['level_embed'] + SINGLE_STAGE_KEYS + TWO_STAGE_KEYS + DINO_KEYS

_PREFIXES = {
    'backbone.': 'backbone.',
    'bbox_head.': 'bbox_head.',
    'dn_query_generator.': 'dn_query_generator.',
    'neck.convs.': 'neck.input_projs.',
    'neck.extra_convs.': 'neck.extra_projs.',
}
_LAYER_KEY = re.compile(r'(encoder|decoder)\.layers\.(\d+)\.(.+)')
_OUR_LAYER_KEY = re.compile(r'transformer\.(encoder|decoder)\.layers\.'
                            r'(\d+)\.(.+)')


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


def _mmdet_key(ours: str) -> str:
    """The mmdet name of one of our keys (the inverse of
    :func:`_convert_key`)."""
    for old, new in _PREFIXES.items():
        if ours.startswith(new):
            return old + ours[len(new):]
    match = _OUR_LAYER_KEY.fullmatch(ours)
    if match:
        mmdet = {v: k for k, v in _LAYERS[match[1]].items()}[match[3]]
        return f'{match[1]}.layers.{match[2]}.{mmdet}'
    return ours[len('transformer.'):]


def _missing_keys(state_dict: Mapping[str, Tensor]) -> List[str]:
    """mmdet keys that a DeformableDETR (DINO) of this variant must have
    (:func:`~.detr_keys.missing_keys` of the known keys, in mmdet's
    names)."""
    converted = {_convert_key(k): v for k, v in state_dict.items()}
    converted.pop('', None)
    return [_mmdet_key(k)
            for k in missing_keys(converted, neck_conv_bias=False)]


def mmdet_to_ddetr(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Convert an mmdet 3.x ``DeformableDETR`` or ``DINO`` state_dict to our
    layout.

    Backbone and head keys are kept; neck and transformer keys are renamed
    (see the module docstring). The variant is read from the keys
    (``decoder.ref_point_head`` = DINO, else ``memory_trans_fc`` =
    two-stage); tensors are not copied.

    Args:
        state_dict (Mapping[str, Tensor]): mmdet model weights, e.g.
            ``torch.load(ckpt)['state_dict']``.

    Returns:
        dict[str, Tensor]: an ``OrderedDict`` in the input's order, loadable
        with ``strict=True`` into our ``DeformableDETR`` (``DINO``) of the
        same config.

    Raises:
        KeyError: unknown keys (no mmdet DeformableDETR or DINO parameter), or keys
            missing for the variant (``level_embed``, the queries or
            proposal layers, a parameter of some encoder/decoder layer, of
            a prediction branch or of a neck level; see
            :func:`~.detr_keys.missing_keys`); the message lists them in
            mmdet's names.
    """
    unknown = [k for k in state_dict if not _convert_key(k)]
    missing = _missing_keys(state_dict)
    if unknown or missing:
        raise KeyError('not an mmdet DeformableDETR or DINO state_dict: '
                       f'unknown keys {unknown}, missing keys {missing}')
    return OrderedDict((_convert_key(k), v) for k, v in state_dict.items())


def convert_mmdet_checkpoint(src: str, out: Optional[str] = None) -> dict:
    """Convert the mmdet checkpoint file ``src`` with :func:`mmdet_to_ddetr`.

    ``src`` is read with ``torch.load(weights_only=True)``, which also
    accepts the Runner-checkpoint types that importing ``ddetr_plugin``
    allow-lists (:mod:`ddetr_plugin.engine.checkpoint`); a bare state_dict
    is accepted too. Only ``meta`` and the converted
    ``state_dict`` are kept (the optimizer state and anything else is
    dropped), so the result loads with ``load_from=OUT`` or
    ``tools/test.py CONFIG OUT`` and the matching config of
    ``configs/deformable_detr/`` or ``configs/dino/`` (``strict=True``).

    Args:
        src (str): An mmdet 3.x ``DeformableDETR`` (any variant) or
            ``DINO`` checkpoint.
        out (str, optional): Where to ``torch.save`` the result; its folder
            is created.

    Returns:
        dict: ``{'meta': <src's meta or {}>, 'state_dict': <converted>}``.

    Raises:
        KeyError: See :func:`mmdet_to_ddetr`.
        pickle.UnpicklingError: ``src`` holds other pickled objects
            (refused by ``weights_only``).
    """
    checkpoint = torch.load(src, map_location='cpu', weights_only=True)
    state_dict = checkpoint.get('state_dict', checkpoint)
    converted = dict(
        meta=checkpoint.get('meta', {}), state_dict=mmdet_to_ddetr(state_dict))
    if out is not None:
        if osp.dirname(out):
            os.makedirs(osp.dirname(out), exist_ok=True)
        torch.save(converted, out)
    return converted
