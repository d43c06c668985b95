"""Contrastive denoising as a training-only addition to two-stage Deformable
DETR (DN-DETR, arXiv 2203.01305; DINO's groups, arXiv 2203.03605).

Each check compares with something computed without the denoising code: the
plain two-stage ``DeformableDETR`` loaded with the same weights (inference,
and the matching and encoder losses in training, which the attention mask
must keep free of the denoising queries), and the two-stage proposals'
own embedding of a box (the denoising queries' positional queries).
"""
import copy
import math

import pytest
import torch
from helpers.bccd_config_run import shrink_coco_r50, train_and_test_on_bccd
from helpers.ddetr_model_utils import (VARIANTS, assert_same_eval_outputs,
                                       build_our_model, load_our_config,
                                       make_batch, perturb_, set_dropout_)
from helpers.paths import REPO_ROOT
from mmengine.config import Config
from torch.testing import assert_close

from ddetr_plugin.models.layers.positional_encoding import sine_embedding

TWO_STAGE = VARIANTS[2]  # refine + two-stage
NUM_DN_QUERIES = 12


def _dn_config(name=TWO_STAGE, **dn_args):
    cfg = load_our_config(name)
    cfg.model.update(
        type='DNDeformableDETR',
        dn_cfg=dict(
            label_noise_scale=0.5,
            box_noise_scale=1.0,
            group_cfg=dict(dynamic=True, num_dn_queries=NUM_DN_QUERIES)),
        **dn_args)
    cfg.model.bbox_head.type = 'DNDeformableDETRHead'
    return cfg


@pytest.fixture(scope='module')
def models():
    """(plain, denoising) with the same weights, dropout off."""
    torch.manual_seed(0)
    denoising = build_our_model(_dn_config())
    perturb_(denoising)
    plain = build_our_model(load_our_config(TWO_STAGE))
    # the training-only label embedding is dropped on load
    plain.load_state_dict(denoising.state_dict(), strict=True)
    for model in plain, denoising:
        set_dropout_(model, 0.)
    return plain, denoising


def _preprocess(model, training, **batch_args):
    return model.data_preprocessor(make_batch(**batch_args), training)


def test_inference_is_the_plain_models(models):
    """Eval mode: no denoising query is built; outputs are bitwise the
    plain config's with the same (loaded) weights."""
    plain, denoising = models
    assert_same_eval_outputs(plain, denoising, _preprocess(plain, False))


@pytest.mark.parametrize('empty_gt', [False, True])
def test_matching_losses_are_the_plain_models(models, empty_gt):
    """Training: the matching queries' and the proposals' losses equal the
    plain model's (the mask keeps the denoising queries out of their
    self-attention); the denoising losses come for every decoder layer."""
    plain, denoising = models
    plain.train()
    denoising.train()
    data = _preprocess(plain, True, empty_gt=empty_gt)
    plain_losses = plain(**copy.deepcopy(data), mode='loss')
    dn_losses = denoising(**copy.deepcopy(data), mode='loss')
    num_layers = denoising.transformer.decoder.num_layers
    dn_names = [f'dn_loss_{t}' for t in ('cls', 'bbox', 'iou')] + [
        f'd{i}.dn_loss_{t}' for i in range(num_layers - 1)
        for t in ('cls', 'bbox', 'iou')
    ]
    assert sorted(dn_losses) == sorted(list(plain_losses) + dn_names)
    for name, value in plain_losses.items():
        assert_close(dn_losses[name], value, rtol=1e-5, atol=1e-6,
                     msg=name)
    for name in dn_names:
        assert torch.isfinite(dn_losses[name]) and dn_losses[name] > 0, name


def test_denoising_queries_are_embedded_as_proposals(models):
    """A denoising query's positional query is the first half of what the
    two-stage proposal embedding makes of its box, its reference box the
    box, its content query the label embedding."""
    _, denoising = models
    transformer = denoising.transformer
    gen = torch.Generator().manual_seed(3)
    boxes = torch.rand(2, 5, 4, generator=gen) * 0.6 + 0.2
    labels = torch.randn(2, 5, transformer.embed_dims, generator=gen)
    query, query_pos, reference = transformer.denoising_queries(
        labels, torch.logit(boxes))
    # independent: two-stage's embedding of a proposal box (Appendix A.4)
    embedded = transformer.pos_trans_norm(
        transformer.pos_trans_fc(
            sine_embedding(boxes * (2 * math.pi),
                           transformer.embed_dims // 2)))
    assert_close(query_pos, embedded[..., :transformer.embed_dims])
    assert_close(reference, boxes)
    assert query is labels


def test_no_ground_truth_keeps_the_label_embedding_in_the_graph(models):
    _, denoising = models
    denoising.train()
    data = _preprocess(denoising, True)
    for sample in data['data_samples']:
        sample.gt_instances = sample.gt_instances[:0]
    denoising.zero_grad(set_to_none=True)
    losses = denoising(**data, mode='loss')
    sum(losses.values()).backward()
    assert denoising.dn_query_generator.label_embedding.weight.grad \
        is not None


@pytest.mark.parametrize('change, match', [
    (dict(as_two_stage=False), 'as_two_stage=True'),
    (dict(bbox_head=dict(type='DeformableDETRHead')), 'denoising loss'),
    (dict(dn_cfg=dict(num_classes=3)), 'set by the detector'),
    (dict(dn_cfg=dict(group_cfg=dict(dynamic=True, num_dn_queries=0))),
     'num_dn_queries'),
])
def test_bad_settings_fail_at_build(change, match):
    cfg = _dn_config()
    for key, value in change.items():
        if isinstance(value, dict):
            cfg.model[key].update(value)
        else:
            cfg.model[key] = value
    with pytest.raises(ValueError, match=match):
        build_our_model(cfg)


def test_denoising_and_one2many_queries_are_refused(models):
    _, denoising = models
    transformer = copy.deepcopy(denoising.transformer)
    transformer.num_queries_one2many = 6
    transformer.train()
    with pytest.raises(ValueError, match='cannot be combined'):
        transformer.forward(
            [torch.zeros(1, transformer.embed_dims, 4, 4)] *
            transformer.num_feature_levels,
            [torch.zeros(1, 4, 4, dtype=torch.bool)] *
            transformer.num_feature_levels,
            reg_branches=denoising.bbox_head.reg_branches,
            proposal_branches=denoising.bbox_head.proposal_branches,
            dn_label_query=torch.zeros(1, 2, transformer.embed_dims),
            dn_bbox_query=torch.zeros(1, 2, 4),
            dn_mask=torch.zeros(2 + 36, 2 + 36, dtype=torch.bool))


DN_CONFIGS = sorted(
    (REPO_ROOT / 'configs' / 'dn_deformable_detr').glob('*.py'))


@pytest.mark.slow
@pytest.mark.parametrize('path', DN_CONFIGS, ids=lambda p: p.stem)
def test_config_trains_on_real_bccd(path, bccd_first_4, tmp_path):
    """Each config, its model shrunk where it is a COCO R50 one, trains one
    epoch on 4 real BCCD images (the denoising losses logged) and tests."""
    cfg = Config.fromfile(path)
    assert cfg.model.type == 'DNDeformableDETR'
    if cfg.model.backbone.type == 'ResNet':
        shrink_coco_r50(cfg.model)
    runner, metrics = train_and_test_on_bccd(cfg, bccd_first_4, tmp_path)
    assert runner.iter == 2
    logged = runner.message_hub.log_scalars
    for name in ('train/loss_cls', 'train/enc_loss_cls',
                 'train/dn_loss_cls', 'train/dn_loss_bbox'):
        assert name in logged, sorted(logged)
    assert 'coco/bbox_mAP' in metrics
