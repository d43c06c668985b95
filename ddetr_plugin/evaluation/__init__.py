"""Evaluation: metrics of the ``ddetr_plugin`` scope (the registry's
``METRICS`` imports this package the first time a config names a metric,
see :mod:`ddetr_plugin.registry`).

* :mod:`.coco_metric_with_pr_curves`: :class:`CocoMetricWithPRCurves`,
  mmdet's ``CocoMetric`` that also keeps COCO's precision array of its last
  evaluation, and :func:`class_pr_curves`, the per-class precision-recall
  curves in it (drawn and logged by
  :class:`ddetr_plugin.engine.hooks.PRCurveHook`).
"""
from .coco_metric_with_pr_curves import (ClassPRCurve, CocoMetricWithPRCurves,
                                         CocoPrecision, class_pr_curves)

__all__ = [
    'ClassPRCurve', 'CocoMetricWithPRCurves', 'CocoPrecision',
    'class_pr_curves'
]
