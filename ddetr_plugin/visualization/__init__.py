"""Pictures of what the model does: the deformable attention's sampling
points (paper Figure 6) and validation hooks logging pictures to the
dashboards. Importing it registers the hooks in the ``ddetr_plugin``
scope (configs list it in ``custom_imports``)."""
from .hooks import FixedImagesVisualizationHook, SamplingPointsVisHook
from .sampling_points import (SamplingPointsCapture, capture_sampling_points,
                              decoder_points, draw_sampling_points,
                              encoder_points, level_points_to_image,
                              sampling_point_figures)

__all__ = [
    'FixedImagesVisualizationHook', 'SamplingPointsCapture',
    'SamplingPointsVisHook', 'capture_sampling_points', 'decoder_points',
    'draw_sampling_points', 'encoder_points', 'level_points_to_image',
    'sampling_point_figures'
]
