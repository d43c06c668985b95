"""The multi-scale deformable attention operator ``torch.ops.ddetr_plugin``.

The schemas, input checks and CPU/CUDA kernels are C++ (``csrc/``; shapes and
semantics in ``csrc/msda.h``), loaded with ``ddetr_plugin._C``. This module
adds what makes it a complete PyTorch operator: fake (meta) kernels that run
the C++ shape and dtype checks on fake tensors, so
``torch.compile(fullgraph=True)`` traces it without graph breaks and reports
bad shapes at trace time, and the autograd formula, which calls the private
backward operator. :func:`multi_scale_deformable_attn` is the public entry
point, :func:`level_start_index` computes its ``level_start_index``.
"""
import torch

from ddetr_plugin import _C  # noqa: F401  (registers the operator library)
from .msda_reference import multi_scale_deformable_attn_pytorch

_OP = 'ddetr_plugin::multi_scale_deformable_attn'
_BACKWARD_OP = 'ddetr_plugin::_multi_scale_deformable_attn_backward'

# Expected layouts, named in the error messages (as in csrc/msda.cpp).
_LAYOUTS = {
    'value': '(B, S, num_heads, head_dim)',
    'spatial_shapes': '(num_levels, 2)',
    'level_start_index': '(num_levels,)',
    'sampling_locations':
    '(B, num_queries, num_heads, num_levels, num_points, 2)',
    'attention_weights': '(B, num_queries, num_heads, num_levels, num_points)',
}
_PREFIX = 'multi_scale_deformable_attn: '
_BACKWARD_PREFIX = '_multi_scale_deformable_attn_backward: '


def _check_rank(t, name, rank):
    torch._check_value(
        t.dim() == rank, lambda: f'{_PREFIX}{name} must have shape '
        f'{_LAYOUTS[name]} ({rank} dims), got shape {list(t.shape)}')


def _check_size(t, name, dim, expected, what):
    torch._check_value(
        t.size(dim) == expected, lambda: f'{_PREFIX}{name} must have shape '
        f'{_LAYOUTS[name]} with dim {dim} ({what}) = {expected}, got shape '
        f'{list(t.shape)}')


def _check_dtype(t, name, value, prefix=_PREFIX):
    torch._check_type(
        t.dtype == value.dtype, lambda: f'{prefix}{name} dtype {t.dtype} '
        f'differs from value dtype {value.dtype}')


def _check_int64(t, name):
    torch._check_type(t.dtype == torch.int64,
                      lambda: f'{_PREFIX}{name} must be int64, got {t.dtype}')


def _check_device(t, name, value, prefix=_PREFIX):
    torch._check_type(
        t.device == value.device, lambda: f'{prefix}{name} is on '
        f'{t.device} but value is on {value.device}')


def _check_inputs(value, spatial_shapes, level_start_index,
                  sampling_locations, attention_weights):
    """``check_msda_inputs`` of ``csrc/msda.cpp`` for fake tensors.

    The same dtype, device, rank and size checks with the same messages
    (dtypes print as ``torch.float32`` here); the values of
    ``spatial_shapes`` and ``level_start_index`` are unknown and unchecked.
    Shapes as in :func:`multi_scale_deformable_attn`.

    Raises:
        TypeError: non-floating ``value``, a dtype differing from
            ``value``'s, non-int64 ``spatial_shapes``/``level_start_index``,
            or a tensor on another device than ``value``.
        ValueError: a wrong rank or size (names the argument, the expected
            and the actual shape).
    """
    torch._check_type(
        value.is_floating_point(), lambda: f'{_PREFIX}value must be floating '
        f'point, got {value.dtype}')
    _check_dtype(sampling_locations, 'sampling_locations', value)
    _check_dtype(attention_weights, 'attention_weights', value)
    _check_int64(spatial_shapes, 'spatial_shapes')
    _check_int64(level_start_index, 'level_start_index')
    _check_device(spatial_shapes, 'spatial_shapes', value)
    _check_device(level_start_index, 'level_start_index', value)
    _check_device(sampling_locations, 'sampling_locations', value)
    _check_device(attention_weights, 'attention_weights', value)

    _check_rank(value, 'value', 4)
    _check_rank(spatial_shapes, 'spatial_shapes', 2)
    _check_rank(level_start_index, 'level_start_index', 1)
    _check_rank(sampling_locations, 'sampling_locations', 6)
    _check_rank(attention_weights, 'attention_weights', 5)

    batch, _, num_heads, _ = value.shape
    num_levels = spatial_shapes.size(0)
    _check_size(spatial_shapes, 'spatial_shapes', 1, 2, '(H, W)')
    _check_size(level_start_index, 'level_start_index', 0, num_levels,
                'num_levels')
    _check_size(sampling_locations, 'sampling_locations', 0, batch, 'B')
    _check_size(sampling_locations, 'sampling_locations', 2, num_heads,
                'num_heads')
    _check_size(sampling_locations, 'sampling_locations', 3, num_levels,
                'num_levels')
    _check_size(sampling_locations, 'sampling_locations', 5, 2, '(x, y)')
    torch._check_value(
        attention_weights.shape == sampling_locations.shape[:5],
        lambda: f'{_PREFIX}attention_weights must have shape '
        f'{_LAYOUTS["attention_weights"]} matching sampling_locations '
        f'{list(sampling_locations.shape)}, got shape '
        f'{list(attention_weights.shape)}')


@torch.library.register_fake(_OP)
def _msda_fake(value, spatial_shapes, level_start_index, sampling_locations,
               attention_weights):
    _check_inputs(value, spatial_shapes, level_start_index,
                  sampling_locations, attention_weights)
    batch, _, num_heads, head_dim = value.shape
    return value.new_empty(
        (batch, sampling_locations.shape[1], num_heads * head_dim))


@torch.library.register_fake(_BACKWARD_OP)
def _msda_backward_fake(grad_output, value, spatial_shapes, level_start_index,
                        sampling_locations, attention_weights):
    # check_msda_backward_inputs of csrc/msda.cpp
    _check_inputs(value, spatial_shapes, level_start_index,
                  sampling_locations, attention_weights)
    _check_dtype(grad_output, 'grad_output', value, _BACKWARD_PREFIX)
    _check_device(grad_output, 'grad_output', value, _BACKWARD_PREFIX)
    batch, _, num_heads, head_dim = value.shape
    num_queries = sampling_locations.shape[1]
    torch._check_value(
        grad_output.shape in ((batch, num_queries, num_heads * head_dim),
                              (batch, num_queries, num_heads, head_dim)),
        lambda: f'{_BACKWARD_PREFIX}grad_output must have shape (B, '
        f'num_queries, num_heads * head_dim) = ({batch}, {num_queries}, '
        f'{num_heads * head_dim}), got shape {list(grad_output.shape)}')
    # the kernels return contiguous gradients
    return (value.new_empty(value.shape),
            sampling_locations.new_empty(sampling_locations.shape),
            attention_weights.new_empty(attention_weights.shape))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    (value, spatial_shapes, level_start_index, sampling_locations,
     attention_weights) = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = (
        torch.ops.ddetr_plugin._multi_scale_deformable_attn_backward(
            grad_output.contiguous(), value, spatial_shapes,
            level_start_index, sampling_locations, attention_weights))
    return grad_value, None, None, grad_locations, grad_weights


torch.library.register_autograd(
    _OP, _backward, setup_context=_setup_context)

# Autocast: the op runs in the dtype of ``value`` (bfloat16/float16 when it
# comes from a linear layer under autocast), accumulating in float32 inside
# the kernels; ``sampling_locations`` and ``attention_weights`` (float32
# from the reference points) are cast to it, differentiably. Nothing is
# upcast to float32.
_AUTOCAST_LIBRARY = torch.library.Library('ddetr_plugin', 'IMPL')


def _register_autocast(device_type):
    key = 'Autocast' + torch._C._dispatch_key_for_device(device_type)
    below_autocast = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey,
                                                     key))

    def _msda_autocast(_, value, spatial_shapes, level_start_index,
                       sampling_locations, attention_weights):
        with torch._C._ExcludeDispatchKeyGuard(below_autocast):
            return torch.ops.ddetr_plugin.multi_scale_deformable_attn(
                value, spatial_shapes, level_start_index,
                sampling_locations.to(value.dtype),
                attention_weights.to(value.dtype))

    _AUTOCAST_LIBRARY.impl('multi_scale_deformable_attn', _msda_autocast, key,
                           with_keyset=True)


for _device_type in ('cpu', 'cuda'):
    _register_autocast(_device_type)


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


def level_start_index(spatial_shapes: torch.Tensor) -> torch.Tensor:
    """Index of the first value token of each level (flattened level by level).

    Args:
        spatial_shapes (Tensor): (num_levels, 2) int64, ``(H_l, W_l)`` of each
            level in pixels.

    Returns:
        Tensor: (num_levels,) int64 on the device of ``spatial_shapes``, the
        exclusive cumulative sum of ``H_l * W_l``: ``[0, H_0 * W_0,
        H_0 * W_0 + H_1 * W_1, ...]``, the ``level_start_index`` argument of
        :func:`multi_scale_deformable_attn`.

    Raises:
        ValueError: ``spatial_shapes`` is not of shape (num_levels, 2).
    """
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError('level_start_index: spatial_shapes must have shape '
                         f'(num_levels, 2), got {list(spatial_shapes.shape)}')
    areas = spatial_shapes.prod(1)
    return areas.cumsum(0) - areas


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
    :func:`multi_scale_deformable_attn_pytorch` elsewhere and while
    exporting to ONNX (``torch.onnx.is_in_onnx_export()``).

    Args:
        value (Tensor): (B, S, num_heads, head_dim), float16/bfloat16/
            float32/float64, ``S = sum_l H_l * W_l`` tokens level by level.
        spatial_shapes (Tensor): (num_levels, 2) int64 ``(H_l, W_l)`` per
            level, on the device of ``value``.
        level_start_index (Tensor): (num_levels,) int64, index of the first
            token of each level in ``S`` (the exclusive cumsum of H*W, see
            :func:`level_start_index`).
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
            the expected and the actual shape; under ``torch.compile`` at
            trace time), or, for CPU tensors, ``sum(H * W) !=
            value.shape[1]`` or ``level_start_index`` inconsistent with
            ``spatial_shapes``.
        TypeError: a dtype mismatch, integer ``spatial_shapes`` not int64, or
            tensors on different devices.
    """
    # ONNX has no such operator: export the reference decomposition
    # (bilinear GridSample, opset >= 16) instead of the compiled kernel
    if has_kernel(value.device.type) and \
            not torch.onnx.is_in_onnx_export():
        return torch.ops.ddetr_plugin.multi_scale_deformable_attn(
            value, spatial_shapes, level_start_index, sampling_locations,
            attention_weights)
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                               sampling_locations,
                                               attention_weights)
