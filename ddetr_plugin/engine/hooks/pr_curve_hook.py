"""``PRCurveHook``: per-class precision-recall curves at every validation,
in every dashboard: TensorBoard's PR-curve tab, a picture in the work
directory, an MLflow artifact."""
import os.path as osp
from typing import List, Optional, Sequence

import mmcv
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop
from mmengine.visualization import (LocalVisBackend, MLflowVisBackend,
                                    TensorboardVisBackend)

from ddetr_plugin.evaluation import CocoMetricWithPRCurves, class_pr_curves
from ddetr_plugin.registry import HOOKS
from ddetr_plugin.visualization import (ResilientMLflowVisBackend,
                                        draw_pr_curves)


@HOOKS.register_module()
class PRCurveHook(Hook):
    """After each validation, one precision-recall curve per class at each
    IoU setting of ``ious``, from COCO's precision array (interpolated
    precision at 101 recall points, area "all", the largest max-detections
    setting: the curves whose areas are mmdet's per-class APs).

    They go to every visualizer backend of the runner that can take them:

    * ``TensorboardVisBackend``: one PR curve per class and IoU setting
      (``SummaryWriter.add_pr_curve_raw``, tag
      ``<prefix>_<iou type>_pr_curves/<class>_iou<iou>``, e.g.
      ``coco_bbox_pr_curves/RBC_iou0.50-0.95``; the counts are derived,
      :meth:`~ddetr_plugin.evaluation.ClassPRCurve.confusion_counts`) and
      the picture (images tab, ``<prefix>_<iou type>_pr_curves``);
    * MLflow (mmengine's ``MLflowVisBackend`` or ours): the picture as the
      artifact ``pr_curves/<prefix>_<iou type>_pr_curves_epoch_<n>.png``;
    * ``LocalVisBackend``: nothing more (the picture is already in the run's
      log folder);
    * any other backend (e.g. Weights & Biases): the picture
      (``add_image``).

    The picture (one panel per IoU setting, :func:`draw_pr_curves`, class
    colours of the dataset's palette) is written to
    ``<log_dir>/pr_curves/<prefix>_<iou type>_pr_curves_epoch_<n>.png``
    (``_iter_<n>`` with ``by_epoch=False``; ``n`` = 0 for a validation
    outside training). Main process only, where mmengine computes metrics.

    Args:
        ious (Sequence[float | None]): IoU settings: a threshold the metric
            evaluates (e.g. 0.5), or None for the mean over its thresholds
            (COCO's 0.50:0.95).
        out_dir (str): Folder in the run's log folder, and the MLflow
            artifact folder.
        by_epoch (bool): Steps are epochs (as ``LoggerHook``'s
            ``log_metric_by_epoch``), else iterations.

    Raises:
        ValueError: ``ious`` is empty; (at the start of a run with
            validation) the validation evaluator has no
            :class:`~ddetr_plugin.evaluation.CocoMetricWithPRCurves`;
            (after a validation) an IoU threshold it does not evaluate.
    """

    priority = 'LOW'

    def __init__(self, ious: Sequence[Optional[float]] = (0.5, None),
                 out_dir: str = 'pr_curves', by_epoch: bool = True) -> None:
        if not ious:
            raise ValueError('PRCurveHook needs at least one IoU setting '
                             '(a threshold such as 0.5, or None: the mean '
                             'over the evaluated ones)')
        self.ious = list(ious)
        self.out_dir = out_dir
        self.by_epoch = by_epoch

    @staticmethod
    def _metrics(evaluator) -> List[CocoMetricWithPRCurves]:
        """The evaluator's metrics that keep precision arrays.

        Raises:
            ValueError: None of them does.
        """
        found = [m for m in evaluator.metrics
                 if isinstance(m, CocoMetricWithPRCurves)]
        if not found:
            raise ValueError(
                'PRCurveHook needs the validation evaluator to hold a '
                "CocoMetricWithPRCurves (val_evaluator = dict(type="
                "'CocoMetricWithPRCurves', ...), mmdet's CocoMetric "
                'arguments), got ' +
                str([type(m).__name__ for m in evaluator.metrics]))
        return found

    def before_run(self, runner) -> None:
        """Check the validation evaluator before anything runs (mmengine
        builds the validation loop before ``before_run`` in both
        ``Runner.train`` and ``Runner.val``)."""
        if isinstance(runner._val_loop, BaseLoop):
            self._metrics(runner._val_loop.evaluator)

    def _step(self, runner) -> int:
        """The epoch (or iteration) of this validation; 0 outside
        training (mmengine's ``LoggerHook`` does the same)."""
        if isinstance(runner._train_loop, dict) or runner._train_loop is None:
            return 0
        return runner.epoch if self.by_epoch else runner.iter

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Draw and log the curves of every ``CocoMetricWithPRCurves``
        of the validation evaluator."""
        if not is_main_process():
            return
        step = self._step(runner)
        unit = 'epoch' if self.by_epoch else 'iter'
        metainfo = getattr(runner.val_dataloader.dataset, 'metainfo', {})
        colors = dict(zip(metainfo.get('classes', ()),
                          metainfo.get('palette', ()) or ()))
        for metric in self._metrics(runner.val_evaluator):
            if not metric.last_precisions:
                print_log(f'PRCurveHook: {type(metric).__name__} kept no '
                          'precision array in this validation (no detection '
                          'at all, or format_only); no curves',
                          logger='current', level='WARNING')
            for iou_type, data in metric.last_precisions.items():
                name = f'{metric.prefix or "coco"}_{iou_type}_pr_curves'
                panels = [class_pr_curves(data, iou) for iou in self.ious]
                image = draw_pr_curves(
                    panels, title=f'{name}, {unit} {step}', colors=colors)
                path = osp.join(runner.log_dir, self.out_dir,
                                f'{name}_{unit}_{step}.png')
                mmcv.imwrite(mmcv.rgb2bgr(image), path)
                self._log(runner, name, panels, image, path, step)

    def _log(self, runner, name: str, panels: list, image, path: str,
             step: int) -> None:
        """Hand the curves and picture to each visualizer backend."""
        backends = getattr(runner.visualizer, '_vis_backends', {})
        for backend in backends.values():
            if isinstance(backend, TensorboardVisBackend):
                writer = backend.experiment
                for curves in panels:
                    for curve in curves:
                        counts = curve.confusion_counts()
                        writer.add_pr_curve_raw(
                            f'{name}/{curve.class_name}_iou'
                            + curve.iou.replace(':', '-'),
                            counts['tp'], counts['fp'], counts['tn'],
                            counts['fn'], curve.precision, curve.recall,
                            global_step=step,
                            num_thresholds=len(curve.recall))
                backend.add_image(name, image, step)
            elif isinstance(backend, ResilientMLflowVisBackend):
                backend.log_artifact(path, self.out_dir)
            elif isinstance(backend, MLflowVisBackend):
                backend.experiment.log_artifact(path, self.out_dir)
            elif not isinstance(backend, LocalVisBackend):
                backend.add_image(name, image, step)
