"""The backbone's batch norms folded into their convolutions (mmengine's
``efficient_conv_bn_eval``, applied by ``turn_on_conv_bn_eval_from_config``
from our configs' runtime) against the same model run unfolded: the same
outputs, losses and gradients, every norm of the backbone folded, and the
switch on in a real ``tools/train.py`` and mmdet's ``tools/test.py`` run
(``test_mmdet_tools.py``)."""
import copy

import pytest
import torch
from helpers.ddetr_model_utils import (build_our_model, load_our_config,
                                       make_batch, perturb_, set_dropout_)
from helpers.paths import BCCD_CONFIG
from mmengine.config import Config
from mmengine.model.efficient_conv_bn_eval import \
    efficient_conv_bn_eval_control
from torch import nn
from torch.testing import assert_close

from ddetr_plugin.engine.conv_bn_eval import turn_on_conv_bn_eval_from_config

R50_REFINE = 'deformable-detr-refine_r50_16xb2-50e_coco.py'


def _bccd_config():
    cfg = Config.fromfile(BCCD_CONFIG)
    cfg.model.backbone.init_cfg = None
    return cfg


@pytest.fixture(scope='module', params=['resnet', 'mobilenetv2'])
def models(request):
    """(plain, folded) with the same weights and dropout off: a small
    ResNet model with frozen norms, and the BCCD demo's MobileNetV2 model,
    whose norms train in eval mode (``norm_eval=True``)."""
    cfg = load_our_config(R50_REFINE) if request.param == 'resnet' \
        else _bccd_config()
    assert cfg.efficient_conv_bn_eval == ['backbone']
    torch.manual_seed(0)
    plain = build_our_model(cfg)
    perturb_(plain)
    # running statistics away from (0, 1), so a norm left out shows
    for module in plain.backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    set_dropout_(plain, 0.)
    folded = copy.deepcopy(plain)
    assert turn_on_conv_bn_eval_from_config(folded, cfg) == ['backbone']
    return plain, folded


def test_every_norm_of_the_backbone_is_folded(models):
    plain, folded = models
    calls = [
        node for node in folded.backbone.forward.__self__.graph.nodes
        if node.target is efficient_conv_bn_eval_control
    ]
    norms = [m for m in plain.backbone.modules()
             if isinstance(m, nn.BatchNorm2d)]
    assert len(calls) == len(norms) > 0
    # state_dict keys and values unchanged
    assert_close(folded.state_dict(), plain.state_dict(), rtol=0, atol=0)


@torch.no_grad()
def test_inference_outputs_equal(models):
    plain, folded = models
    plain.eval()
    folded.eval()
    data = plain.data_preprocessor(make_batch(), False)
    for ours, theirs in zip(folded(**copy.deepcopy(data), mode='tensor'),
                            plain(**copy.deepcopy(data), mode='tensor')):
        assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_training_losses_and_gradients_equal(models):
    """The norms stay in eval mode in training (``norm_eval``) and are
    folded there too; gradients reach the convolutions and, where they
    train (MobileNetV2), the norms' weights and biases."""
    plain, folded = models
    batch = make_batch()
    for sample in batch['data_samples']:  # BCCD has 3 classes
        sample.gt_instances.labels %= plain.bbox_head.num_classes
    data = plain.data_preprocessor(batch, True)
    grads = []
    for model in plain, folded:
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        losses = model(**copy.deepcopy(data), mode='loss')
        sum(losses.values()).backward()
        grads.append((losses, {
            name: p.grad
            for name, p in model.backbone.named_parameters()
            if p.grad is not None
        }))
    (plain_losses, plain_grads), (folded_losses, folded_grads) = grads
    for name, value in plain_losses.items():
        assert_close(folded_losses[name], value, rtol=1e-4, atol=1e-5,
                     msg=name)
    assert sorted(folded_grads) == sorted(plain_grads)
    assert any('bn' in name or 'norm' in name for name in plain_grads) \
        == plain.backbone.norm_cfg['requires_grad']
    for name, grad in plain_grads.items():
        # float rounding of a different summation order, relative to the
        # gradient's scale
        error = (folded_grads[name] - grad).abs().max()
        assert error <= 1e-3 * grad.abs().max(), (name, error)


def test_a_config_without_the_switch_changes_nothing():
    cfg = _bccd_config()
    cfg.efficient_conv_bn_eval = None
    model = build_our_model(cfg)
    assert turn_on_conv_bn_eval_from_config(model, cfg) is None
    assert 'forward' not in vars(model.backbone)
