"""``CocoMetricWithPRCurves`` returns exactly mmdet's ``CocoMetric``
results and keeps the precision array of an independent pycocotools
evaluation of the same detections; ``class_pr_curves`` reads per-class
curves out of it whose areas are mmdet's per-class APs. The detections are
real BCCD ground-truth boxes moved, dropped and mixed with false positives
(``helpers.coco_predictions``), evaluated against the real annotations."""
import contextlib
import importlib
import io
import json

import numpy as np
import pytest
from helpers.coco_predictions import jittered_detections
from helpers.paths import BCCD_CLASSES
from helpers.tiny_training import bccd_annotations
from mmdet.evaluation import CocoMetric
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ddetr_plugin.evaluation import (CocoMetricWithPRCurves,
                                     class_pr_curves)
from ddetr_plugin.registry import METRICS


def _evaluate(metric_type, ann_file, samples, **kwargs):
    metric = metric_type(ann_file=str(ann_file), **kwargs)
    metric.dataset_meta = dict(classes=BCCD_CLASSES)
    metric.process({}, samples)
    return metric, metric.evaluate(len(samples))


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    """Our metric and mmdet's on the same detections of 12 BCCD images."""
    folder = tmp_path_factory.mktemp('coco_pr')
    ann_file = bccd_annotations(folder, 12)
    samples = jittered_detections(ann_file, BCCD_CLASSES, seed=0)
    ours, ours_results = _evaluate(
        CocoMetricWithPRCurves, ann_file, samples, classwise=True,
        outfile_prefix=str(folder / 'ours'))
    _, mmdet_results = _evaluate(CocoMetric, ann_file, samples,
                                 classwise=True)
    return dict(folder=folder, ann_file=ann_file, ours=ours,
                ours_results=ours_results, mmdet_results=mmdet_results)


def test_the_results_are_mmdets(evaluated):
    assert evaluated['ours_results'] == evaluated['mmdet_results']
    assert {f'coco/{name}_precision' for name in BCCD_CLASSES} <= set(
        evaluated['ours_results'])


def test_the_precision_array_is_cocos(evaluated):
    """The kept array equals an independent pycocotools evaluation of the
    detections mmdet wrote (``outfile_prefix``), with mmdet's settings."""
    data = evaluated['ours'].last_precisions['bbox']
    gt = COCO(str(evaluated['ann_file']))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
        dt = gt.loadRes(str(evaluated['folder'] / 'ours.bbox.json'))
        coco_eval = COCOeval(gt, dt, 'bbox')
        coco_eval.params.catIds = gt.getCatIds(catNms=list(BCCD_CLASSES))
        coco_eval.params.maxDets = [100, 300, 1000]
        coco_eval.evaluate()
        coco_eval.accumulate()
    np.testing.assert_array_equal(data.precision,
                                  coco_eval.eval['precision'])
    assert data.precision.shape == (10, 101, 3, 4, 3)
    np.testing.assert_array_equal(data.iou_thrs, coco_eval.params.iouThrs)
    np.testing.assert_array_equal(data.rec_thrs, coco_eval.params.recThrs)
    assert data.class_names == BCCD_CLASSES
    assert data.max_dets == (100, 300, 1000)
    annotations = json.loads(evaluated['ann_file'].read_text())
    names = {c['id']: c['name'] for c in annotations['categories']}
    counts = [sum(1 for a in annotations['annotations']
                  if names[a['category_id']] == name and not a['iscrowd'])
              for name in BCCD_CLASSES]
    assert data.num_gts.tolist() == counts and min(counts) > 0


def test_the_curves_areas_are_mmdets_per_class_aps(evaluated):
    data = evaluated['ours'].last_precisions['bbox']
    results = evaluated['ours_results']
    mean_curves = class_pr_curves(data)
    assert [c.class_name for c in mean_curves] == list(BCCD_CLASSES)
    for curve in mean_curves:
        assert curve.iou == '0.50:0.95'
        assert round(curve.ap, 3) == results[f'coco/{curve.class_name}'
                                             '_precision']
    # COCO mAP: the mean of the classes' APs
    assert round(float(np.mean([c.ap for c in mean_curves])), 3) == \
        results['coco/bbox_mAP']
    at_50 = class_pr_curves(data, 0.5)
    assert round(float(np.mean([c.ap for c in at_50])), 3) == \
        results['coco/bbox_mAP_50']
    for curve in at_50:
        assert curve.iou == '0.50'
        assert 0 < curve.ap < 1  # neither no detection nor a perfect one
        np.testing.assert_array_equal(curve.recall, data.rec_thrs)
        # COCO's envelope: precision never rises with recall
        assert np.all(np.diff(curve.precision) <= 0)
        counts = curve.confusion_counts()
        reached = curve.precision > 0
        assert reached.any() and not reached.all()
        np.testing.assert_allclose(counts['tp'] + counts['fn'],
                                   curve.num_gt)
        detected = reached & (curve.recall > 0)  # recall 0: no TP yet
        np.testing.assert_allclose(
            counts['tp'][detected] /
            (counts['tp'][detected] + counts['fp'][detected]),
            curve.precision[detected])
        np.testing.assert_allclose(counts['tp'][reached] / curve.num_gt,
                                   curve.recall[reached])
        assert not counts['tp'][~reached].any()


def test_a_class_without_ground_truth_has_no_curve(tmp_path):
    ann_file = bccd_annotations(tmp_path, 6)
    coco = json.loads(ann_file.read_text())
    platelets = next(c['id'] for c in coco['categories']
                     if c['name'] == 'Platelets')
    coco['annotations'] = [a for a in coco['annotations']
                           if a['category_id'] != platelets]
    ann_file.write_text(json.dumps(coco))
    samples = jittered_detections(ann_file, BCCD_CLASSES, seed=1)
    metric, results = _evaluate(CocoMetricWithPRCurves, ann_file, samples,
                                classwise=True)
    data = metric.last_precisions['bbox']
    assert data.num_gts[BCCD_CLASSES.index('Platelets')] == 0
    assert np.all(data.precision[:, :, BCCD_CLASSES.index('Platelets')]
                  == -1)
    for iou in (0.5, None):
        assert [c.class_name for c in class_pr_curves(data, iou)] == [
            'RBC', 'WBC']
    with pytest.raises(ValueError, match=r'IoU threshold 0.3 is not one of '
                       r'the evaluated thresholds \[0.5, 0.55'):
        class_pr_curves(data, 0.3)


def test_mmdets_coco_eval_is_back_after_an_error(tmp_path):
    module = importlib.import_module(CocoMetric.__module__)
    originals = module.COCOeval, module.COCOevalMP
    ann_file = bccd_annotations(tmp_path, 2)
    samples = jittered_detections(ann_file, BCCD_CLASSES)
    with pytest.raises(KeyError, match='metric item "nothing" is not '
                       'supported'):
        _evaluate(CocoMetricWithPRCurves, ann_file, samples,
                  metric_items=['nothing'])
    assert (module.COCOeval, module.COCOevalMP) == originals
    metric, _ = _evaluate(CocoMetricWithPRCurves, ann_file, samples)
    assert (module.COCOeval, module.COCOevalMP) == originals
    assert set(metric.last_precisions) == {'bbox'}


def test_the_name_resolves_in_our_scope(plugin_scope):
    assert METRICS.get('CocoMetricWithPRCurves') is CocoMetricWithPRCurves
    assert METRICS.get('CocoMetric') is CocoMetric  # mmdet's stays mmdet's
