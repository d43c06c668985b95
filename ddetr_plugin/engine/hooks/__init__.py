"""Runner hooks, one per module, registered in the ``ddetr_plugin`` scope's
``HOOKS`` (the registry imports this package the first time a config names
a hook, see :mod:`ddetr_plugin.registry`):

* :class:`CrashSafeCheckpointHook`: checkpoints that survive ``kill -9``;
* :class:`CheckFiniteLossHook`: stop at the first NaN/inf loss term;
* :class:`DryRunTestHook`: run the test steps once before training;
* :class:`PretrainedClassesHook`: ``load_from`` of any layout and of other
  classes;
* :class:`SamplingPointsVisualizationHook` and
  :class:`FixedImagesVisualizationHook`: validation pictures for the
  dashboards;
* :class:`SingleWriterLoggerHook`: mmengine's ``LoggerHook`` with one
  writer of the test metrics file under ``tools/dist_test.sh``;
* :class:`PRCurveHook`: per-class precision-recall curves at every
  validation, to TensorBoard, the work directory and MLflow.
"""
from .checkpoint_hook import CrashSafeCheckpointHook
from .dry_run_test_hook import DryRunError, DryRunTestHook
from .finite_loss_hook import CheckFiniteLossHook
from .fixed_images_visualization_hook import FixedImagesVisualizationHook
from .pr_curve_hook import PRCurveHook
from .pretrained_classes_hook import PretrainedClassesHook
from .sampling_points_visualization_hook import \
    SamplingPointsVisualizationHook
from .single_writer_logger_hook import SingleWriterLoggerHook

__all__ = [
    'CheckFiniteLossHook', 'CrashSafeCheckpointHook', 'DryRunError',
    'DryRunTestHook',
    'FixedImagesVisualizationHook', 'PRCurveHook', 'PretrainedClassesHook',
    'SamplingPointsVisualizationHook', 'SingleWriterLoggerHook'
]
