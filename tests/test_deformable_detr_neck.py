"""``DeformableDETRNeck``: C3-C5 -> 4 levels of 256 channels."""
import pytest
import torch

from ddetr_plugin.registry import MODELS

# our names resolve in our scope whatever scope an earlier test left current
pytestmark = pytest.mark.usefixtures('plugin_scope')

IN_CHANNELS = [512, 1024, 2048]


def _inputs(batch=2, size=(64, 96)):
    h, w = size
    return [
        torch.randn(batch, c, h // s, w // s)
        for c, s in zip(IN_CHANNELS, (8, 16, 32))
    ]


def test_four_levels_from_three():
    neck = MODELS.build(
        dict(type='DeformableDETRNeck', in_channels=IN_CHANNELS, num_outs=4))
    outs = neck(_inputs())
    assert [tuple(o.shape) for o in outs] == [(2, 256, 8, 12),
                                              (2, 256, 4, 6),
                                              (2, 256, 2, 3),
                                              (2, 256, 1, 2)]
    assert neck.input_projs[0].conv.bias is None
    assert neck.input_projs[0].gn.num_groups == 32
    # the extra level convolves C5, not the projected C5
    assert neck.extra_projs[0].conv.in_channels == 2048


def test_more_extra_levels_and_bias():
    neck = MODELS.build(
        dict(
            type='DeformableDETRNeck',
            in_channels=IN_CHANNELS,
            out_channels=64,
            num_outs=5,
            bias=True))
    outs = neck(_inputs(batch=1))
    assert [o.shape[-2:] for o in outs][3:] == [(1, 2), (1, 1)]
    assert all(o.shape[1] == 64 for o in outs)
    assert neck.extra_projs[1].conv.in_channels == 64
    assert neck.input_projs[2].conv.bias is not None


def test_single_scale():
    neck = MODELS.build(
        dict(type='DeformableDETRNeck', in_channels=[2048], num_outs=1))
    (out, ) = neck(_inputs()[-1:])
    assert out.shape == (2, 256, 2, 3)


def test_errors():
    with pytest.raises(ValueError, match='num_outs'):
        MODELS.build(
            dict(
                type='DeformableDETRNeck', in_channels=IN_CHANNELS,
                num_outs=2))
    neck = MODELS.build(
        dict(type='DeformableDETRNeck', in_channels=IN_CHANNELS))
    with pytest.raises(ValueError, match='input maps'):
        neck(_inputs()[:2])
