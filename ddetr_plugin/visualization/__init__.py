"""Pictures of what the model does: the deformable attention's sampling
points (paper Figure 6). The validation hooks that log such pictures to
the dashboards are in :mod:`ddetr_plugin.engine.hooks`."""
from .sampling_points import (SamplingPointsCapture, capture_sampling_points,
                              decoder_points, draw_sampling_points,
                              encoder_points, level_points_to_image,
                              sampling_point_figures)

__all__ = [
    'SamplingPointsCapture', 'capture_sampling_points', 'decoder_points',
    'draw_sampling_points', 'encoder_points', 'level_points_to_image',
    'sampling_point_figures'
]
