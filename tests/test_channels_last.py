"""``channels_last``: the detector hands the backbone channels-last images;
the detections, losses and gradients are those of the default layout (the
same weights, to float rounding), and our configs turn it on (the model
base)."""
import copy

import pytest
import torch
from mmengine.config import Config
from torch.testing import assert_close

from helpers.ddetr_model_utils import make_batch, perturb_
from helpers.paths import REPO_ROOT

from ddetr_plugin.registry import MODELS

pytestmark = pytest.mark.usefixtures('plugin_scope')

BCCD_DEMO = 'deformable_detr/deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py'
CONFIGS = [
    BCCD_DEMO,
    'dino/dino_mobilenetv2_1xb1-10e_bccd.py',
    'h_deformable_detr/h-deformable-detr-refine_mobilenetv2_1xb4-10e_bccd.py',
    'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    'dino/dino-4scale_r50_8xb2-12e_coco.py',
]


def _config(name):
    cfg = Config.fromfile(REPO_ROOT / 'configs' / name)
    cfg.model.backbone.init_cfg = None  # no weights file needed
    return cfg


@pytest.mark.parametrize('name', CONFIGS)
def test_configs_turn_it_on(name):
    assert _config(name).model.channels_last is True


def test_class_default_is_off():
    """As mmdet's detectors: the default memory format."""
    cfg = _config(CONFIGS[3])
    cfg.model.pop('channels_last')
    assert MODELS.build(cfg.model).channels_last is False


@pytest.fixture
def model_pair():
    """The BCCD demo model with and without channels_last, same weights."""
    cfg = _config(BCCD_DEMO)
    torch.manual_seed(0)
    channels_last = MODELS.build(cfg.model)
    channels_last.init_weights()
    perturb_(channels_last)
    default = copy.deepcopy(channels_last)
    default.channels_last = False
    return default, channels_last


def _bccd_batch():
    """The shared test batch with labels among BCCD's 3 classes."""
    batch = make_batch()
    for sample in batch['data_samples']:
        sample.gt_instances.labels = sample.gt_instances.labels % 3
    return batch


def _backbone_inputs(model):
    """Runs the test batch's loss; returns the backbone's input and the
    losses."""
    seen = []
    handle = model.backbone.register_forward_pre_hook(
        lambda module, args: seen.append(args[0]))
    try:
        data = model.data_preprocessor(_bccd_batch(), training=True)
        losses = model(**data, mode='loss')
    finally:
        handle.remove()
    return seen[0], losses


def test_backbone_gets_channels_last(model_pair):
    default, channels_last = model_pair
    image, _ = _backbone_inputs(channels_last.eval())
    assert image.is_contiguous(memory_format=torch.channels_last)
    assert not image.is_contiguous()
    image, _ = _backbone_inputs(default.eval())
    assert image.is_contiguous()


def test_same_detections_losses_and_gradients(model_pair):
    """Eval mode (no dropout): the layout changes only the order of the
    convolutions' sums."""
    default, channels_last = model_pair
    results = []
    for model in model_pair:
        model.eval()
        model.zero_grad()
        data = model.data_preprocessor(_bccd_batch(), training=False)
        with torch.no_grad():
            results.append(model(**data, mode='predict'))
        _, losses = _backbone_inputs(model)
        sum(losses.values()).backward()
    for ours, theirs in zip(*results):
        assert_close(ours.pred_instances.scores, theirs.pred_instances.scores,
                     rtol=1e-4, atol=1e-5)
        assert_close(ours.pred_instances.bboxes, theirs.pred_instances.bboxes,
                     rtol=1e-4, atol=1e-3)
    _, losses_default = _backbone_inputs(default)
    _, losses_channels_last = _backbone_inputs(channels_last)
    for key, value in losses_default.items():
        assert_close(losses_channels_last[key], value, rtol=1e-4, atol=1e-6)
    gradients = dict(channels_last.named_parameters())
    checked = 0
    for name, parameter in default.named_parameters():
        if parameter.grad is None:
            continue
        assert_close(gradients[name].grad, parameter.grad, rtol=1e-3,
                     atol=1e-5, msg=name)
        checked += 1
    assert checked > 100
