"""``NormalizedCXCYWHBBoxCoder``: pixel xyxy <-> normalised cxcywh."""
import pytest
import torch
from torch.testing import assert_close

from ddetr_plugin.models import NormalizedCXCYWHBBoxCoder

IMG_SHAPE = (100, 200)  # (h, w)


def test_known_values():
    coder = NormalizedCXCYWHBBoxCoder()
    box = torch.tensor([[10., 20., 50., 60.]])
    normalised = torch.tensor([[0.15, 0.4, 0.2, 0.4]])
    assert_close(coder.encode(box, IMG_SHAPE), normalised)
    assert_close(coder.decode(normalised, IMG_SHAPE), box)


def test_round_trip():
    coder = NormalizedCXCYWHBBoxCoder()
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 7, 2, generator=gen) * torch.tensor([200., 100.])
    wh = torch.rand(2, 7, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + wh], -1)
    assert_close(coder.decode(coder.encode(boxes, IMG_SHAPE), IMG_SHAPE),
                 boxes)


def test_clamp_to_image():
    coder = NormalizedCXCYWHBBoxCoder()
    pred = torch.tensor([[0.05, 0.95, 0.3, 0.2]])
    assert_close(
        coder.decode(pred, IMG_SHAPE, clamp=True),
        torch.tensor([[0., 85., 40., 100.]]))


def test_wrong_shape():
    with pytest.raises(ValueError, match='4 coordinates'):
        NormalizedCXCYWHBBoxCoder().decode(torch.zeros(3, 2), IMG_SHAPE)
