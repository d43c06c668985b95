"""Compiled operators of ddetr_plugin and their pure-PyTorch references."""
from .counter_dropout import counter_dropout, relu_counter_dropout
from .cpu_variant import cpu_kernel_variant, last_cpu_kernel_variant
from .flops import msda_flop_jit, msda_flops, register_complexity_handles
from .msda import has_kernel, level_start_index, multi_scale_deformable_attn
from .msda_reference import multi_scale_deformable_attn_pytorch

__all__ = [
    'counter_dropout', 'cpu_kernel_variant', 'last_cpu_kernel_variant',
    'msda_flop_jit', 'msda_flops', 'register_complexity_handles',
    'has_kernel', 'level_start_index',
    'multi_scale_deformable_attn', 'multi_scale_deformable_attn_pytorch',
    'relu_counter_dropout'
]
