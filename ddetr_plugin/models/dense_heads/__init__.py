from .deformable_detr_head import DeformableDETRHead
from .dino_head import DINOHead

__all__ = ['DeformableDETRHead', 'DINOHead']
