"""The MSDA operator (``csrc/``, shapes and semantics in ``csrc/msda.h``) on
every device: the CPU, and CUDA when a device and ddetr_plugin's CUDA kernels
are there (the CUDA cases skip otherwise).

References: mmcv 2.1's ``multi_scale_deformable_attn_pytorch`` (independent
code) in float64 for the output and all three gradients; our pure-PyTorch
``multi_scale_deformable_attn_pytorch`` against it; on CUDA, the compiled CPU
kernel. Also half types, ``gradcheck``, determinism, 64-bit indexing,
inconsistent ``spatial_shapes`` on the GPU, non-contiguous, misaligned and
empty inputs, the input checks of the kernels and of the fake kernels, and
``torch.compile(fullgraph=True)``.

Tolerances:
  float64 1e-10, float32 1e-5 against the float64 reference: the max abs
  error of the output and, for the gradients (the location gradients scale
  with the map size), relative to ``max(1, max |reference|)``;
  float16/bfloat16 against the float32 kernel on the same (rounded) inputs:
  output atol = rtol = 2e-3 / 1e-2 (about one output rounding: fp16 has 11
  bits of mantissa, bf16 8), gradients and comparisons with float64
  references 1e-2 / 5e-2.
"""
import contextlib
import itertools
import re

import pytest
import torch
from helpers.cpu_variants import highest_variant, variants_this_cpu_runs
from helpers.msda_inputs import make_msda_inputs
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch as mmcv_msda_pytorch
from torch._subclasses.fake_tensor import FakeTensorMode

from ddetr_plugin.ops import (has_kernel, multi_scale_deformable_attn,
                              multi_scale_deformable_attn_pytorch)

FORWARD = torch.ops.ddetr_plugin.multi_scale_deformable_attn
BACKWARD = torch.ops.ddetr_plugin._multi_scale_deformable_attn_backward
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
HALF_FORWARD_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1e-2}
HALF_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2}
GRAD_NAMES = ('grad_value', 'grad_sampling_locations',
              'grad_attention_weights')

requires_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and has_kernel('cuda')),
    reason='needs a CUDA device and ddetr_plugin built with its CUDA kernels')
DEVICES = ['cpu', pytest.param('cuda', marks=requires_cuda)]


def reference(inputs, grad_output=None):
    """mmcv's output (and, with grad_output, the three gradients) in float64,
    on the device of the inputs."""
    value, spatial_shapes, _, locations, weights = [
        t.double() if t.is_floating_point() else t for t in inputs
    ]
    leaves = [t.detach().clone().requires_grad_(grad_output is not None)
              for t in (value, locations, weights)]
    out = mmcv_msda_pytorch(leaves[0], spatial_shapes.cpu(), leaves[1],
                            leaves[2])
    if grad_output is None:
        return out.detach()
    grads = torch.autograd.grad(out, leaves, grad_output.double())
    return (out.detach(), ) + tuple(grads)


def forward_and_grads(inputs, grad_output):
    """Output and the three gradients of the public op through autograd."""
    value, spatial_shapes, level_start_index, locations, weights = inputs
    leaves = [t.detach().requires_grad_() for t in (value, locations, weights)]
    out = multi_scale_deformable_attn(leaves[0], spatial_shapes,
                                      level_start_index, leaves[1], leaves[2])
    return (out.detach(), ) + torch.autograd.grad(out, leaves, grad_output)


def assert_close_scaled(actual, expected, tol, name=''):
    """max |actual - expected| <= tol * max(1, max |expected|), same shape."""
    assert actual.shape == expected.shape, (name, actual.shape,
                                            expected.shape)
    if actual.numel() == 0:
        return
    scale = max(1.0, expected.double().abs().max().item())
    err = (actual.double() - expected.double().to(actual.device)).abs().max()
    assert err.item() <= tol * scale, (
        f'{name}: max abs error {err.item():.3g} > {tol:g} * {scale:.3g}')


def random_grad_output(inputs, seed=0):
    """A random grad_output (B, num_queries, num_heads * head_dim) for
    ``inputs``, with their dtype and device."""
    value, _, _, locations, _ = inputs
    batch, _, num_heads, head_dim = value.shape
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, locations.shape[1], num_heads * head_dim,
                       generator=gen).to(value.device, value.dtype)


@contextlib.contextmanager
def deterministic_algorithms(enabled):
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


SHAPES = [((7, 5), ), ((12, 16), (6, 8), (3, 5), (1, 2))]  # non-square
CASES = list(itertools.product(
    [1, 3, 30, 32, 64, 71, 256],  # head_dim
    SHAPES,                       # one level, four levels
    [1, 4],                       # num_points
    [1, 3],                       # batch
))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('head_dim,shapes,num_points,batch', CASES)
def test_matches_references(device, dtype, head_dim, shapes, num_points,
                            batch):
    num_heads, num_queries = 3, 7
    inputs = make_msda_inputs(batch=batch, num_queries=num_queries,
                              num_heads=num_heads, head_dim=head_dim,
                              shapes=shapes, num_points=num_points,
                              dtype=dtype, device=device,
                              seed=head_dim * 10 + num_points + batch)
    grad_output = random_grad_output(inputs)
    tol = TOLERANCE[dtype]

    got = forward_and_grads(inputs, grad_output)
    want = reference(inputs, grad_output)
    out = got[0]
    assert out.shape == (batch, num_queries, num_heads * head_dim)
    assert out.dtype == dtype and out.device == inputs[0].device
    torch.testing.assert_close(out.double(), want[0], atol=tol, rtol=0)
    for name, actual, expected in zip(GRAD_NAMES, got[1:], want[1:]):
        assert actual.dtype == dtype, name
        assert_close_scaled(actual, expected, tol, name)

    # our reference (the fallback on other devices) against mmcv's
    value, spatial_shapes, _, locations, weights = inputs
    ours = multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                               locations, weights)
    torch.testing.assert_close(ours.double(), want[0], atol=tol, rtol=0,
                               msg='our reference')

    # the compiled CPU kernel on the same inputs
    if device != 'cpu':
        cpu_inputs = [t.cpu() for t in inputs]
        cpu = (FORWARD(*cpu_inputs), ) + tuple(
            BACKWARD(grad_output.cpu(), *cpu_inputs))
        for name, actual, expected in zip(('output', ) + GRAD_NAMES, got,
                                          cpu):
            assert_close_scaled(actual.cpu(), expected, tol, name + ' vs CPU')


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('head_dim,shapes,num_points,batch', CASES)
def test_outside_locations_give_zeros(device, dtype, head_dim, shapes,
                                      num_points, batch):
    inputs = make_msda_inputs(batch=batch, head_dim=head_dim, shapes=shapes,
                              num_points=num_points, dtype=dtype,
                              device=device, spread=(1.6, 3.0))
    locations = inputs[3].clone()
    locations[0, 0, 0, 0, 0] = float('nan')  # samples nothing either
    inputs = inputs[:3] + (locations, inputs[4])
    assert FORWARD(*inputs).abs().max() == 0
    for grad in BACKWARD(random_grad_output(inputs), *inputs):
        assert grad.abs().max() == 0


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('head_dim', [1, 3, 8, 30, 32, 64, 71, 256])
def test_half_types_accumulate_in_float32(device, dtype, head_dim):
    """Half inputs give the float32 result of the same (rounded) inputs.

    Comparing against float32 on the rounded inputs isolates accumulation:
    the output tolerances are about one output rounding of the dtype (bf16 8
    bits of mantissa, fp16 11), far below what half accumulation over 16
    samples x 4 corners would lose. Backward in both deterministic modes.
    """
    inputs = make_msda_inputs(batch=2, num_queries=6, num_heads=3,
                              head_dim=head_dim, shapes=((12, 16), (6, 8)),
                              num_points=8, dtype=dtype, device=device,
                              seed=head_dim)
    grad_output = random_grad_output(inputs)
    inputs32 = [t.float() if t.is_floating_point() else t for t in inputs]

    out = multi_scale_deformable_attn(*inputs)
    assert out.dtype == dtype
    tol = HALF_FORWARD_TOLERANCE[dtype]
    torch.testing.assert_close(out.float(), FORWARD(*inputs32), atol=tol,
                               rtol=tol)
    tol = HALF_TOLERANCE[dtype]
    for deterministic in (False, True):
        with deterministic_algorithms(deterministic):
            grads = BACKWARD(grad_output, *inputs)
            grads32 = BACKWARD(grad_output.float(), *inputs32)
        for name, got, want in zip(GRAD_NAMES, grads, grads32):
            assert got.dtype == dtype, name
            torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol,
                                       msg=name)


@pytest.mark.parametrize('device', DEVICES)
def test_gradcheck_float64(device):
    value, spatial_shapes, level_start_index, locations, weights = \
        make_msda_inputs(batch=2, num_queries=3, num_heads=2, head_dim=3,
                         shapes=((4, 5), (2, 3)), num_points=2, device=device)
    leaves = [t.requires_grad_() for t in (value, locations, weights)]

    def fn(v, loc, w):
        return multi_scale_deformable_attn(v, spatial_shapes,
                                           level_start_index, loc, w)

    # CUDA's grad_value uses atomics, so repeated backward passes may differ
    # by rounding: allow that through nondet_tol. The CPU's is reproducible.
    nondet_tol = 0.0 if device == 'cpu' else 1e-12
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5,
                                    nondet_tol=nondet_tol)


def test_cpu_backward_is_deterministic_across_threads():
    inputs = make_msda_inputs(batch=3, num_queries=50, num_heads=4,
                              head_dim=8, shapes=((8, 8), (4, 4)),
                              dtype=torch.float32, spread=(0.0, 1.0))
    grad_output = random_grad_output(inputs)
    results = []
    threads = torch.get_num_threads()
    for num_threads in (1, max(2, threads)):
        torch.set_num_threads(num_threads)
        results.append(BACKWARD(grad_output, *inputs))
    torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.float64])
@pytest.mark.parametrize('head_dim', [32, 71])
def test_deterministic_mode(device, dtype, head_dim):
    # many queries on small maps: lots of grad_value collisions
    inputs = make_msda_inputs(batch=2, num_queries=500, num_heads=4,
                              head_dim=head_dim, shapes=((3, 2), (2, 2)),
                              num_points=4, dtype=dtype, device=device,
                              spread=(0.0, 1.0))
    grad_output = random_grad_output(inputs)
    with deterministic_algorithms(True):
        first = BACKWARD(grad_output, *inputs)
        second = BACKWARD(grad_output, *inputs)
    atomic = BACKWARD(grad_output, *inputs)
    for name, a, b, c in zip(GRAD_NAMES, first, second, atomic):
        assert torch.equal(a, b), f'{name} differs between two runs'
        if dtype == torch.float16:
            torch.testing.assert_close(a.float(), c.float(), atol=1e-2,
                                       rtol=1e-2, msg=name)
        else:
            assert_close_scaled(a, c, 1e-5, f'{name} vs atomic path')
    # the location and weight gradients never use atomics
    assert torch.equal(first[1], atomic[1])
    assert torch.equal(first[2], atomic[2])


def _gather_reference(value, spatial_shapes, level_start_index, locations,
                      weights):
    """Eq. 2 by explicit gathers of the 4 corners (float64), touching only the
    sampled rows of ``value``: usable on huge values. Differentiable in
    locations and weights. Also returns, for every valid corner, the flat
    index (b, row, m) of its value row, its coefficient a * w_k and the flat
    index (b, q, m) of its query (what grad_value is made of)."""
    batch, num_tokens, num_heads, _ = value.shape
    _, num_queries, _, _, num_points, _ = locations.shape
    device = value.device
    b = torch.arange(batch, device=device).view(-1, 1, 1, 1)
    m = torch.arange(num_heads, device=device).view(1, 1, -1, 1)
    bqm = torch.arange(batch * num_queries * num_heads, device=device).view(
        batch, num_queries, num_heads, 1).expand(-1, -1, -1, num_points)
    out = 0
    keys, coefs, queries = [], [], []
    for level, ((height, width), start) in enumerate(
            zip(spatial_shapes.tolist(), level_start_index.tolist())):
        x = locations[:, :, :, level, :, 0].double()
        y = locations[:, :, :, level, :, 1].double()
        a = weights[:, :, :, level].double()
        h_im, w_im = y * height - 0.5, x * width - 0.5
        inside = (h_im > -1) & (w_im > -1) & (h_im < height) & (w_im < width)
        h_low, w_low = h_im.floor(), w_im.floor()
        lh, lw = h_im - h_low, w_im - w_low
        h_low, w_low = h_low.long(), w_low.long()
        corners = ((h_low, w_low, (1 - lh) * (1 - lw)),
                   (h_low, w_low + 1, (1 - lh) * lw),
                   (h_low + 1, w_low, lh * (1 - lw)),
                   (h_low + 1, w_low + 1, lh * lw))
        for h, w, bilinear in corners:
            valid = inside & (h >= 0) & (h < height) & (w >= 0) & (w < width)
            row = torch.where(valid, start + h * width + w, 0)
            rows = value[b.expand_as(row), row, m.expand_as(row)].double()
            coef = torch.where(valid, a * bilinear, 0)
            out = out + (coef.unsqueeze(-1) * rows).sum(3)
            keys.append(((b * num_tokens + row) * num_heads + m)[valid])
            coefs.append(coef[valid])
            queries.append(bqm[valid])
    return (out.flatten(2), torch.cat(keys), torch.cat(coefs),
            torch.cat(queries))


@requires_cuda
def test_cuda_large_value_64bit_indexing():
    """B * S * M * D > 2**31 elements (bfloat16, 4.4 GB), sampling the rows
    at the very end of the value."""
    free, _ = torch.cuda.mem_get_info()
    if free < 24 * 2**30:
        pytest.skip('needs 24 GiB of free GPU memory')
    dtype = torch.bfloat16
    batch, num_heads, head_dim = 2, 8, 128
    height, width = 1040, 1024
    num_queries, num_points = 16, 4
    spatial_shapes = torch.tensor([[height, width]], device='cuda')
    level_start_index = torch.zeros(1, dtype=torch.long, device='cuda')
    value = torch.empty(batch, height * width, num_heads, head_dim,
                        dtype=dtype, device='cuda').normal_()
    assert value.numel() > 2**31
    gen = torch.Generator().manual_seed(0)
    locations = torch.rand(batch, num_queries, num_heads, 1, num_points, 2,
                           generator=gen)
    # half of the points on the last rows of the map (flat offsets > 2**31
    # for the second batch element), a few outside it
    locations[..., :num_points // 2, 1] = 0.995 + 0.01 * locations[
        ..., :num_points // 2, 1]
    locations = locations.to('cuda', dtype)
    weights = torch.rand(batch, num_queries, num_heads, 1, num_points,
                         generator=gen).softmax(-1).to('cuda', dtype)
    inputs = (value, spatial_shapes, level_start_index, locations, weights)

    out = FORWARD(*inputs)
    want, keys, _, _ = _gather_reference(*inputs)
    assert keys.max().item() * head_dim > 2**31  # really beyond int32
    tol = HALF_TOLERANCE[dtype]
    torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol)
    del out

    grad_output = random_grad_output(inputs)
    grad_value, grad_locations, grad_weights = BACKWARD(grad_output, *inputs)
    leaves = [t.double().requires_grad_() for t in (locations, weights)]
    want, keys, coefs, queries = _gather_reference(
        value, spatial_shapes, level_start_index, *leaves)
    want_locations, want_weights = torch.autograd.grad(
        want, leaves, grad_output.double())
    torch.testing.assert_close(grad_weights.double(), want_weights, atol=tol,
                               rtol=tol)
    torch.testing.assert_close(grad_locations.double(), want_locations,
                               atol=tol, rtol=tol)
    # grad_value on the touched rows: sum of a * w_k * grad_output[b, q, m]
    unique, inverse = torch.unique(keys, return_inverse=True)
    contributions = coefs.detach().unsqueeze(1) * grad_output.view(
        -1, head_dim)[queries].double()
    want_rows = torch.zeros(len(unique), head_dim, dtype=torch.float64,
                            device='cuda').index_add_(0, inverse,
                                                      contributions)
    got_rows = grad_value.view(-1, head_dim)[unique].double()
    torch.testing.assert_close(got_rows, want_rows, atol=tol, rtol=tol)
    # and a sample of the untouched rows is zero
    probe = torch.randint(0, grad_value.numel() // head_dim, (4096, ),
                          device='cuda')
    probe = probe[~torch.isin(probe, unique)]
    assert grad_value.view(-1, head_dim)[probe].abs().max() == 0


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_cuda_inconsistent_spatial_shapes_stay_in_bounds(dtype):
    """spatial_shapes on the GPU are not value-checked; rows past S must be
    treated as zeros, never read or written."""
    inputs = make_msda_inputs(batch=2, num_heads=2, head_dim=8,
                              shapes=((7, 5), (4, 9)), num_points=4,
                              dtype=dtype, device='cuda')
    value, _, level_start_index, locations, weights = inputs
    num_tokens = value.shape[1]  # 35 + 36
    # level 1 claims 6 * 9 = 54 rows, only 36 exist: 18 rows past S
    bad_shapes = torch.tensor([[7, 5], [6, 9]], device='cuda')
    padded = torch.cat([value, value.new_zeros(2, 18, 2, 8)], 1)
    grad_output = random_grad_output(inputs)
    bad = (value, bad_shapes, level_start_index, locations, weights)
    out = FORWARD(*bad)
    grads = BACKWARD(grad_output, *bad)
    with deterministic_algorithms(True):
        det_grads = BACKWARD(grad_output, *bad)
    torch.cuda.synchronize()
    want = reference((padded, bad_shapes, level_start_index, locations,
                      weights), grad_output)
    tol = TOLERANCE[dtype]
    assert_close_scaled(out, want[0], tol, 'output')
    for g in (grads, det_grads):
        assert_close_scaled(g[0], want[1][:, :num_tokens], tol, GRAD_NAMES[0])
        assert_close_scaled(g[1], want[2], tol, GRAD_NAMES[1])
        assert_close_scaled(g[2], want[3], tol, GRAD_NAMES[2])
    # negative level starts: every row is out of range
    out = FORWARD(value, inputs[1], torch.full_like(level_start_index, -999),
                  locations, weights)
    torch.cuda.synchronize()
    assert out.abs().max() == 0


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.float32,
                                   torch.float64])
def test_non_contiguous_and_misaligned_inputs(device, dtype):
    inputs = make_msda_inputs(batch=2, num_heads=2, head_dim=32,
                              num_points=4, dtype=dtype, device=device)
    value = inputs[0]
    grad_output = random_grad_output(inputs)
    want = (FORWARD(*inputs), ) + tuple(BACKWARD(grad_output, *inputs))
    # contiguous but offset by one element: no 16-byte vector loads possible
    storage = torch.empty(value.numel() + 1, dtype=dtype, device=device)
    misaligned = storage[1:].view(value.shape).copy_(value)
    grad_storage = torch.empty(grad_output.numel() + 1, dtype=dtype,
                               device=device)
    grad_misaligned = grad_storage[1:].view(grad_output.shape).copy_(
        grad_output)
    # non-contiguous views of the same data
    transposed = value.transpose(0, 1).contiguous().transpose(0, 1)
    loc_nc = inputs[3].transpose(-1, -2).contiguous().transpose(-1, -2)
    for v, g, loc in ((misaligned, grad_misaligned, inputs[3]),
                      (transposed, grad_output.transpose(0, 1).contiguous()
                       .transpose(0, 1), loc_nc)):
        args = (v, inputs[1], inputs[2], loc, inputs[4])
        got = (FORWARD(*args), ) + tuple(BACKWARD(g, *args))
        for a, b in zip(got, want):
            if dtype == torch.float16:
                torch.testing.assert_close(a.float(), b.float(), atol=1e-2,
                                           rtol=1e-2)
            else:
                assert_close_scaled(a, b, 1e-5)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('batch,num_queries,head_dim,num_points', [
    (0, 3, 4, 2), (2, 0, 4, 2), (2, 3, 0, 2), (2, 3, 4, 0)])
def test_empty_inputs(device, batch, num_queries, head_dim, num_points):
    inputs = make_msda_inputs(batch=batch, num_queries=num_queries,
                              head_dim=head_dim, num_points=num_points,
                              dtype=torch.float32, device=device)
    out = FORWARD(*inputs)
    assert out.shape == (batch, num_queries, 2 * head_dim)
    assert out.abs().sum() == 0
    grads = BACKWARD(torch.zeros_like(out), *inputs)
    for grad, t in zip(grads, (inputs[0], inputs[3], inputs[4])):
        assert grad.shape == t.shape and grad.abs().sum() == 0


def _replace(inputs, index, new):
    inputs = list(inputs)
    inputs[index] = new
    return inputs


def _call_on(where, op, args):
    """Runs ``op(*args)`` on the device ``where``, or, for ``'fake'``, with
    fake CPU tensors (the fake kernel ``torch.compile`` traces with)."""
    if where != 'fake':
        return op(*[t.to(where) for t in args])
    with FakeTensorMode() as mode:
        return op(*[mode.from_tensor(t) for t in args])


# Where the input checks run: the kernels of every device, and the fake
# kernel, which must raise the same errors.
CHECKED_BY = DEVICES + ['fake']

BAD_INPUTS = [
    # (argument index, transform, exception, message fragment)
    (0, lambda t: t[0], ValueError, 'value must have shape'),
    (1, lambda t: t[:, :1], ValueError, 'spatial_shapes must have shape'),
    (2, lambda t: t[:1], ValueError, 'level_start_index must have shape'),
    (3, lambda t: t[..., :1], ValueError, 'sampling_locations must have'),
    (3, lambda t: t[:1], ValueError, 'sampling_locations must have'),
    (4, lambda t: t[..., :1], ValueError, 'attention_weights must have'),
    (1, lambda t: t.int(), TypeError, 'spatial_shapes must be int64'),
    (3, lambda t: t.float(), TypeError, 'sampling_locations dtype'),
    (4, lambda t: t.float(), TypeError, 'attention_weights dtype'),
    (0, lambda t: t.long(), TypeError, 'value must be floating point'),
]
# Values of spatial_shapes and level_start_index: checked on the CPU only.
BAD_CPU_VALUES = [
    (0, lambda t: torch.cat((t, t[:, :1]), 1), ValueError, 'sum(H * W)'),
    (2, lambda t: t + 1, ValueError, 'level_start_index[0]'),
]


@pytest.mark.parametrize('where', CHECKED_BY)
@pytest.mark.parametrize('index,transform,error,message', BAD_INPUTS)
def test_input_checks(where, index, transform, error, message):
    inputs = make_msda_inputs()
    bad = _replace(inputs, index, transform(inputs[index]))
    with pytest.raises(error, match=re.escape(message)):
        _call_on(where, FORWARD, bad)
    with pytest.raises(error, match=re.escape(message)):
        _call_on(where, BACKWARD, [random_grad_output(inputs)] + bad)


@pytest.mark.parametrize('index,transform,error,message', BAD_CPU_VALUES)
def test_input_value_checks_on_cpu(index, transform, error, message):
    inputs = make_msda_inputs()
    bad = _replace(inputs, index, transform(inputs[index]))
    with pytest.raises(error, match=re.escape(message)):
        multi_scale_deformable_attn(*bad)


@pytest.mark.parametrize('where', CHECKED_BY)
def test_grad_output_checks(where):
    inputs = make_msda_inputs(dtype=torch.float32)
    grad_output = random_grad_output(inputs)
    with pytest.raises(ValueError, match='grad_output must have shape'):
        _call_on(where, BACKWARD, [grad_output[:, :1]] + list(inputs))
    with pytest.raises(TypeError, match='grad_output dtype'):
        _call_on(where, BACKWARD, [grad_output.double()] + list(inputs))


@requires_cuda
def test_cuda_input_device_checks():
    inputs = make_msda_inputs(device='cuda')
    with pytest.raises(TypeError, match='spatial_shapes is on'):
        FORWARD(inputs[0], inputs[1].cpu(), *inputs[2:])
    with pytest.raises(TypeError, match='grad_output is on'):
        BACKWARD(random_grad_output(inputs).cpu(), *inputs)


@pytest.mark.parametrize('device', DEVICES)
def test_opcheck(device):
    """Schema, fake kernels (shapes, dtypes, strides), autograd registration
    and AOT dispatch agree with the kernels."""
    inputs = make_msda_inputs(head_dim=8, device=device)
    leaves = [t.requires_grad_() if t.is_floating_point() else t
              for t in inputs]
    torch.library.opcheck(FORWARD, leaves)
    torch.library.opcheck(BACKWARD, [random_grad_output(inputs)] +
                          [t.detach() for t in inputs])


COMPILE_CASES = [('cpu', 'aot_eager'),
                 pytest.param('cuda', 'aot_eager', marks=requires_cuda),
                 pytest.param('cuda', 'inductor', marks=requires_cuda)]


@pytest.mark.parametrize('device,backend', COMPILE_CASES)
def test_torch_compile_fullgraph(device, backend):
    if backend == 'inductor':
        pytest.importorskip('triton')
    value, spatial_shapes, level_start_index, locations, weights = \
        make_msda_inputs(head_dim=32, num_points=4, dtype=torch.float32,
                         device=device)
    leaves = [t.requires_grad_() for t in (value, locations, weights)]

    def fn(value, locations, weights):
        out = multi_scale_deformable_attn(value * 2, spatial_shapes,
                                          level_start_index, locations,
                                          weights)
        return out.relu().sum()

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    got = compiled(*leaves)
    grads_got = torch.autograd.grad(got, leaves)
    want = fn(*leaves)
    grads_want = torch.autograd.grad(want, leaves)
    torch.testing.assert_close(got, want)
    for a, b in zip(grads_got, grads_want):
        torch.testing.assert_close(a, b)


def test_torch_compile_reports_bad_shapes_at_trace_time():
    value, spatial_shapes, level_start_index, locations, weights = \
        make_msda_inputs(dtype=torch.float32)
    compiled_graphs = []

    def backend(graph_module, example_inputs):
        compiled_graphs.append(graph_module)
        return graph_module.forward

    def fn(value, locations, weights):
        return multi_scale_deformable_attn(value, spatial_shapes,
                                           level_start_index, locations,
                                           weights)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    # torch wraps the fake kernel's ValueError in its own exception type
    with pytest.raises(Exception,
                       match=re.escape('sampling_locations must have shape')):
        compiled(value, locations[..., :1], weights)
    assert not compiled_graphs  # raised while tracing, before any backend


_ISA_SCRIPT = r'''
import sys
import torch
sys.path.insert(0, {tests!r})
from helpers.msda_inputs import make_msda_inputs
from test_msda import forward_and_grads, random_grad_output
from ddetr_plugin.ops import last_cpu_kernel_variant
results = {{'capability': torch.backends.cpu.get_cpu_capability()}}
ran = set()
for dtype in (torch.float64, torch.float32, torch.bfloat16):
    for head_dim in (32, 71):
        inputs = make_msda_inputs(batch=2, num_queries=40, num_heads=3,
                                  head_dim=head_dim,
                                  shapes=((9, 13), (5, 7), (3, 4)),
                                  num_points=4, dtype=dtype)
        # grad_output goes along: torch's randn differs between capabilities
        grad_output = random_grad_output(inputs)
        last_cpu_kernel_variant(reset=True)
        results[(str(dtype), head_dim)] = (
            inputs, grad_output, forward_and_grads(inputs, grad_output))
        ran.add(last_cpu_kernel_variant())
torch.save((results, ran), sys.argv[1])
'''


def test_cpu_instruction_set_variants(tmp_path):
    """Each instruction-set variant of the CPU kernels this CPU runs
    (picked by torch's CPU capability, lowered by ``ATEN_CPU_CAPABILITY``),
    each in a fresh process, against mmcv's float64 reference; the kernels
    note which variant ran, and it must be the one asked for (variants
    above this CPU are not asked for, see ``helpers.cpu_variants``)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    tests = str(Path(__file__).parent)
    script = tmp_path / 'isa.py'
    script.write_text(_ISA_SCRIPT.format(tests=tests))
    variants = variants_this_cpu_runs()
    for capability in variants:
        out = tmp_path / f'{capability}.pt'
        env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
        subprocess.run([sys.executable, str(script), str(out)], env=env,
                       check=True, cwd=tests)
        results, ran = torch.load(out)
        results.pop('capability')
        # off x86-64 the kernels have one variant, whatever torch reports
        expected = capability if highest_variant() != 'default' else \
            'default'
        assert ran == {expected}, (capability, ran)
        for (dtype, head_dim), (inputs, grad_output, got) in results.items():
            want = reference(inputs, grad_output)
            tol = {'torch.float64': TOLERANCE[torch.float64],
                   'torch.float32': TOLERANCE[torch.float32],
                   'torch.bfloat16': HALF_TOLERANCE[torch.bfloat16]}[dtype]
            for name, a, b in zip(('output', ) + GRAD_NAMES, got, want):
                assert_close_scaled(a, b, tol,
                                    f'{capability} {dtype} D={head_dim} '
                                    f'{name}')
    assert variants[0] == 'default'
