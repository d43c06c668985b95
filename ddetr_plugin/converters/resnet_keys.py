"""ResNet backbone keys of the original, timm and Hugging Face layouts to
mmdet's ``ResNet`` (``backbone.*`` of our ``DeformableDETR``).

torchvision's and timm's ResNet (the original repository's backbone and
Hugging Face's ``use_timm_backbone=True`` one) already use mmdet's names:
``conv1``, ``bn1``, ``layer{s}.{b}.conv{1,2,3}`` / ``bn{1,2,3}`` and
``layer{s}.{b}.downsample.{0,1}``. Hugging Face's own ``ResNetBackbone``
(``use_timm_backbone=False``) names them differently:

Hugging Face ``ResNetBackbone`` -> mmdet ``ResNet``:

* ``embedder.embedder.convolution.weight`` -> ``conv1.weight``
* ``embedder.embedder.normalization.*`` -> ``bn1.*``
* ``encoder.stages.{s}.layers.{b}.layer.{k}.convolution.weight`` ->
  ``layer{s+1}.{b}.conv{k+1}.weight``
* ``encoder.stages.{s}.layers.{b}.layer.{k}.normalization.*`` ->
  ``layer{s+1}.{b}.bn{k+1}.*``
* ``encoder.stages.{s}.layers.{b}.shortcut.convolution.weight`` ->
  ``layer{s+1}.{b}.downsample.0.weight``
* ``encoder.stages.{s}.layers.{b}.shortcut.normalization.*`` ->
  ``layer{s+1}.{b}.downsample.1.*``

The three layouts freeze the batch norms (``FrozenBatchNorm2d``: no
``num_batches_tracked``); mmdet's ``BatchNorm2d`` has that buffer, so a zero
one is added, and the result loads with ``strict=True``. All three are
pytorch-style bottlenecks (stride in the 3x3 convolution), like mmdet's
``style='pytorch'``.
"""
import re
from typing import Dict, List, Mapping, Tuple

import torch
from torch import Tensor

_BN = ('weight', 'bias', 'running_mean', 'running_var',
       'num_batches_tracked')
_BN_FIELD = '(?:' + '|'.join(_BN) + ')'
_MMDET_KEY = re.compile(
    rf'conv1\.weight|bn1\.{_BN_FIELD}|layer[1-4]\.\d+\.'
    rf'(?:conv[123]\.weight|bn[123]\.{_BN_FIELD}|downsample\.0\.weight|'
    rf'downsample\.1\.{_BN_FIELD})')
_HF_STEM = re.compile(r'embedder\.embedder\.(convolution|normalization)\.'
                      r'(\w+)')
_HF_BLOCK = re.compile(r'encoder\.stages\.(\d+)\.layers\.(\d+)\.'
                       r'(?:layer\.(\d)|shortcut)\.'
                       r'(convolution|normalization)\.(\w+)')


def _hf_to_mmdet_name(key: str) -> str:
    """mmdet name of a Hugging Face ``ResNetBackbone`` key (see the module
    docstring); ``key`` itself if it is none."""
    match = _HF_STEM.fullmatch(key)
    if match:
        module = 'conv1' if match[1] == 'convolution' else 'bn1'
        return f'{module}.{match[2]}'
    match = _HF_BLOCK.fullmatch(key)
    if match is None:
        return key
    is_conv = match[4] == 'convolution'
    if match[3] is None:  # the shortcut
        module = 'downsample.0' if is_conv else 'downsample.1'
    else:
        module = ('conv' if is_conv else 'bn') + str(int(match[3]) + 1)
    return f'layer{int(match[1]) + 1}.{match[2]}.{module}.{match[5]}'


def _required(keys: List[str]) -> List[str]:
    """Every key mmdet's ``ResNet`` needs for the blocks present in
    ``keys``: the stem, conv/bn 1-3 of each block, the downsample of each
    stage's first block."""
    required = ['conv1.weight'] + [f'bn1.{p}' for p in _BN]
    blocks = sorted({
        tuple(int(x) for x in m.groups())
        for m in (re.match(r'layer(\d)\.(\d+)\.', k) for k in keys) if m
    })
    for stage, block in blocks:
        prefix = f'layer{stage}.{block}.'
        for i in (1, 2, 3):
            required += [f'{prefix}conv{i}.weight'
                         ] + [f'{prefix}bn{i}.{p}' for p in _BN]
        if block == 0:
            required += [f'{prefix}downsample.0.weight'] + \
                [f'{prefix}downsample.1.{p}' for p in _BN]
    return required


def resnet_to_mmdet(state_dict: Mapping[str, Tensor]
                    ) -> Tuple[Dict[str, Tensor], List[str], List[str]]:
    """Rename ResNet backbone weights to mmdet's ``ResNet`` names.

    Args:
        state_dict (Mapping[str, Tensor]): backbone keys without their
            prefix, in torchvision/timm names (``layer1.0.conv1.weight``) or
            Hugging Face ``ResNetBackbone`` names
            (``encoder.stages.0.layers.0.layer.0.convolution.weight``).

    Returns:
        tuple: ``(converted, unknown, missing)``: the renamed tensors (plus
        a zero int64 ``num_batches_tracked`` for every batch norm that has
        none), the input keys that are no ResNet weight, and the mmdet keys
        the present blocks still lack.
    """
    converted, unknown = {}, []
    for key, value in state_dict.items():
        name = _hf_to_mmdet_name(key)
        if _MMDET_KEY.fullmatch(name):
            converted[name] = value
        else:
            unknown.append(key)
    for key in list(converted):
        if key.endswith('.running_var'):
            converted.setdefault(
                key[:-len('running_var')] + 'num_batches_tracked',
                torch.tensor(0, dtype=torch.long))
    missing = [k for k in _required(list(converted)) if k not in converted]
    return converted, unknown, missing
