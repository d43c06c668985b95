"""Hybrid matching (H-DETR, arXiv 2207.13080) on our Deformable DETR.

Each check compares with something computed without the hybrid code: the
plain ``DeformableDETR`` loaded with the same weights (inference, and the
one-to-one losses in training), a plain model whose queries are the
one-to-many ones and whose ground truth is repeated (the one-to-many
losses), and scipy's ``linear_sum_assignment`` on the repeated cost matrix
(the one-to-many targets).
"""
import copy

import numpy as np
import pytest
import torch
from helpers.ddetr_model_utils import (VARIANTS, assert_same_eval_outputs,
                                       build_our_model, load_our_config,
                                       make_batch, perturb_, set_dropout_)
from helpers.bccd_config_run import shrink_coco_r50, train_and_test_on_bccd
from helpers.paths import REPO_ROOT
from mmengine.config import Config
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch.testing import assert_close

from ddetr_plugin.models.layers import (hybrid_self_attn_mask,
                                        repeat_ground_truth)
from ddetr_plugin.registry import MODELS

H_CONFIG_DIR = REPO_ROOT / 'configs' / 'h_deformable_detr'
H_CONFIGS = sorted(H_CONFIG_DIR.glob('*.py'))
NUM_QUERIES_ONE2MANY = 24  # beside SMALL's 30 one-to-one queries
K_ONE2MANY = 3
LAMBDA_ONE2MANY = 0.5


def _hybrid_config(name, **hybrid_args):
    cfg = load_our_config(name)
    cfg.model.update(
        type='HybridDeformableDETR',
        **dict(dict(num_queries_one2many=NUM_QUERIES_ONE2MANY,
                    k_one2many=K_ONE2MANY,
                    lambda_one2many=LAMBDA_ONE2MANY), **hybrid_args))
    return cfg


@pytest.fixture(scope='module', params=VARIANTS)
def models(request):
    """(plain, hybrid) with the same weights, dropout off."""
    torch.manual_seed(0)
    hybrid = build_our_model(_hybrid_config(request.param))
    perturb_(hybrid)
    plain = build_our_model(load_our_config(request.param))
    plain.load_state_dict(hybrid.state_dict(), strict=True)
    for model in plain, hybrid:
        set_dropout_(model, 0.)
    return plain, hybrid


def _preprocess(model, training, **batch_args):
    return model.data_preprocessor(make_batch(**batch_args), training)


def test_mask_separates_the_groups():
    mask = hybrid_self_attn_mask(2, 5, torch.device('cpu'))
    expected = torch.tensor([[0, 0, 1, 1, 1],
                             [0, 0, 1, 1, 1],
                             [1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    with pytest.raises(ValueError, match='num_queries_one2one'):
        hybrid_self_attn_mask(6, 5, torch.device('cpu'))


def test_ground_truth_repeated_in_blocks():
    gt = InstanceData(bboxes=torch.arange(8.).view(2, 4),
                      labels=torch.tensor([4, 7]))
    repeated = repeat_ground_truth(gt, 3)
    assert repeated.labels.tolist() == [4, 7] * 3
    assert torch.equal(repeated.bboxes, gt.bboxes.repeat(3, 1))
    with pytest.raises(ValueError, match='k_one2many'):
        repeat_ground_truth(gt, 0)


def test_inference_is_the_plain_models(models):
    """Eval mode: no one-to-many query is built; outputs are bitwise the
    plain config's with the same (loaded) weights."""
    plain, hybrid = models
    assert_same_eval_outputs(plain, hybrid, _preprocess(plain, False))


@pytest.mark.parametrize('empty_gt', [False, True])
def test_one2one_losses_are_the_plain_models(models, empty_gt):
    """Training: the one-to-one group's losses equal the plain model's
    (the mask keeps the one-to-many queries out of its self-attention);
    every one has its ``_one2many`` twin."""
    plain, hybrid = models
    plain.train()
    hybrid.train()
    data = _preprocess(plain, True, empty_gt=empty_gt)
    plain_losses = plain(**copy.deepcopy(data), mode='loss')
    hybrid_losses = hybrid(**copy.deepcopy(data), mode='loss')
    assert sorted(hybrid_losses) == sorted(
        list(plain_losses) + [f'{name}_one2many' for name in plain_losses])
    for name, value in plain_losses.items():
        assert_close(hybrid_losses[name], value, rtol=1e-5, atol=1e-6,
                     msg=name)
        assert torch.isfinite(hybrid_losses[f'{name}_one2many'])
    if hybrid.as_two_stage:
        assert 'enc_loss_cls_one2many' in hybrid_losses


def _plain_model_of_the_one2many_queries(hybrid, name):
    """A plain single-stage model whose queries are ``hybrid``'s one-to-many
    queries, all other weights shared."""
    cfg = load_our_config(name)
    cfg.model.transformer.num_queries = NUM_QUERIES_ONE2MANY
    model = build_our_model(cfg)
    state = hybrid.state_dict()
    state['transformer.query_embedding.weight'] = state.pop(
        'transformer.query_embedding_one2many.weight')
    model.load_state_dict(state, strict=True)
    set_dropout_(model, 0.)
    return model.train()


@pytest.mark.parametrize('name', VARIANTS[:2])
def test_one2many_losses_are_a_plain_model_on_repeated_ground_truth(name):
    """Single stage: the one-to-many losses equal ``lambda_one2many`` times
    the losses of a plain model whose queries are the one-to-many ones,
    trained on every box repeated ``k_one2many`` times (so the one-to-one
    queries do not leak into them either)."""
    torch.manual_seed(0)
    hybrid = build_our_model(_hybrid_config(name))
    perturb_(hybrid)
    set_dropout_(hybrid, 0.)
    hybrid.train()
    other = _plain_model_of_the_one2many_queries(hybrid, name)
    data = _preprocess(hybrid, True)
    hybrid_losses = hybrid(**copy.deepcopy(data), mode='loss')
    repeated = copy.deepcopy(data)
    for sample in repeated['data_samples']:
        sample.gt_instances = repeat_ground_truth(sample.gt_instances,
                                                  K_ONE2MANY)
    other_losses = other(**repeated, mode='loss')
    for name_, value in other_losses.items():
        assert_close(hybrid_losses[f'{name_}_one2many'],
                     LAMBDA_ONE2MANY * value, rtol=1e-5, atol=1e-6,
                     msg=name_)


@torch.no_grad()
def test_one2many_targets_match_scipy_on_the_repeated_cost(models):
    """The one-to-many group's targets (last decoder layer, first image)
    are scipy's optimal assignment on the cost matrix with its ground-truth
    columns repeated ``k_one2many`` times."""
    _, hybrid = models
    hybrid.train()
    data = _preprocess(hybrid, True)
    samples = data['data_samples']
    outputs = hybrid.forward_transformer(
        hybrid.extract_feat(data['inputs']), samples)
    cls_scores, bbox_preds = hybrid.bbox_head(outputs['hidden_states'],
                                              outputs['references'])
    num_one2one = hybrid.transformer.num_queries
    assert cls_scores.shape[2] == num_one2one + NUM_QUERIES_ONE2MANY
    cls_score = cls_scores[-1, 0, num_one2one:]
    bbox_pred = bbox_preds[-1, 0, num_one2one:]
    gt, meta = samples[0].gt_instances, samples[0].metainfo
    head = hybrid.bbox_head
    labels, _, bbox_targets, bbox_weights, pos_inds = \
        head._get_targets_single(cls_score, bbox_pred,
                                 repeat_ground_truth(gt, K_ONE2MANY), meta)

    # independent: the costs against the original boxes, columns tiled
    pred = InstanceData(
        scores=cls_score,
        bboxes=head.bbox_coder.decode(bbox_pred, meta['img_shape']))
    cost = sum(c(pred_instances=pred, gt_instances=gt, img_meta=meta)
               for c in head.assigner.match_costs)
    rows, cols = linear_sum_assignment(np.tile(cost.numpy(), K_ONE2MANY))
    num_gts = len(gt)
    assert len(rows) == K_ONE2MANY * num_gts  # every repeat matched
    assert sorted(pos_inds.tolist()) == sorted(rows.tolist())
    for row, col in zip(rows, cols):
        assert labels[row] == gt.labels[col % num_gts]
        assert_close(
            bbox_targets[row],
            head.bbox_coder.encode(gt.bboxes[col % num_gts:col % num_gts + 1],
                                   meta['img_shape'])[0])
    background = torch.ones(len(labels), dtype=torch.bool)
    background[torch.as_tensor(rows)] = False
    assert (labels[background] == head.num_classes).all()
    assert (bbox_weights[background] == 0).all()


def test_hybrid_checkpoint_loads_into_the_plain_config():
    name = VARIANTS[0]
    hybrid = build_our_model(_hybrid_config(name))
    state = hybrid.state_dict()
    assert 'transformer.query_embedding_one2many.weight' in state
    plain = build_our_model(load_our_config(name))
    plain.load_state_dict(state, strict=True)  # the extra key is dropped
    assert_close(plain.transformer.query_embedding.weight,
                 hybrid.transformer.query_embedding.weight, rtol=0, atol=0)


@pytest.mark.parametrize('bad, match', [
    (dict(num_queries_one2many=0), 'num_queries_one2many'),
    (dict(num_queries_one2many=2.5), 'num_queries_one2many'),
    (dict(k_one2many=0), 'k_one2many'),
    (dict(num_queries_one2many=4, k_one2many=6), 'cannot hold'),
    (dict(lambda_one2many=-1.0), 'lambda_one2many'),
])
def test_bad_arguments_fail_at_build(bad, match):
    with pytest.raises(ValueError, match=match):
        build_our_model(_hybrid_config(VARIANTS[0], **bad))


def test_num_queries_one2many_in_the_transformer_config_is_refused():
    cfg = _hybrid_config(VARIANTS[0])
    cfg.model.transformer.num_queries_one2many = 10
    with pytest.raises(ValueError, match='set by the detector'):
        build_our_model(cfg)


def test_more_repeated_boxes_than_one2many_queries_trains():
    """3 boxes x 3 repeats > 4 one-to-many queries: every query is matched,
    the surplus repeats stay unmatched, the losses are finite."""
    model = build_our_model(_hybrid_config(VARIANTS[0],
                                           num_queries_one2many=4))
    model.train()
    losses = model(**_preprocess(model, True), mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())


def test_two_stage_with_fewer_tokens_than_queries_trains():
    """Two-stage on images with fewer encoder tokens than the one-to-one
    plus one-to-many queries: fewer proposals, a warning, no crash."""
    model = build_our_model(
        _hybrid_config(VARIANTS[2], num_queries_one2many=500))
    model.train()
    data = _preprocess(model, True)
    with pytest.warns(UserWarning, match='tokens, fewer than'):
        losses = model(**data, mode='loss')
    assert 'loss_cls_one2many' in losses
    assert all(torch.isfinite(v) for v in losses.values())


# each hybrid config and the plain config it inherits
TWINS = {
    'h-deformable-detr_r50_16xb2-50e_coco.py':
    'deformable-detr_r50_16xb2-50e_coco.py',
    'h-deformable-detr-refine_r50_16xb2-50e_coco.py':
    'deformable-detr-refine_r50_16xb2-50e_coco.py',
    'h-deformable-detr-refine-twostage_r50_16xb2-50e_coco.py':
    'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    'h-deformable-detr-refine_mobilenetv2_1xb4-10e_bccd.py':
    'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py',
}


def test_every_hybrid_config_has_a_twin():
    assert sorted(TWINS) == [p.name for p in H_CONFIGS]


@pytest.mark.parametrize('name', sorted(TWINS))
def test_configs_build_the_hybrid_detector(name, plugin_scope):
    """Each config builds the hybrid detector and differs from its plain
    twin in ``configs/deformable_detr/`` only by the hybrid keys (and, for
    the BCCD one, the schedule and the batch size it was measured with):
    the same model at inference, the same data and optimizer."""
    cfg = Config.fromfile(H_CONFIG_DIR / name)
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'HybridDeformableDETR'
    assert model.num_queries_one2many == cfg.model.num_queries_one2many
    plain = Config.fromfile(REPO_ROOT / 'configs' / 'deformable_detr' /
                            TWINS[name])
    hybrid_keys = ('type', 'num_queries_one2many', 'k_one2many',
                   'lambda_one2many')
    assert {k: v for k, v in cfg.model.items() if k not in hybrid_keys} == \
        {k: v for k, v in plain.model.items() if k != 'type'}
    if 'bccd' in name:  # measured with batches of 4, the demo's then
        assert cfg.train_dataloader.batch_size == \
            cfg.auto_scale_lr.base_batch_size == 4
        cfg.train_dataloader.batch_size = plain.train_dataloader.batch_size
    for key in ('train_dataloader', 'test_dataloader', 'optim_wrapper',
                'default_hooks', 'custom_hooks'):
        assert cfg.get(key) == plain.get(key), key
    if 'coco' in name:
        assert cfg.train_cfg == plain.train_cfg
        assert cfg.param_scheduler == plain.param_scheduler


@pytest.mark.slow
@pytest.mark.parametrize('path', H_CONFIGS, ids=lambda p: p.stem)
def test_config_trains_on_real_bccd(path, bccd_first_4, tmp_path):
    """Each config, its model shrunk where it is a COCO R50 one, trains one
    epoch on 4 real BCCD images (the one-to-many losses logged) and
    tests."""
    cfg = Config.fromfile(path)
    if cfg.model.backbone.type == 'ResNet':
        shrink_coco_r50(cfg.model)
        cfg.model.num_queries_one2many = 60
    runner, metrics = train_and_test_on_bccd(cfg, bccd_first_4, tmp_path)
    assert runner.iter == 2
    logged = runner.message_hub.log_scalars
    for name in ('train/loss_cls', 'train/loss_cls_one2many',
                 'train/d0.loss_bbox_one2many'
                 if cfg.model.transformer.decoder.num_layers > 1 else
                 'train/loss_iou_one2many'):
        assert name in logged, sorted(logged)
    assert 'coco/bbox_mAP' in metrics
