"""Deformable DETR components, registered in the ``ddetr_plugin`` scope.

Data flow, one subpackage per stage: image -> backbone (mmdet's) ->
:mod:`.necks` -> :mod:`.layers` (positional encoding, encoder, decoder,
transformer) -> :mod:`.dense_heads` -> boxes, with the matching and box
coding of :mod:`.task_modules`; :mod:`.detectors` composes them.
"""
from .dense_heads import DeformableDETRHead
from .detectors import DeformableDETR, HybridDeformableDETR
from .layers import (DeformableDETRTransformer,
                     DeformableDETRTransformerDecoder,
                     DeformableDETRTransformerEncoder,
                     MultiScaleDeformableAttention, SinePositionalEncoding)
from .necks import DeformableDETRNeck
from .task_modules import HungarianAssigner, NormalizedCXCYWHBBoxCoder

__all__ = [
    'DeformableDETRNeck', 'SinePositionalEncoding',
    'MultiScaleDeformableAttention', 'DeformableDETRTransformerEncoder',
    'DeformableDETRTransformerDecoder', 'DeformableDETRTransformer',
    'DeformableDETRHead', 'HungarianAssigner', 'NormalizedCXCYWHBBoxCoder',
    'DeformableDETR', 'HybridDeformableDETR'
]
