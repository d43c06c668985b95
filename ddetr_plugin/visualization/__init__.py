"""Pictures of what the model does and the dashboards they go to:

* :mod:`.sampling_points`: the deformable attention's sampling points
  (paper Figure 6);
* :mod:`.pr_curves`: per-class precision-recall curves (of
  :mod:`ddetr_plugin.evaluation`) as one picture;
* :mod:`.mlflow_vis_backend`: :class:`ResilientMLflowVisBackend`,
  mmengine's MLflow visualizer backend that checks the server before
  training, survives its loss during training and uploads the best
  checkpoint, registered in the ``ddetr_plugin`` scope's ``VISBACKENDS``
  (the registry imports this package the first time a config names a
  visualizer backend).

The validation hooks that log such pictures to the dashboards are in
:mod:`ddetr_plugin.engine.hooks`."""
from .mlflow_vis_backend import (MLflowTrackingError,
                                 ResilientMLflowVisBackend,
                                 check_tracking_server)
from .pr_curves import draw_pr_curves
from .sampling_points import (SamplingPointsCapture, capture_sampling_points,
                              decoder_points, draw_sampling_points,
                              encoder_points, level_points_to_image,
                              sampling_point_figures)

__all__ = [
    'MLflowTrackingError', 'ResilientMLflowVisBackend',
    'SamplingPointsCapture', 'capture_sampling_points',
    'check_tracking_server', 'decoder_points', 'draw_pr_curves',
    'draw_sampling_points', 'encoder_points', 'level_points_to_image',
    'sampling_point_figures'
]
