"""``PRCurveHook`` in a real Runner validating the tiny BCCD model on 4
real val images: each class's curves at IoU 0.5 and 0.5:0.95 in
TensorBoard's PR-curve tab (exactly the metric's precision array), the
picture in the log folder and TensorBoard's images; a configuration it
cannot serve is refused before validation runs. (The picture as an MLflow
artifact: tests/test_mlflow_vis_backend.py.)"""
import numpy as np
import pytest
from helpers.tiny_training import (bccd_annotations, scalar_records,
                                   validation_runner, write_tiny_config)

from ddetr_plugin.engine.hooks import PRCurveHook
from ddetr_plugin.evaluation import class_pr_curves

WITH_CURVES = '''
vis_backends = [dict(type='LocalVisBackend'),
                dict(type='TensorboardVisBackend')]
visualizer = dict(vis_backends=vis_backends)
default_hooks = dict(pr_curves=dict(type='PRCurveHook'))
val_evaluator = dict(type='CocoMetricWithPRCurves', ann_file=ann_file,
                     classwise=True)
'''


def _validating_runner(tmp_path, extra: str):
    """A Runner of the tiny BCCD config that only validates."""
    from mmengine.config import Config
    ann_file = bccd_annotations(tmp_path, 4)
    cfg = Config.fromfile(write_tiny_config(tmp_path / 'pr.py', ann_file,
                                            extra=extra))
    return validation_runner(cfg, tmp_path / 'work')


@pytest.mark.slow  # a validation: 5-15 s on 2 busy cores
def test_a_validation_writes_every_class_curve(tmp_path):
    import mmcv
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    from tensorboard.util import tensor_util
    runner = _validating_runner(tmp_path, WITH_CURVES)
    runner.val()
    runner.visualizer.close()  # flushes TensorBoard
    (metric, ) = runner.val_evaluator.metrics
    data = metric.last_precisions['bbox']
    (events, ) = (tmp_path / 'work').glob('*/vis_data/events.out.tfevents*')
    accumulator = EventAccumulator(str(events.parent),
                                   size_guidance={'tensors': 0, 'images': 0})
    accumulator.Reload()
    expected = {}
    for iou, label in ((0.5, '0.50'), (None, '0.50-0.95')):
        curves = class_pr_curves(data, iou)
        assert [c.class_name for c in curves] == ['RBC', 'WBC', 'Platelets']
        for curve in curves:
            expected[f'coco_bbox_pr_curves/{curve.class_name}_iou{label}'] \
                = curve
    assert {tag for tag in accumulator.Tags()['tensors']
            if tag.startswith('coco_bbox_pr_curves/')} == set(expected)
    for tag, curve in expected.items():
        (event, ) = accumulator.Tensors(tag)
        assert event.step == 0  # a validation outside training
        rows = tensor_util.make_ndarray(event.tensor_proto)
        counts = curve.confusion_counts()
        np.testing.assert_allclose(
            rows, np.stack([counts['tp'], counts['fp'], counts['tn'],
                            counts['fn'], curve.precision, curve.recall]),
            rtol=1e-6, atol=1e-6)
    # the picture: in the log folder, and the same pixels in TensorBoard
    (picture, ) = (tmp_path / 'work').glob(
        '*/pr_curves/coco_bbox_pr_curves_epoch_0.png')
    (image, ) = accumulator.Images('coco_bbox_pr_curves')
    assert image.step == 0
    np.testing.assert_array_equal(
        mmcv.imfrombytes(image.encoded_image_string),
        mmcv.imread(str(picture)))


@pytest.mark.parametrize('extra,message,validated', [
    ("val_evaluator = dict(type='CocoMetric', ann_file=ann_file)",
     "PRCurveHook needs the validation evaluator to hold a "
     r"CocoMetricWithPRCurves .* got \['CocoMetric'\]", False),
    pytest.param(
        "default_hooks = dict(pr_curves=dict(type='PRCurveHook', "
        "ious=(0.3, )))",
        r'IoU threshold 0.3 is not one of the evaluated thresholds', True,
        marks=pytest.mark.slow),  # validates first
])
def test_what_it_cannot_draw_is_refused(tmp_path, extra, message,
                                        validated):
    runner = _validating_runner(tmp_path, WITH_CURVES + extra)
    with pytest.raises(ValueError, match=message):
        runner.val()
    assert not list((tmp_path / 'work').glob('*/pr_curves/*.png'))
    # a missing metric is refused before validation runs (the logger hook
    # writes the metrics of a validation before PRCurveHook's turn)
    metrics = [r for r in scalar_records(tmp_path / 'work')
               if 'coco/bbox_mAP' in r]
    assert len(metrics) == int(validated)


def test_no_iou_setting_is_refused():
    with pytest.raises(ValueError, match='at least one IoU setting'):
        PRCurveHook(ious=())
