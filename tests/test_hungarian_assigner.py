"""``HungarianAssigner`` with mmdet's match costs from the registry."""
import pytest
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmengine.structures import InstanceData

from ddetr_plugin.registry import TASK_UTILS

# our names resolve in our scope whatever scope an earlier test left current
pytestmark = pytest.mark.usefixtures('plugin_scope')

IMG_META = dict(img_shape=(100, 200))
DEFORMABLE_DETR_COSTS = [
    dict(type='FocalLossCost', weight=2.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)
]


def _assigner(match_costs=DEFORMABLE_DETR_COSTS):
    return TASK_UTILS.build(
        dict(type='HungarianAssigner', match_costs=match_costs))


def _boxes(num, seed):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=gen) * torch.tensor([150., 60.])
    return torch.cat([xy, xy + 10 + torch.rand(num, 2, generator=gen) * 30],
                     -1)


def _preds(bboxes, num_classes=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return InstanceData(
        scores=torch.randn(len(bboxes), num_classes, generator=gen),
        bboxes=bboxes)


def test_builds_our_class_with_mmdet_costs():
    assigner = _assigner()
    assert type(assigner).__module__.startswith('ddetr_plugin.')
    assert [type(c).__name__ for c in assigner.match_costs] == \
        ['FocalLossCost', 'BBoxL1Cost', 'IoUCost']


def test_known_optimal_matching():
    gt_bboxes = _boxes(4, seed=1)
    # prediction i sits on ground truth perm[i]; two predictions are far off
    perm = torch.tensor([2, 0, 3, 1])
    pred_bboxes = torch.cat([gt_bboxes[perm] + 0.5, _boxes(2, seed=2) + 300])
    gt = InstanceData(bboxes=gt_bboxes, labels=torch.tensor([1, 4, 0, 2]))
    result = _assigner().assign(_preds(pred_bboxes), gt, IMG_META)
    assert isinstance(result, AssignResult)
    assert result.gt_inds.tolist() == (perm + 1).tolist() + [0, 0]
    assert result.labels.tolist() == gt.labels[perm].tolist() + [-1, -1]
    assert result.num_gts == 4


def test_no_ground_truth():
    gt = InstanceData(
        bboxes=torch.zeros((0, 4)), labels=torch.zeros(0, dtype=torch.long))
    result = _assigner().assign(_preds(_boxes(6, seed=3)), gt, IMG_META)
    assert result.gt_inds.tolist() == [0] * 6
    assert result.labels.tolist() == [-1] * 6
    assert result.num_gts == 0


def test_more_ground_truths_than_queries():
    gt = InstanceData(
        bboxes=_boxes(7, seed=4), labels=torch.arange(7) % 5)
    result = _assigner().assign(_preds(_boxes(3, seed=5)), gt, IMG_META)
    matched = result.gt_inds.tolist()
    assert all(i > 0 for i in matched) and len(set(matched)) == 3


def test_nan_cost_is_reported():
    gt = InstanceData(bboxes=_boxes(2, seed=6), labels=torch.tensor([0, 1]))
    pred_bboxes = _boxes(3, seed=7)
    pred_bboxes[0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        _assigner([dict(type='BBoxL1Cost')]).assign(
            _preds(pred_bboxes), gt, IMG_META)
