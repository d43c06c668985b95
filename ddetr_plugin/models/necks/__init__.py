from .deformable_detr_neck import DeformableDETRNeck

__all__ = ['DeformableDETRNeck']
