"""High-level entry points: detection on image files with either backend."""
from .inference import (BACKENDS, OnnxRuntimeDetector, Preprocessor,
                        PyTorchDetector, build_detector, collect_images,
                        preprocessing_from_config, rescale_boxes,
                        result_to_dict, run_inference)

__all__ = [
    'BACKENDS', 'OnnxRuntimeDetector', 'Preprocessor', 'PyTorchDetector',
    'build_detector', 'collect_images', 'preprocessing_from_config',
    'rescale_boxes', 'result_to_dict', 'run_inference'
]
