from .deformable_detr import DeformableDETR
from .dino import DINO
from .dn_deformable_detr import DNDeformableDETR
from .hybrid_deformable_detr import HybridDeformableDETR

__all__ = [
    'DeformableDETR', 'DNDeformableDETR', 'HybridDeformableDETR', 'DINO'
]
