from .deformable_detr import DeformableDETR
from .dino import DINO
from .hybrid_deformable_detr import HybridDeformableDETR

__all__ = ['DeformableDETR', 'HybridDeformableDETR', 'DINO']
