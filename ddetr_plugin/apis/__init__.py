"""High-level entry points: detection on image files with either backend.

The test-time preprocessing both backends share is in
:mod:`ddetr_plugin.datasets.preprocessing` (re-exported here)."""
from ddetr_plugin.datasets.preprocessing import (Preprocessor,
                                                 preprocessing_from_config,
                                                 read_image, rescale_boxes)
from .inference import (BACKENDS, OnnxRuntimeDetector, PyTorchDetector,
                        build_detector, collect_images, result_to_dict,
                        run_inference)

__all__ = [
    'BACKENDS', 'OnnxRuntimeDetector', 'Preprocessor', 'PyTorchDetector',
    'build_detector', 'collect_images', 'preprocessing_from_config',
    'read_image', 'rescale_boxes', 'result_to_dict', 'run_inference'
]
