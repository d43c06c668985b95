from .deformable_detr_head import DeformableDETRHead
from .dino_head import DINOHead
from .dn_deformable_detr_head import DNDeformableDETRHead

__all__ = ['DeformableDETRHead', 'DNDeformableDETRHead', 'DINOHead']
