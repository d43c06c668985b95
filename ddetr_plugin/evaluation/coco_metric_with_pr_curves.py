"""``CocoMetricWithPRCurves``: mmdet's ``CocoMetric`` that keeps COCO's
precision array, and the per-class precision-recall curves in it.

COCO's ``COCOeval.accumulate()`` (pycocotools) computes
``eval['precision']``, shape ``[T, R, K, A, M]``: IoU thresholds x 101
recall points x classes x area ranges x max detections, the interpolated
precision at each recall point (``-1`` for a class without ground truth).
Every COCO AP is a mean over it. mmdet 3.3's ``CocoMetric.compute_metrics``
creates its ``COCOeval`` as a local variable and returns only the rounded
APs, so :class:`CocoMetricWithPRCurves` has that method's module use, for
the duration of the call, subclasses of ``COCOeval``/``COCOevalMP`` that
record each evaluation once accumulated; the metric keeps a copy
(:attr:`CocoMetricWithPRCurves.last_precisions`, one
:class:`CocoPrecision` per IoU type) and returns exactly what mmdet's
returns. :func:`class_pr_curves` turns one into one
:class:`ClassPRCurve` per class, at one IoU threshold or averaged over
COCO's ten (0.50:0.95, the curve whose area is the class's COCO AP).
"""
import contextlib
import importlib
import threading
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from mmdet.evaluation.metrics import CocoMetric

from ddetr_plugin.registry import METRICS

#: the module whose ``COCOeval``/``COCOevalMP`` ``compute_metrics`` uses
_COCO_METRIC_MODULE = CocoMetric.__module__
_PATCH_LOCK = threading.Lock()


@dataclass(frozen=True)
class CocoPrecision:
    """COCO's accumulated precision of one evaluation (one IoU type).

    Attributes:
        iou_type (str): ``'bbox'`` or ``'segm'``.
        precision (np.ndarray): float, ``[T, R, K, A, M]`` as
            ``COCOeval.eval['precision']``: interpolated precision at IoU
            threshold ``t``, recall point ``r``, class ``k``, area range
            ``a`` (0: all), max detections ``m``; ``-1`` where class ``k``
            has no ground truth.
        iou_thrs (np.ndarray): ``[T]`` IoU thresholds.
        rec_thrs (np.ndarray): ``[R]`` recall points (COCO: 0, 0.01, ..., 1).
        class_names (tuple[str]): ``K`` names, in the order of axis 2.
        num_gts (np.ndarray): int ``[K]``: ground-truth boxes of each class
            that COCO counts (not crowd) in the evaluated images, area range
            "all".
        max_dets (tuple[int]): ``M`` detection limits per image, in the
            order of axis 4 (mmdet's ``CocoMetric``: ``proposal_nums``).
    """
    iou_type: str
    precision: np.ndarray
    iou_thrs: np.ndarray
    rec_thrs: np.ndarray
    class_names: Tuple[str, ...]
    num_gts: np.ndarray
    max_dets: Tuple[int, ...]

    @classmethod
    def from_coco_eval(cls, coco_eval) -> 'CocoPrecision':
        """Copy what ``coco_eval`` (pycocotools ``COCOeval`` after
        ``evaluate()`` and ``accumulate()``) computed.

        Raises:
            ValueError: ``coco_eval`` has not been accumulated.
        """
        if not getattr(coco_eval, 'eval', None):
            raise ValueError('COCOeval has no accumulated results: call '
                             'evaluate() and accumulate() first')
        params = coco_eval.params
        cat_ids = list(params.catIds)
        index = {cat_id: k for k, cat_id in enumerate(cat_ids)}
        num_gts = np.zeros(len(cat_ids), dtype=np.int64)
        all_areas = list(params.areaRng[0])
        for image in coco_eval.evalImgs:  # None: no gt, no detection
            if image is not None and list(image['aRng']) == all_areas:
                num_gts[index[image['category_id']]] += int(
                    np.count_nonzero(np.logical_not(image['gtIgnore'])))
        names = tuple(cat['name']
                      for cat in coco_eval.cocoGt.loadCats(cat_ids))
        return cls(
            iou_type=params.iouType,
            precision=np.array(coco_eval.eval['precision'], dtype=float),
            iou_thrs=np.array(params.iouThrs, dtype=float),
            rec_thrs=np.array(params.recThrs, dtype=float),
            class_names=names,
            num_gts=num_gts,
            max_dets=tuple(int(m) for m in params.maxDets))


@dataclass(frozen=True)
class ClassPRCurve:
    """One class's precision-recall curve from COCO's precision array.

    Attributes:
        class_name (str): The class.
        iou (str): ``'0.50'`` (one threshold) or ``'0.50:0.95'`` (mean over
            the thresholds).
        recall (np.ndarray): ``[R]`` COCO's recall points, increasing.
        precision (np.ndarray): ``[R]`` interpolated precision at each
            (0 past the highest recall the detections reach).
        num_gt (int): Ground-truth boxes of the class (> 0).
        ap (float): The curve's AP, the mean of ``precision`` (with
            ``iou='0.50:0.95'`` the class's COCO AP, which mmdet's
            ``classwise=True`` reports as ``<class>_precision``).
    """
    class_name: str
    iou: str
    recall: np.ndarray
    precision: np.ndarray
    num_gt: int
    ap: float

    def confusion_counts(self) -> Dict[str, np.ndarray]:
        """Counts consistent with the curve at each recall point, for
        TensorBoard's raw PR curve (``SummaryWriter.add_pr_curve_raw``).

        True positives ``recall * num_gt``, false positives
        ``TP * (1 - p) / p``, false negatives ``num_gt - TP``, true
        negatives 0 (a detector has none); all 0 but FN at recall points
        the detections never reach (precision 0), and TP = FP = 0 at
        recall 0 (where COCO's precision is that of the best detections,
        any ratio of 0 and 0). COCO's precision is
        interpolated (the best precision at this recall or higher), so
        these are the counts of that envelope, not of one score threshold.

        Returns:
            dict: ``tp``, ``fp``, ``tn``, ``fn``, float arrays ``[R]``.
        """
        reached = self.precision > 0
        tp = np.where(reached, self.recall * self.num_gt, 0.0)
        fp = np.where(reached,
                      tp * (1 - self.precision) /
                      np.where(reached, self.precision, 1.0), 0.0)
        return dict(tp=tp, fp=fp, tn=np.zeros_like(tp),
                    fn=self.num_gt - tp)


def class_pr_curves(data: CocoPrecision,
                    iou: Optional[float] = None) -> List[ClassPRCurve]:
    """One precision-recall curve per class with ground truth, at area
    range "all" and the largest max-detections setting (the ones of
    mmdet's per-class AP).

    Args:
        data (CocoPrecision): An evaluation of
            :class:`CocoMetricWithPRCurves`.
        iou (float, optional): An IoU threshold of ``data.iou_thrs``
            (e.g. 0.5); None: the mean curve over all of them (COCO AP's).

    Returns:
        list[ClassPRCurve]: In the order of ``data.class_names``; classes
        without ground truth (precision -1) are left out.

    Raises:
        ValueError: ``iou`` is not one of ``data.iou_thrs``.
    """
    if iou is None:
        precision = data.precision[:, :, :, 0, -1].mean(axis=0)  # [R, K]
        label = f'{data.iou_thrs[0]:.2f}:{data.iou_thrs[-1]:.2f}'
    else:
        matches = np.flatnonzero(np.isclose(data.iou_thrs, iou))
        if not matches.size:
            raise ValueError(
                f'IoU threshold {iou} is not one of the evaluated '
                f'thresholds {np.round(data.iou_thrs, 2).tolist()}')
        precision = data.precision[matches[0], :, :, 0, -1]
        label = f'{iou:.2f}'
    curves = []
    for k, name in enumerate(data.class_names):
        if data.num_gts[k] == 0 or np.any(precision[:, k] < 0):
            continue
        curves.append(ClassPRCurve(
            class_name=name, iou=label, recall=data.rec_thrs.copy(),
            precision=precision[:, k].copy(), num_gt=int(data.num_gts[k]),
            ap=float(precision[:, k].mean())))
    return curves


@contextlib.contextmanager
def _recording_coco_eval(sink: list) -> Iterator[None]:
    """Within the block, the ``COCOeval`` and ``COCOevalMP`` that mmdet's
    ``CocoMetric.compute_metrics`` creates append themselves to ``sink``
    after ``accumulate()``; the module's own classes are back afterwards,
    also after an exception."""
    module = importlib.import_module(_COCO_METRIC_MODULE)

    def recording(base):

        class Recording(base):

            def accumulate(self, p=None):
                super().accumulate(p)
                sink.append(self)

        Recording.__name__ = Recording.__qualname__ = base.__name__
        return Recording

    with _PATCH_LOCK:
        originals = {name: getattr(module, name)
                     for name in ('COCOeval', 'COCOevalMP')}
        try:
            for name, base in originals.items():
                setattr(module, name, recording(base))
            yield
        finally:
            for name, base in originals.items():
                setattr(module, name, base)


@METRICS.register_module()
class CocoMetricWithPRCurves(CocoMetric):
    """mmdet's ``CocoMetric`` (same arguments, same results) that also
    keeps the precision array of its last evaluation, for
    :class:`ddetr_plugin.engine.hooks.PRCurveHook`.

    Attributes:
        last_precisions (dict[str, CocoPrecision]): IoU type (``'bbox'``,
            ``'segm'``) -> its precision array, from the last
            :meth:`compute_metrics` (on the main process, where mmengine's
            ``Evaluator`` computes metrics); empty before the first, with
            ``format_only=True``, for ``metric='proposal'`` (class-agnostic)
            and when mmdet found no detection at all.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last_precisions: Dict[str, CocoPrecision] = {}

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """mmdet's ``compute_metrics``, recording each COCO evaluation.

        Args:
            results (list): ``(gt, prediction)`` pairs of ``process``.

        Returns:
            dict[str, float]: What mmdet's ``CocoMetric`` returns.
        """
        self.last_precisions = {}
        recorded = []
        with _recording_coco_eval(recorded):
            metrics = super().compute_metrics(results)
        for coco_eval in recorded:
            if coco_eval.params.useCats:  # 'proposal' evaluates without
                data = CocoPrecision.from_coco_eval(coco_eval)
                self.last_precisions[data.iou_type] = data
        return metrics
