"""The multi-scale deformable attention operator ``torch.ops.ddetr_plugin``.

The schemas and the CPU/CUDA kernels are C++ (``csrc/``), loaded with
``ddetr_plugin._C``. This module adds what makes it a complete PyTorch
operator: fake (meta) kernels, so ``torch.compile(fullgraph=True)`` traces it
without graph breaks, and the autograd formula, which calls the backward
kernel. :func:`multi_scale_deformable_attn` is the public entry point.
"""
import torch

from ddetr_plugin import _C  # noqa: F401  (registers the operator library)
from .msda_reference import multi_scale_deformable_attn_pytorch

_OP = 'ddetr_plugin::multi_scale_deformable_attn'
_BACKWARD_OP = 'ddetr_plugin::multi_scale_deformable_attn_backward'


@torch.library.register_fake(_OP)
def _msda_fake(value, spatial_shapes, level_start_index, sampling_locations,
               attention_weights):
    batch, _, num_heads, head_dim = value.shape
    return value.new_empty(
        (batch, sampling_locations.shape[1], num_heads * head_dim))


@torch.library.register_fake(_BACKWARD_OP)
def _msda_backward_fake(grad_output, value, spatial_shapes, level_start_index,
                        sampling_locations, attention_weights):
    return (torch.empty_like(value), torch.empty_like(sampling_locations),
            torch.empty_like(attention_weights))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    (value, spatial_shapes, level_start_index, sampling_locations,
     attention_weights) = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = (
        torch.ops.ddetr_plugin.multi_scale_deformable_attn_backward(
            grad_output.contiguous(), value, spatial_shapes,
            level_start_index, sampling_locations, attention_weights))
    return grad_value, None, None, grad_locations, grad_weights


torch.library.register_autograd(
    _OP, _backward, setup_context=_setup_context)


@torch.compiler.assume_constant_result
def has_kernel(device_type: str) -> bool:
    """Whether a compiled MSDA kernel is registered for ``device_type``.

    A constant for ``torch.compile`` (kernels are registered at import).

    Args:
        device_type (str): a ``torch.device.type`` such as ``'cpu'``,
            ``'cuda'``.
    """
    return torch._C._dispatch_has_kernel_for_dispatch_key(
        _OP, device_type.upper())


def multi_scale_deformable_attn(value: torch.Tensor,
                                spatial_shapes: torch.Tensor,
                                level_start_index: torch.Tensor,
                                sampling_locations: torch.Tensor,
                                attention_weights: torch.Tensor
                                ) -> torch.Tensor:
    """Multi-scale deformable attention (Deformable DETR, Eq. 2).

    Zhu et al., arXiv 2010.04159, Sec. 4.1. Each query samples ``num_points``
    locations on each of ``num_levels`` feature maps per head, bilinearly
    (``align_corners=False``, zeros outside the map, exactly as mmcv's
    ``multi_scale_deformable_attn_pytorch``), and sums them weighted by
    ``attention_weights``. Differentiable in ``value``,
    ``sampling_locations`` and ``attention_weights``. Runs the compiled
    kernel of the device (CPU, and CUDA when built) and falls back to
    :func:`multi_scale_deformable_attn_pytorch` elsewhere.

    Args:
        value (Tensor): (B, S, num_heads, head_dim), float16/bfloat16/
            float32/float64, ``S = sum_l H_l * W_l`` tokens level by level.
        spatial_shapes (Tensor): (num_levels, 2) int64 ``(H_l, W_l)`` per
            level, on the device of ``value``.
        level_start_index (Tensor): (num_levels,) int64, index of the first
            token of each level in ``S`` (the exclusive cumsum of H*W).
        sampling_locations (Tensor): (B, num_queries, num_heads, num_levels,
            num_points, 2) normalised ``(x, y)``; 0..1 spans the map, points
            outside sample zeros. Same dtype as ``value``.
        attention_weights (Tensor): (B, num_queries, num_heads, num_levels,
            num_points), same dtype as ``value`` (normally softmax-normalised
            over levels x points).

    Returns:
        Tensor: (B, num_queries, num_heads * head_dim), dtype of ``value``.

    Raises:
        ValueError: a wrong rank or shape (the message names the argument,
            the expected and the actual shape), ``sum(H * W) !=
            value.shape[1]`` or ``level_start_index`` inconsistent with
            ``spatial_shapes``.
        TypeError: a dtype mismatch, integer ``spatial_shapes`` not int64, or
            tensors on different devices.
    """
    if has_kernel(value.device.type):
        return torch.ops.ddetr_plugin.multi_scale_deformable_attn(
            value, spatial_shapes, level_start_index, sampling_locations,
            attention_weights)
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                               sampling_locations,
                                               attention_weights)
