"""``draw_pr_curves``: one panel per IoU setting, each class in its colour
(the dataset palette's, else matplotlib's tab10), the curve where its
precision and recall put it."""
import numpy as np
import pytest

from ddetr_plugin.evaluation import ClassPRCurve
from ddetr_plugin.visualization import draw_pr_curves

RECALL = np.linspace(0, 1, 101)
RED = (220, 20, 60)  # BCCD's RBC colour
TAB10_BLUE = (31, 119, 180)  # matplotlib's tab10 colour 0


def _curve(name: str, iou: str, max_recall: float) -> ClassPRCurve:
    """Precision 1 up to ``max_recall``, 0 after."""
    precision = np.where(RECALL <= max_recall + 1e-9, 1.0, 0.0)
    return ClassPRCurve(class_name=name, iou=iou, recall=RECALL,
                        precision=precision, num_gt=10,
                        ap=float(precision.mean()))


def _pixels(image: np.ndarray, rgb, tolerance=12) -> np.ndarray:
    """``(row, column)`` of the pixels within ``tolerance`` of ``rgb``."""
    close = np.all(np.abs(image.astype(int) - rgb) <= tolerance, axis=-1)
    return np.argwhere(close)


def test_each_class_in_its_colour_where_its_curve_is():
    full = draw_pr_curves([[_curve('RBC', '0.50', 1.0)]],
                          colors={'RBC': RED})
    half = draw_pr_curves([[_curve('RBC', '0.50', 0.5)]],
                          colors={'RBC': RED})
    assert full.shape == half.shape == (360, 400, 3)
    assert full.dtype == np.uint8
    top = slice(0, full.shape[0] // 3)  # precision 1, above the legend
    full_x = _pixels(full[top], RED)[:, 1]
    half_x = _pixels(half[top], RED)[:, 1]
    assert len(full_x) > 100 and len(half_x) > 50
    # the same start, the half curve stops about half an axis earlier
    assert abs(int(full_x.min()) - int(half_x.min())) <= 2
    assert half_x.max() < full_x.max() - 0.3 * full.shape[1]


def test_one_panel_per_iou_and_default_colours():
    image = draw_pr_curves(
        [[_curve('RBC', '0.50', 0.8), _curve('WBC', '0.50', 0.6)],
         [_curve('RBC', '0.50:0.95', 0.4), _curve('WBC', '0.50:0.95', 0.3)]],
        title='coco_bbox_pr_curves, epoch 3', colors={'RBC': RED})
    assert image.shape == (360, 800, 3)
    for colour in (RED, TAB10_BLUE):  # WBC: no palette colour, tab10's 0
        columns = _pixels(image, colour)[:, 1]
        # in both panels
        assert (columns < 400).sum() > 50 and (columns >= 400).sum() > 50


def test_an_empty_panel_is_drawn():
    image = draw_pr_curves([[_curve('RBC', '0.50', 0.8)], []])
    assert image.shape == (360, 800, 3)
    assert len(_pixels(image[:, 400:], TAB10_BLUE)) == 0
    assert len(_pixels(image[:, :400], TAB10_BLUE)) > 50


@pytest.mark.parametrize('panels,message', [
    ([], 'at least one panel'),
    ([[_curve('RBC', '0.50', 1), _curve('WBC', '0.75', 1)]],
     r"one IoU setting, got \['0.50', '0.75'\]"),
])
def test_bad_panels_are_refused(panels, message):
    with pytest.raises(ValueError, match=message):
        draw_pr_curves(panels)
