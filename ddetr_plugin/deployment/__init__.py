"""Deployment: ONNX export of the whole detector (onnxruntime runs it, see
``ddetr_plugin.apis.inference``)."""
from .onnx_export import (METADATA_KEY, MIN_OPSET, DetectorExportModule,
                          export_checkpoint, export_onnx,
                          require_onnx_packages)
from .symbolic_shapes import SymbolicSpatialShapes

__all__ = [
    'METADATA_KEY', 'MIN_OPSET', 'DetectorExportModule',
    'SymbolicSpatialShapes', 'export_checkpoint', 'export_onnx',
    'require_onnx_packages'
]
