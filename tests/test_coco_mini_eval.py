"""mmdet's COCO bbox evaluation on real COCO annotations (coco_mini):
non-contiguous category ids, crowd boxes, categories without instances."""
import json

import pytest
import torch
from helpers.paths import shared_data_dir

from mmdet.datasets import CocoDataset
from mmdet.evaluation import CocoMetric


@pytest.fixture(scope='module')
def coco_mini():
    root = shared_data_dir('coco_mini')
    ann_file = str(root / 'instances_mini.json')
    dataset = CocoDataset(ann_file=ann_file,
                          data_prefix=dict(img=str(root / 'images') + '/'),
                          pipeline=[], test_mode=True)
    with open(ann_file) as f:
        raw = json.load(f)
    return ann_file, dataset, raw


def _evaluate(ann_file, dataset, predictions):
    """predictions: per data_info, (bboxes xyxy Nx4, labels N, scores N)."""
    metric = CocoMetric(ann_file=ann_file, metric='bbox', classwise=True)
    metric.dataset_meta = dataset.metainfo
    samples = []
    for info, (bboxes, labels, scores) in zip(dataset, predictions):
        samples.append(dict(
            img_id=info['img_id'], ori_shape=(info['height'], info['width']),
            pred_instances=dict(
                bboxes=torch.as_tensor(bboxes, dtype=torch.float32).reshape(
                    -1, 4),
                labels=torch.as_tensor(labels, dtype=torch.long),
                scores=torch.as_tensor(scores, dtype=torch.float32))))
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def _ground_truth(dataset, crowd=False):
    """The dataset's instances as predictions with score 1; non-crowd ones
    (``ignore_flag`` 0), or the crowd ones if ``crowd``."""
    preds = []
    for info in dataset:
        insts = [i for i in info['instances']
                 if i['ignore_flag'] == int(crowd)]
        preds.append(([i['bbox'] for i in insts],
                      [i['bbox_label'] for i in insts],
                      [1.0] * len(insts)))
    return preds


def test_data_quirks_are_present(coco_mini):
    _, dataset, raw = coco_mini
    cat_ids = [c['id'] for c in raw['categories']]
    assert cat_ids != list(range(1, len(cat_ids) + 1))  # non-contiguous
    used = {a['category_id'] for a in raw['annotations']}
    assert len(used) < len(cat_ids)  # categories without instances
    assert any(a['iscrowd'] for a in raw['annotations'])
    assert len(dataset) == len(raw['images']) == 33
    # labels are contiguous 0..79 through cat2label, in json order
    assert [dataset.cat2label[i] for i in cat_ids] == list(range(80))
    non_crowd = sum(1 for a in raw['annotations'] if not a['iscrowd'])
    assert sum(len(p[0]) for p in _ground_truth(dataset)) == non_crowd


def test_ground_truth_scores_one(coco_mini):
    ann_file, dataset, _ = coco_mini
    results = _evaluate(ann_file, dataset, _ground_truth(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0, abs=1e-3)
    assert results['coco/bbox_mAP_50'] == pytest.approx(1.0, abs=1e-3)
    # every category with instances is perfect, the empty ones are nan
    assert results['coco/person_precision'] == pytest.approx(1.0, abs=1e-3)


def test_detections_on_crowd_regions_are_not_penalised(coco_mini):
    ann_file, dataset, _ = coco_mini
    preds = [tuple(a + b for a, b in zip(gt, crowd)) for gt, crowd in zip(
        _ground_truth(dataset), _ground_truth(dataset, crowd=True))]
    assert sum(len(p[0]) for p in preds) > \
        sum(len(p[0]) for p in _ground_truth(dataset))
    results = _evaluate(ann_file, dataset, preds)
    assert results['coco/bbox_mAP'] == pytest.approx(1.0, abs=1e-3)


def test_perturbed_predictions_score_lower(coco_mini):
    ann_file, dataset, _ = coco_mini
    shifted, dropped = [], []
    for bboxes, labels, scores in _ground_truth(dataset):
        # shift every box right by 40% of its width: IoU ~0.43
        shifted.append(([[x1 + 0.4 * (x2 - x1), y1, x2 + 0.4 * (x2 - x1), y2]
                         for x1, y1, x2, y2 in bboxes], labels, scores))
        dropped.append((bboxes[::2], labels[::2], scores[::2]))
    shifted_ap = _evaluate(ann_file, dataset, shifted)
    assert shifted_ap['coco/bbox_mAP'] < 0.2
    assert shifted_ap['coco/bbox_mAP_50'] < 0.2
    dropped_ap = _evaluate(ann_file, dataset, dropped)
    assert 0.1 < dropped_ap['coco/bbox_mAP'] < 0.9


def test_no_predictions(coco_mini):
    # mmdet logs 'The testing results of the whole dataset is empty.' and
    # reports no bbox metric at all (not 0): it must not crash.
    ann_file, dataset, _ = coco_mini
    empty = [([], [], [])] * len(dataset)
    results = _evaluate(ann_file, dataset, empty)
    assert 'coco/bbox_mAP' not in results
