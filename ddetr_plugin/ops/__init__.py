"""Compiled operators of ddetr_plugin and their pure-PyTorch references."""
from .dropout import counter_dropout
from .msda import has_kernel, level_start_index, multi_scale_deformable_attn
from .msda_reference import multi_scale_deformable_attn_pytorch

__all__ = [
    'counter_dropout', 'has_kernel', 'level_start_index',
    'multi_scale_deformable_attn', 'multi_scale_deformable_attn_pytorch'
]
