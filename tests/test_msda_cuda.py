"""The MSDA operator's CUDA kernels (csrc/cuda/msda_cuda.cu).

Parity with the pure-PyTorch reference (``F.grid_sample``, computed in
float64) and with the CPU kernel, all three gradients, half types,
``gradcheck``, deterministic mode, 64-bit indexing, inconsistent
``spatial_shapes`` on the GPU, and ``torch.compile(fullgraph=True)``.

The whole module is skipped without a CUDA device or when ddetr_plugin was
built without its CUDA kernels.

Tolerances (max abs error, relative to ``max(1, max |reference|)`` of each
compared tensor; the location gradients scale with the map size):
  float64 1e-10, float32 1e-5 against the float64 reference;
  float16 atol = rtol = 1e-2 and bfloat16 atol = rtol = 5e-2 against the
  float32 CUDA kernel run on the same (rounded) inputs.
"""
import contextlib
import itertools

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip('no CUDA device', allow_module_level=True)

ops = pytest.importorskip('ddetr_plugin.ops')

if not torch._C._dispatch_has_kernel_for_dispatch_key(
        'ddetr_plugin::multi_scale_deformable_attn', 'CUDA'):
    pytest.skip('ddetr_plugin was built without the CUDA kernels',
                allow_module_level=True)

FORWARD = torch.ops.ddetr_plugin.multi_scale_deformable_attn
BACKWARD = torch.ops.ddetr_plugin.multi_scale_deformable_attn_backward
CUDA = torch.device('cuda')
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
HALF_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2}
HAS_CPU_KERNEL = torch._C._dispatch_has_kernel_for_dispatch_key(
    'ddetr_plugin::multi_scale_deformable_attn', 'CPU')


def make_inputs(batch=2, num_queries=5, num_heads=2, head_dim=4,
                shapes=((6, 8), (3, 4)), num_points=3, dtype=torch.float32,
                device=CUDA, spread=(-0.2, 1.2), seed=0):
    """Random MSDA inputs (value, spatial_shapes, level_start_index,
    sampling_locations, attention_weights); locations are uniform in
    ``spread`` and so reach outside the map for the default spread."""
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long).reshape(-1, 2)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat((areas.new_zeros(1), areas.cumsum(0)[:-1]))
    num_levels = len(shapes)
    value = torch.randn(batch, int(areas.sum()), num_heads, head_dim,
                        generator=gen, dtype=torch.float64)
    low, high = spread
    locations = torch.rand(batch, num_queries, num_heads, num_levels,
                           num_points, 2, generator=gen,
                           dtype=torch.float64) * (high - low) + low
    weights = torch.rand(batch, num_queries, num_heads, num_levels,
                         num_points, generator=gen,
                         dtype=torch.float64).softmax(-1)
    return (value.to(device, dtype), spatial_shapes.to(device),
            level_start_index.to(device), locations.to(device, dtype),
            weights.to(device, dtype))


def as_float64(inputs):
    return [t.double() if t.is_floating_point() else t for t in inputs]


def reference(inputs, grad_output=None):
    """Output (and, with grad_output, the three gradients) of the pure-PyTorch
    reference, in float64."""
    value, spatial_shapes, _, locations, weights = as_float64(inputs)
    leaves = [t.detach().clone().requires_grad_(grad_output is not None)
              for t in (value, locations, weights)]
    out = ops.multi_scale_deformable_attn_pytorch(leaves[0], spatial_shapes,
                                                  leaves[1], leaves[2])
    if grad_output is None:
        return out.detach()
    grads = torch.autograd.grad(out, leaves, grad_output.double())
    return (out.detach(), ) + tuple(grads)


def assert_close_scaled(actual, expected, tol, name=''):
    """max |actual - expected| <= tol * max(1, max |expected|), same shape and
    dtype as the kernel's inputs."""
    assert actual.shape == expected.shape, (name, actual.shape,
                                            expected.shape)
    if actual.numel() == 0:
        return
    scale = max(1.0, expected.double().abs().max().item())
    err = (actual.double() - expected.double().to(actual.device)).abs().max()
    assert err.item() <= tol * scale, (
        f'{name}: max abs error {err.item():.3g} > {tol:g} * {scale:.3g}')


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


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('head_dim,shapes,num_points,batch', CASES)
def test_matches_reference_and_cpu(dtype, head_dim, shapes, num_points,
                                   batch):
    num_heads, num_queries = 3, 7
    inputs = make_inputs(batch=batch, num_queries=num_queries,
                         num_heads=num_heads, head_dim=head_dim,
                         shapes=shapes, num_points=num_points, dtype=dtype,
                         seed=head_dim * 10 + num_points + batch)
    grad_output = torch.randn(batch, num_queries, num_heads * head_dim,
                              device=CUDA, dtype=dtype)
    tol = TOLERANCE[dtype]

    out = FORWARD(*inputs)
    grads = BACKWARD(grad_output, *inputs)
    want = reference(inputs, grad_output)
    assert out.shape == (batch, num_queries, num_heads * head_dim)
    assert out.dtype == dtype and out.device == inputs[0].device
    names = ('output', 'grad_value', 'grad_sampling_locations',
             'grad_attention_weights')
    for name, got, ref in zip(names, (out, ) + tuple(grads), want):
        assert got.dtype == dtype, name
        assert_close_scaled(got, ref, tol, name)

    # the compiled CPU kernel on the same inputs
    if HAS_CPU_KERNEL:
        cpu_inputs = [t.cpu() for t in inputs]
        cpu_out = FORWARD(*cpu_inputs)
        cpu_grads = BACKWARD(grad_output.cpu(), *cpu_inputs)
        for name, got, ref in zip(names, (out, ) + tuple(grads),
                                  (cpu_out, ) + tuple(cpu_grads)):
            assert_close_scaled(got.cpu(), ref, tol, name + ' vs CPU')


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_outside_locations_give_zeros(dtype):
    inputs = make_inputs(head_dim=32, num_points=4, dtype=dtype,
                         spread=(1.6, 3.0))
    locations = inputs[3].clone()
    locations[0, 0, 0, 0, 0] = float('nan')  # samples nothing either
    inputs = inputs[:3] + (locations, inputs[4])
    grad_output = torch.randn(2, 5, 64, device=CUDA, dtype=dtype)
    assert FORWARD(*inputs).abs().max() == 0
    for grad in BACKWARD(grad_output, *inputs):
        assert grad.abs().max() == 0


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('head_dim', [1, 3, 8, 30, 32, 64, 71, 256])
def test_half_types_match_float32(dtype, head_dim):
    inputs = make_inputs(batch=2, num_queries=6, num_heads=3,
                         head_dim=head_dim, shapes=((12, 16), (6, 8)),
                         num_points=4, dtype=dtype, seed=head_dim)
    grad_output = torch.randn(2, 6, 3 * head_dim, device=CUDA).to(dtype)
    inputs32 = [t.float() if t.is_floating_point() else t for t in inputs]
    tol = HALF_TOLERANCE[dtype]

    out = FORWARD(*inputs)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), FORWARD(*inputs32), atol=tol,
                               rtol=tol)
    for deterministic in (False, True):
        with deterministic_algorithms(deterministic):
            grads = BACKWARD(grad_output, *inputs)
            grads32 = BACKWARD(grad_output.float(), *inputs32)
        for name, got, want in zip(('value', 'locations', 'weights'), grads,
                                   grads32):
            assert got.dtype == dtype, name
            torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol,
                                       msg=f'grad_{name}')


def test_gradcheck_float64():
    value, spatial_shapes, level_start_index, locations, weights = \
        make_inputs(batch=2, num_queries=3, num_heads=2, head_dim=3,
                    shapes=((4, 5), (2, 3)), num_points=2,
                    dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (value, locations, weights)]

    def fn(v, loc, w):
        return ops.multi_scale_deformable_attn(v, spatial_shapes,
                                               level_start_index, loc, w)

    # grad_value uses atomics, so repeated backward passes may differ by
    # rounding: allow that through nondet_tol.
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5,
                                    nondet_tol=1e-12)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.float64])
@pytest.mark.parametrize('head_dim', [32, 71])
def test_deterministic_mode(dtype, head_dim):
    # many queries on small maps: lots of grad_value collisions
    inputs = make_inputs(batch=2, num_queries=500, num_heads=4,
                         head_dim=head_dim, shapes=((3, 2), (2, 2)),
                         num_points=4, dtype=dtype, spread=(0.0, 1.0))
    grad_output = torch.randn(2, 500, 4 * head_dim, device=CUDA).to(dtype)
    with deterministic_algorithms(True):
        first = BACKWARD(grad_output, *inputs)
        second = BACKWARD(grad_output, *inputs)
    atomic = BACKWARD(grad_output, *inputs)
    for name, a, b, c in zip(('value', 'locations', 'weights'), first,
                             second, atomic):
        assert torch.equal(a, b), f'grad_{name} differs between two runs'
        if dtype == torch.float16:
            torch.testing.assert_close(a.float(), c.float(), atol=1e-2,
                                       rtol=1e-2, msg=f'grad_{name}')
        else:
            assert_close_scaled(a, c, 1e-5, f'grad_{name} vs atomic path')
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


def test_large_value_64bit_indexing():
    """B * S * M * D > 2**31 elements (bfloat16, 4.4 GB), sampling the rows
    at the very end of the value."""
    free, _ = torch.cuda.mem_get_info()
    if free < 24 * 2**30:
        pytest.skip('needs 24 GiB of free GPU memory')
    dtype = torch.bfloat16
    batch, num_heads, head_dim = 2, 8, 128
    height, width = 1040, 1024
    num_queries, num_points = 16, 4
    spatial_shapes = torch.tensor([[height, width]], device=CUDA)
    level_start_index = torch.zeros(1, dtype=torch.long, device=CUDA)
    value = torch.empty(batch, height * width, num_heads, head_dim,
                        dtype=dtype, device=CUDA).normal_()
    assert value.numel() > 2**31
    gen = torch.Generator().manual_seed(0)
    locations = torch.rand(batch, num_queries, num_heads, 1, num_points, 2,
                           generator=gen)
    # half of the points on the last rows of the map (flat offsets > 2**31
    # for the second batch element), a few outside it
    locations[..., :num_points // 2, 1] = 0.995 + 0.01 * locations[
        ..., :num_points // 2, 1]
    locations = locations.to(CUDA, dtype)
    weights = torch.rand(batch, num_queries, num_heads, 1, num_points,
                         generator=gen).softmax(-1).to(CUDA, dtype)
    inputs = (value, spatial_shapes, level_start_index, locations, weights)

    out = FORWARD(*inputs)
    want, keys, _, _ = _gather_reference(*inputs)
    assert keys.max().item() * head_dim > 2**31  # really beyond int32
    tol = HALF_TOLERANCE[dtype]
    torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol)
    del out

    grad_output = torch.randn(batch, num_queries, num_heads * head_dim,
                              device=CUDA).to(dtype)
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
                            device=CUDA).index_add_(0, inverse, contributions)
    got_rows = grad_value.view(-1, head_dim)[unique].double()
    torch.testing.assert_close(got_rows, want_rows, atol=tol, rtol=tol)
    # and a sample of the untouched rows is zero
    probe = torch.randint(0, grad_value.numel() // head_dim, (4096, ),
                          device=CUDA)
    probe = probe[~torch.isin(probe, unique)]
    assert grad_value.view(-1, head_dim)[probe].abs().max() == 0


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_inconsistent_spatial_shapes_stay_in_bounds(dtype):
    """spatial_shapes on the GPU are not value-checked; rows past S must be
    treated as zeros, never read or written."""
    inputs = make_inputs(batch=2, num_heads=2, head_dim=8,
                         shapes=((7, 5), (4, 9)), num_points=4, dtype=dtype)
    value, _, level_start_index, locations, weights = inputs
    num_tokens = value.shape[1]  # 35 + 36
    # level 1 claims 6 * 9 = 54 rows, only 36 exist: 18 rows past S
    bad_shapes = torch.tensor([[7, 5], [6, 9]], device=CUDA)
    padded = torch.cat([value, value.new_zeros(2, 18, 2, 8)], 1)
    grad_output = torch.randn(2, 5, 16, device=CUDA, dtype=dtype)
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
        assert_close_scaled(g[0], want[1][:, :num_tokens], tol, 'grad_value')
        assert_close_scaled(g[1], want[2], tol, 'grad_sampling_locations')
        assert_close_scaled(g[2], want[3], tol, 'grad_attention_weights')
    # negative level starts: every row is out of range
    out = FORWARD(value, inputs[1], torch.full_like(level_start_index, -999),
                  locations, weights)
    torch.cuda.synchronize()
    assert out.abs().max() == 0


@pytest.mark.parametrize('dtype', [torch.float16, torch.float32,
                                   torch.float64])
def test_non_contiguous_and_misaligned_inputs(dtype):
    inputs = make_inputs(batch=2, num_heads=2, head_dim=32, num_points=4,
                         dtype=dtype)
    value = inputs[0]
    grad_output = torch.randn(2, 5, 64, device=CUDA).to(dtype)
    want = (FORWARD(*inputs), ) + tuple(BACKWARD(grad_output, *inputs))
    # contiguous but offset by one element: no 16-byte vector loads possible
    storage = torch.empty(value.numel() + 1, dtype=dtype, device=CUDA)
    misaligned = storage[1:].view(value.shape).copy_(value)
    grad_storage = torch.empty(grad_output.numel() + 1, dtype=dtype,
                               device=CUDA)
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


@pytest.mark.parametrize('batch,num_queries,head_dim,num_points', [
    (0, 3, 4, 2), (2, 0, 4, 2), (2, 3, 0, 2), (2, 3, 4, 0)])
def test_empty_inputs(batch, num_queries, head_dim, num_points):
    inputs = make_inputs(batch=batch, num_queries=num_queries,
                         head_dim=head_dim, num_points=num_points)
    out = FORWARD(*inputs)
    assert out.shape == (batch, num_queries, 2 * head_dim)
    assert out.abs().sum() == 0
    grads = BACKWARD(torch.zeros_like(out), *inputs)
    for grad, t in zip(grads, (inputs[0], inputs[3], inputs[4])):
        assert grad.shape == t.shape and grad.abs().sum() == 0


def test_input_checks_on_cuda():
    inputs = make_inputs()
    with pytest.raises(TypeError, match='spatial_shapes is on'):
        FORWARD(inputs[0], inputs[1].cpu(), *inputs[2:])
    out = FORWARD(*inputs)
    with pytest.raises(ValueError, match='grad_output must have shape'):
        BACKWARD(out[:, :1], *inputs)
    with pytest.raises(TypeError, match='grad_output dtype'):
        BACKWARD(out.double(), *inputs)


@pytest.mark.parametrize('backend', ['aot_eager', 'inductor'])
def test_torch_compile_fullgraph(backend):
    if backend == 'inductor':
        pytest.importorskip('triton')
    value, spatial_shapes, level_start_index, locations, weights = \
        make_inputs(head_dim=32, num_points=4)
    leaves = [t.requires_grad_() for t in (value, locations, weights)]

    def fn(value, locations, weights):
        out = ops.multi_scale_deformable_attn(value * 2, spatial_shapes,
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
