"""The MSDA operator on CPU: parity, gradients, compile and input checks.

References: our pure-PyTorch ``multi_scale_deformable_attn_pytorch`` and
mmcv 2.1's ``multi_scale_deformable_attn_pytorch`` (independent code).
"""
import itertools

import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch as mmcv_msda_pytorch

from ddetr_plugin.ops import (multi_scale_deformable_attn,
                              multi_scale_deformable_attn_pytorch)

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def make_inputs(batch=2, num_queries=5, num_heads=2, head_dim=4,
                shapes=((6, 8), (3, 4)), num_points=3, dtype=torch.float64,
                spread=(-0.2, 1.2), seed=0):
    """Random MSDA inputs; locations in ``spread`` reach outside the map."""
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat((areas.new_zeros(1), areas.cumsum(0)[:-1]))
    num_levels = len(shapes)
    value = torch.randn(batch, int(areas.sum()), num_heads, head_dim,
                        generator=gen, dtype=dtype)
    low, high = spread
    sampling_locations = torch.rand(batch, num_queries, num_heads, num_levels,
                                    num_points, 2, generator=gen,
                                    dtype=dtype) * (high - low) + low
    attention_weights = torch.rand(batch, num_queries, num_heads, num_levels,
                                   num_points, generator=gen,
                                   dtype=dtype).softmax(-1)
    return value, spatial_shapes, level_start_index, sampling_locations, \
        attention_weights


CASES = list(itertools.product(
    [1, 3, 30, 32, 64, 71],                        # head_dim
    [((7, 5),), ((12, 16), (6, 8), (3, 4), (1, 2))],  # one level, four
    [1, 3],                                         # batch
))


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('head_dim,shapes,batch', CASES)
def test_forward_matches_references(dtype, head_dim, shapes, batch):
    value, spatial_shapes, level_start_index, locations, weights = \
        make_inputs(batch=batch, head_dim=head_dim, shapes=shapes,
                    dtype=dtype, num_heads=3, num_points=4)
    out = multi_scale_deformable_attn(value, spatial_shapes,
                                      level_start_index, locations, weights)
    ours = multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                               locations, weights)
    mmcv = mmcv_msda_pytorch(value, spatial_shapes, locations, weights)
    assert out.shape == (batch, 5, 3 * head_dim)
    assert out.dtype == dtype
    torch.testing.assert_close(out, mmcv, atol=TOLERANCE[dtype], rtol=0)
    torch.testing.assert_close(ours, mmcv, atol=TOLERANCE[dtype], rtol=0)
    # locations outside the map really are exercised and give zeros
    outside = make_inputs(batch=batch, head_dim=head_dim, shapes=shapes,
                          dtype=dtype, spread=(1.6, 3.0))
    assert multi_scale_deformable_attn(*outside).abs().max() == 0


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('head_dim,shapes,batch', CASES[::3])
def test_backward_matches_reference(dtype, head_dim, shapes, batch):
    inputs = make_inputs(batch=batch, head_dim=head_dim, shapes=shapes,
                         dtype=dtype)
    value, spatial_shapes, level_start_index, locations, weights = [
        t.clone().requires_grad_(t.is_floating_point()) for t in inputs
    ]
    grad_out = torch.randn(batch, 5, 2 * head_dim, dtype=dtype)
    leaves = (value, locations, weights)
    ours = torch.autograd.grad(
        multi_scale_deformable_attn(value, spatial_shapes, level_start_index,
                                    locations, weights), leaves, grad_out)
    ref = torch.autograd.grad(
        mmcv_msda_pytorch(value, spatial_shapes, locations, weights), leaves,
        grad_out)
    # location gradients scale with the map size (d/dx = W d/dw_pixel)
    scale = max(max(s) for s in shapes)
    for name, got, want, tol in zip(
        ('value', 'sampling_locations', 'attention_weights'), ours, ref,
        (TOLERANCE[dtype], TOLERANCE[dtype] * scale * 10, TOLERANCE[dtype])):
        torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg=name)


def test_gradcheck_float64():
    inputs = make_inputs(batch=2, num_queries=3, num_heads=2, head_dim=3,
                         shapes=((4, 5), (2, 3)), num_points=2)
    value, spatial_shapes, level_start_index, locations, weights = inputs
    value.requires_grad_()
    locations.requires_grad_()
    weights.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, loc, w: multi_scale_deformable_attn(
            v, spatial_shapes, level_start_index, loc, w),
        (value, locations, weights), eps=1e-6, atol=1e-5)


def test_backward_is_deterministic_across_threads():
    inputs = make_inputs(batch=3, num_queries=50, num_heads=4, head_dim=8,
                         shapes=((8, 8), (4, 4)), dtype=torch.float32,
                         spread=(0.0, 1.0))
    grad_out = torch.randn(3, 50, 32)
    results = []
    threads = torch.get_num_threads()
    for num_threads in (1, max(2, threads)):
        torch.set_num_threads(num_threads)
        results.append(
            torch.ops.ddetr_plugin.multi_scale_deformable_attn_backward(
                grad_out, *inputs))
    torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize('dtype,tol', [(torch.bfloat16, 1e-2),
                                       (torch.float16, 2e-3)])
def test_half_types_accumulate_in_float32(dtype, tol):
    """Half inputs give the float32 result of the same (rounded) inputs.

    Comparing against float32 on the rounded inputs isolates accumulation:
    the tolerances are about two output roundings of the dtype (bf16 8 bits
    of mantissa, fp16 11), far below what half accumulation over 64 samples
    x 4 corners would lose.
    """
    inputs = make_inputs(head_dim=64, num_points=8, dtype=torch.float32,
                         shapes=((16, 16), (8, 8)))
    low = [t.to(dtype) if t.is_floating_point() else t for t in inputs]
    want = multi_scale_deformable_attn(
        *[t.float() if t.is_floating_point() else t for t in low])
    got = multi_scale_deformable_attn(*low)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)


def test_torch_compile_fullgraph():
    inputs = make_inputs(dtype=torch.float32)
    value, spatial_shapes, level_start_index, locations, weights = inputs
    value.requires_grad_()

    def fn(value, locations, weights):
        out = multi_scale_deformable_attn(value * 2, spatial_shapes,
                                          level_start_index, locations,
                                          weights)
        return out.relu().sum()

    compiled = torch.compile(fn, fullgraph=True, backend='aot_eager')
    got = compiled(value, locations, weights)
    (grad_got, ) = torch.autograd.grad(got, value)
    want = fn(value, locations, weights)
    (grad_want, ) = torch.autograd.grad(want, value)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad_got, grad_want)


def _replace(inputs, index, new):
    inputs = list(inputs)
    inputs[index] = new
    return inputs


BAD_INPUTS = [
    # (argument index, transform, exception, message fragment)
    (0, lambda t: t[0], ValueError, 'value must have shape'),
    (1, lambda t: t[:, :1], ValueError, 'spatial_shapes must have shape'),
    (2, lambda t: t[:1], ValueError, 'level_start_index must have shape'),
    (3, lambda t: t[..., :1], ValueError, 'sampling_locations must have'),
    (3, lambda t: t[:1], ValueError, 'sampling_locations must have'),
    (4, lambda t: t[..., :1], ValueError, 'attention_weights must have'),
    (0, lambda t: torch.cat((t, t[:, :1]), 1), ValueError, 'sum(H * W)'),
    (2, lambda t: t + 1, ValueError, 'level_start_index[0]'),
    (1, lambda t: t.int(), TypeError, 'spatial_shapes must be int64'),
    (3, lambda t: t.float(), TypeError, 'sampling_locations dtype'),
    (4, lambda t: t.float(), TypeError, 'attention_weights dtype'),
    (0, lambda t: t.long(), TypeError, 'value must be floating point'),
]


@pytest.mark.parametrize('index,transform,error,message', BAD_INPUTS)
def test_input_checks(index, transform, error, message):
    inputs = make_inputs()
    bad = _replace(inputs, index, transform(inputs[index]))
    with pytest.raises(error, match=message.replace('(', r'\(').replace(
            ')', r'\)').replace('*', r'\*').replace('[', r'\[')):
        multi_scale_deformable_attn(*bad)
