"""``ddetr_plugin::counter_dropout`` (``csrc/counter_dropout.cpp``,
``ddetr_plugin/ops/counter_dropout.py``) and the ``CounterDropout`` layers the
transformer swaps in with ``counter_dropout=True``.

The reference is the definition itself: each element kept with probability
``1 - p`` and scaled by ``1 / (1 - p)``, as ``torch.nn.functional.dropout``.
Checked: keep rate within 6 standard deviations, overall and per channel;
no correlation between neighbouring elements or between calls; exact
scaling; the backward regenerates the forward's mask (``gradcheck``);
reproducibility under ``torch.manual_seed`` and independence of the thread
count and instruction set, with the variant that ran asserted; ``p`` within
1e-9 of 1 and ``p == 1`` (nothing or next to nothing kept, finite, as torch
at ``p == 1``); dtypes; the op's schema, fake kernel and autograd
registration (``opcheck``); and the transformer with it.

``relu_counter_dropout`` (ReLU and dropout in one pass) is checked against
the two steps it fuses, ``counter_dropout(relu(x))``: the same output and
gradients bit for bit from the same random state, ``gradcheck`` in
float64, ``opcheck``, and the FFN fusion that ``use_counter_dropout`` does.
"""
import math
import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers.cpu_variants import highest_variant, variants_this_cpu_runs

from mmcv.cnn.bricks.transformer import FFN
from torch import nn

from ddetr_plugin.models.layers import (CounterDropout,
                                        CounterDropoutMultiheadAttention,
                                        ReLUCounterDropout,
                                        use_counter_dropout)
from ddetr_plugin.ops import (counter_dropout, cpu_kernel_variant,
                              last_cpu_kernel_variant, relu_counter_dropout)

OP = torch.ops.ddetr_plugin.counter_dropout
RELU_OP = torch.ops.ddetr_plugin.relu_counter_dropout
RELU_BACKWARD_OP = torch.ops.ddetr_plugin.relu_counter_dropout_backward

pytestmark = pytest.mark.usefixtures('plugin_scope')


def _within(rate, expected, count, sigmas=6.0):
    std = (expected * (1 - expected) / count)**0.5
    return abs(rate - expected) <= sigmas * std


@pytest.mark.parametrize('p', [0.1, 0.5, 0.9])
def test_keep_rate_and_scaling(p):
    x = torch.rand(512, 1024) + 0.5  # no zeros
    torch.manual_seed(0)
    y = counter_dropout(x, p)
    kept = y != 0
    assert _within(kept.double().mean().item(), 1 - p, x.numel())
    # every channel of (tokens, channels), as dropout sees activations
    per_channel = kept.double().mean(0)
    std = ((1 - p) * p / x.shape[0])**0.5
    assert (per_channel - (1 - p)).abs().max() <= 6 * std
    scale = torch.tensor(1 / (1 - p), dtype=torch.float32)
    torch.testing.assert_close(y[kept], x[kept] * scale, rtol=0, atol=0)


def test_no_correlation_between_neighbours_or_calls():
    torch.manual_seed(0)
    ones = torch.ones(2**20)
    first = (counter_dropout(ones, 0.5) != 0).double() - 0.5
    second = (counter_dropout(ones, 0.5) != 0).double() - 0.5
    bound = 6 / ones.numel()**0.5  # correlation of independent masks
    for a, b in ((first[:-1], first[1:]), (first[:-1024], first[1024:]),
                 (first, second)):
        correlation = (a * b).mean() / 0.25
        assert abs(correlation.item()) <= bound


def test_backward_regenerates_the_mask():
    x = torch.randn(4, 33, dtype=torch.float64, requires_grad=True)

    def fn(x):
        torch.manual_seed(3)
        return counter_dropout(x, 0.3)

    assert torch.autograd.gradcheck(fn, (x, ))
    y = fn(x)
    (grad, ) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, (y != 0).double() / 0.7)


def test_reproducible_and_thread_count_independent():
    x = torch.randn(3, 70001)
    threads = torch.get_num_threads()
    results = []
    for num_threads in (1, max(2, threads)):
        torch.set_num_threads(num_threads)
        torch.manual_seed(7)
        results.append(counter_dropout(x, 0.2))
    torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])
    torch.manual_seed(8)
    assert not torch.equal(results[0], counter_dropout(x, 0.2))


_ISA_SCRIPT = '''
import sys, torch
from ddetr_plugin.ops import (cpu_kernel_variant, last_cpu_kernel_variant,
                              level_start_index, multi_scale_deformable_attn)
ran = {'capability': torch.backends.cpu.get_cpu_capability().lower(),
       'decision': cpu_kernel_variant(),
       'before any kernel': last_cpu_kernel_variant(reset=True)}
x = torch.arange(100003, dtype=torch.float32)
mask = torch.ops.ddetr_plugin.counter_dropout(x, 0.25, 12345)
ran['counter_dropout'] = last_cpu_kernel_variant(reset=True)
gen = torch.Generator().manual_seed(0)
shapes = torch.tensor([[6, 8], [3, 4]])
value = torch.randn(2, 60, 2, 8, generator=gen).requires_grad_()
locations = torch.rand(2, 5, 2, 2, 3, 2, generator=gen)
weights = torch.rand(2, 5, 2, 2, 3, generator=gen).softmax(-1)
out = multi_scale_deformable_attn(value, shapes, level_start_index(shapes),
                                  locations, weights)
ran['msda forward'] = last_cpu_kernel_variant(reset=True)
out.sum().backward()
ran['msda backward'] = last_cpu_kernel_variant(reset=True)
torch.save((ran, mask), sys.argv[1])
'''

def test_instruction_set_variants_give_the_same_mask(tmp_path):
    """Each instruction-set variant this CPU has, asked for with
    ``ATEN_CPU_CAPABILITY`` (csrc/cpu/cpu_isa.h) in a fresh process: every
    CPU kernel (counter dropout, MSDA forward and backward) ran that
    variant, as the variant's own code notes it, and the mask is integer
    arithmetic, bitwise the same on every variant. Variants above this CPU
    are not asked for: torch honours ``ATEN_CPU_CAPABILITY`` unchecked, and
    its own kernels then die of SIGILL (torch 2.13, avx512 on an AVX2-only
    CPU)."""
    script = tmp_path / 'isa.py'
    script.write_text(_ISA_SCRIPT)
    want = OP(torch.arange(100003, dtype=torch.float32), 0.25, 12345)
    highest = highest_variant()
    ran_variants = []
    for capability in reversed(variants_this_cpu_runs()):
        out = tmp_path / f'{capability}.pt'
        subprocess.run([sys.executable, str(script), str(out)], check=True,
                       env=dict(os.environ, ATEN_CPU_CAPABILITY=capability))
        ran, mask = torch.load(out)
        # off x86-64 the kernels have one variant, whatever torch reports
        expected = capability if highest != 'default' else 'default'
        assert ran == {'capability': ran['capability'],
                       'decision': expected, 'before any kernel': '',
                       'counter_dropout': expected,
                       'msda forward': expected,
                       'msda backward': expected}, capability
        assert torch.equal(mask, want), capability
        ran_variants.append(capability)
    assert ran_variants[0] == highest and ran_variants[-1] == 'default'


def test_variant_query_in_this_process():
    """Without a subprocess: the kernels run the variant that
    ``cpu_kernel_variant`` reports, and a reset forgets it."""
    OP(torch.ones(10), 0.5, 1)
    assert last_cpu_kernel_variant(reset=True) == cpu_kernel_variant()
    assert last_cpu_kernel_variant() == ''
    capability = torch.backends.cpu.get_cpu_capability().lower()
    if platform.machine() in ('x86_64', 'AMD64'):
        assert cpu_kernel_variant() == capability


# p in [1 - 1e-9, 1): round(p * 2^32) is 2^32 - 4 ... 2^32; 1 - 2^-33 is
# the smallest p that rounds to 2^32 (2^32 * (1 - p) = 0.5 exactly, rounded
# away from zero as llround does)
NEAR_ONE = [1 - 1e-9, 1 - 5e-10, 1 - 2**-32, 1 - 2e-10, 1 - 2**-33,
            1 - 1e-10, 1 - 2**-40, 1 - 1e-13, math.nextafter(1.0, 0.0)]


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('p', NEAR_ONE)
def test_p_near_one_keeps_next_to_nothing(p, dtype):
    """``p`` in [1 - 1e-9, 1): the keep threshold ``round(p * 2^32)`` is
    2^32 - 4 or more; at 2^32 (``p`` within 2^-33 of 1) nothing is kept
    (output and gradient exactly 0), below it at most a few of the 2^20
    elements (expected < 0.001), scaled by ``1 / (1 - p)``. Outputs and
    gradients are finite. (The 32-bit threshold wrapped 2^32 to 0: every
    element kept and scaled by up to ~1e13.)"""
    n = 2**20
    x = (torch.rand(n, dtype=torch.float64) + 0.5).to(dtype)
    x.requires_grad_()
    y = OP(x, p, 2024)
    (grad, ) = torch.autograd.grad(y.sum(), x)
    assert y.dtype == grad.dtype == dtype
    assert torch.isfinite(y).all() and torch.isfinite(grad).all()
    kept = y != 0
    # Poisson with mean n * 4.5 / 2^32 < 0.0011: P(more than 2) < 3e-10
    assert int(kept.sum()) <= 2, int(kept.sum())
    assert torch.equal(grad != 0, kept)
    scale = 1 / (1 - p)
    torch.testing.assert_close(y[kept].double(),
                               x[kept].detach().double() * scale,
                               rtol=1e-2, atol=0)
    if math.floor(p * 2**32 + 0.5) >= 2**32:  # llround of the kernel
        assert not kept.any()
        assert torch.equal(y, torch.zeros_like(y))
        assert torch.equal(grad, torch.zeros_like(grad))


def test_p_near_one_through_the_layer():
    x = torch.ones(1000, requires_grad=True)
    torch.manual_seed(0)
    y = CounterDropout(math.nextafter(1.0, 0.0))(x)
    y.sum().backward()
    assert torch.equal(y, torch.zeros_like(y))
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_p_equal_one_matches_torch():
    """``p == 1``: the op (and the Python function, which calls torch's)
    give what torch's CPU dropout gives, ``input * 0``: zeros for finite
    input, NaN for inf and NaN (no element kept, nothing scaled); the
    gradient likewise ``grad_output * 0``."""
    values = torch.tensor([1.5, -2.0, 0.0, -0.0, 1e30, float('inf'),
                           float('-inf'), float('nan')])
    grad_output = torch.tensor([1.0, -1.0, 2.0, 3.0, float('inf'), 1.0,
                                float('nan'), 1.0])
    results = []
    for fn in (lambda x: F.dropout(x, 1.0, True),
               lambda x: OP(x, 1.0, 5),
               lambda x: counter_dropout(x, 1.0)):
        x = values.clone().requires_grad_()
        y = fn(x)
        y.backward(grad_output)
        results.append((y.detach(), x.grad))
    want = results[0]
    for got in results[1:]:
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(want[0][:5], torch.zeros(5))


@pytest.mark.parametrize(
    'dtype', [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_share_the_mask(dtype):
    x = torch.rand(1000, dtype=torch.float64) + 0.5
    want = OP(x, 0.3, 99)
    got = OP(x.to(dtype), 0.3, 99)
    assert got.dtype == dtype
    assert torch.equal(got != 0, want != 0)
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=0)


def test_identity_zeros_and_errors():
    x = torch.randn(10, 10)
    assert counter_dropout(x, 0.5, training=False) is x
    assert counter_dropout(x, 0.0) is x
    assert torch.equal(counter_dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match='p must be in'):
        counter_dropout(x, 1.5)
    for p in (1.0 + 1e-12, -1e-12, float('nan')):
        with pytest.raises(ValueError, match=r'p must be in \[0, 1\]'):
            OP(x, p, 0)
    with pytest.raises(TypeError, match='floating point'):
        OP(torch.ones(3, dtype=torch.long), 0.5, 0)


@pytest.mark.parametrize('p', [0.3, math.nextafter(1.0, 0.0), 1.0])
def test_opcheck(p):
    """Schema, fake kernel, autograd registration and AOT dispatch."""
    x = torch.randn(5, 7, requires_grad=True)
    torch.library.opcheck(OP, (x, p, 1234))


def test_layer_and_swap():
    layer = CounterDropout(0.25)
    assert isinstance(layer, nn.Dropout) and layer.p == 0.25
    layer.eval()
    x = torch.randn(4, 4)
    assert layer(x) is x
    from mmcv.cnn.bricks.drop import Dropout as MMCVDropout

    class CustomDropout(nn.Dropout):

        def forward(self, input):
            return input

    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1),
                          nn.Sequential(MMCVDropout(0.2)),
                          nn.MultiheadAttention(4, 2, dropout=0.3),
                          CustomDropout(0.4), nn.Dropout2d(0.5))
    assert use_counter_dropout(model) == 3
    assert [type(m) for m in (model[1], model[2][0])] == [CounterDropout] * 2
    assert type(model[3]) is CounterDropoutMultiheadAttention
    assert (model[1].p, model[2][0].p) == (0.1, 0.2)
    # a dropout with its own forward, and Dropout2d, are left alone
    assert type(model[4]) is CustomDropout
    assert type(model[5]) is nn.Dropout2d
    assert use_counter_dropout(model) == 0


def test_transformer_with_counter_dropout():
    """Every dropout layer of encoder and decoder is swapped; in eval mode
    the outputs equal those of the same weights with torch's dropout, and in
    training the dropout is active and reproducible."""
    from test_transformer import SHAPES, _masks, _transformer
    torch.manual_seed(0)
    ours = _transformer(as_two_stage=False)
    cfg_dropout = 0.1
    plain = _transformer(as_two_stage=False)
    plain.load_state_dict(ours.state_dict())
    for module in [*ours.modules(), *plain.modules()]:
        if isinstance(module, nn.Dropout):
            module.p = cfg_dropout
        if isinstance(module, nn.MultiheadAttention):
            module.dropout = cfg_dropout
    swapped = use_counter_dropout(ours)
    # encoder layer: attention, FFN (2); decoder layer: self-attention
    # (attention weights, projection and mmcv's dropout_layer),
    # cross-attention, FFN (2); 1 encoder + 2 decoder layers
    assert swapped == 3 + 2 * 6
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 32, h, w, generator=gen) for h, w in SHAPES]
    for model in ours, plain:
        model.eval()
    torch.testing.assert_close(
        ours(feats, _masks())['hidden_states'],
        plain(feats, _masks())['hidden_states'], rtol=0, atol=0)
    ours.train()
    torch.manual_seed(1)
    first = ours(feats, _masks())['hidden_states']
    torch.manual_seed(1)
    again = ours(feats, _masks())['hidden_states']
    torch.manual_seed(2)
    other = ours(feats, _masks())['hidden_states']
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize('config', [
    'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    'deformable_detr/deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py',
    'dino/dino-4scale_r50_8xb2-12e_coco.py'])
def test_configs_turn_it_on(config):
    """The class keeps torch's dropout by default (as mmdet); every config
    of ours turns counter dropout on for every dropout layer of its
    transformer (through the model base), and its FFNs' ReLU is out of
    place."""
    from helpers.paths import REPO_ROOT
    from mmengine.config import Config
    from test_transformer import _transformer

    from ddetr_plugin.registry import MODELS
    assert not any(
        isinstance(m, CounterDropout)
        for m in _transformer(as_two_stage=False).modules())
    cfg = Config.fromfile(REPO_ROOT / 'configs' / config)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    layers = [m for m in model.transformer.modules()
              if isinstance(m, nn.Dropout)]
    assert layers and all(isinstance(m, CounterDropout) for m in layers)
    # every FFN's ReLU + dropout is fused; a ReLU left is out of place
    ffns = [m for m in model.transformer.modules() if type(m) is FFN]
    assert ffns and all(
        [type(m) for m in ffn.layers[0]][1:] == [ReLUCounterDropout]
        for ffn in ffns)
    assert not any(m.inplace for m in model.transformer.modules()
                   if isinstance(m, nn.ReLU))


def _two_steps(x, p):
    return counter_dropout(torch.relu(x), p)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16])
@pytest.mark.parametrize('p', [0.1, 0.5, math.nextafter(1.0, 0.0), 1.0])
def test_relu_counter_dropout_is_the_two_steps(p, dtype):
    """Output and gradient equal ReLU then counter dropout, bit for bit,
    from the same random state; negative inputs, zeros and NaN included
    (a NaN input's gradient aside: torch's ReLU passes it, the fused op,
    which sees only the output, blocks it)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(300, 257, generator=gen).to(dtype)
    x[0, :5] = torch.tensor([0.0, -0.0, float('nan'), -1e-30, 1e-30])
    grad = torch.randn(x.shape, generator=gen).to(dtype)
    outputs, grads = [], []
    for fn in (relu_counter_dropout, _two_steps):
        leaf = x.clone().requires_grad_()
        torch.manual_seed(7)
        out = fn(leaf, p)
        out.backward(grad)
        outputs.append(out.detach())
        grads.append(leaf.grad)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0,
                               equal_nan=True)
    finite = ~x.isnan()
    torch.testing.assert_close(grads[0][finite], grads[1][finite], rtol=0,
                               atol=0)
    assert outputs[0][0, 2].isnan() and grads[0][0, 2] == 0


def test_relu_counter_dropout_gradcheck():
    """float64 gradcheck of the op with a fixed seed (inputs kept away from
    the ReLU's kink at 0)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 33, generator=gen, dtype=torch.float64) + 0.1
    x = (x * torch.randint(0, 2, x.shape, generator=gen) * 2 - x)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: RELU_OP(t, 0.4, 99), (x, ))


@pytest.mark.parametrize('p', [0.3, math.nextafter(1.0, 0.0), 1.0])
def test_relu_counter_dropout_opcheck(p):
    """Schema, fake kernels, autograd registration and AOT dispatch of the
    op and its backward."""
    x = torch.randn(5, 7, requires_grad=True)
    torch.library.opcheck(RELU_OP, (x, p, 1234))
    out = RELU_OP(x.detach(), p, 1234)
    torch.library.opcheck(RELU_BACKWARD_OP, (torch.randn(5, 7), out, p))


def test_relu_counter_dropout_identity_and_errors():
    x = torch.randn(4, 5)
    assert torch.equal(relu_counter_dropout(x, 0.5, training=False),
                       torch.relu(x))
    assert torch.equal(relu_counter_dropout(x, 0.0), torch.relu(x))
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r'p must be in \[0, 1\]'):
            relu_counter_dropout(x, p)
        with pytest.raises(ValueError, match=r'p must be in \[0, 1\]'):
            RELU_OP(x, p, 0)
    with pytest.raises(TypeError, match='floating point'):
        RELU_OP(torch.ones(3, dtype=torch.long), 0.5, 0)
    with pytest.raises(ValueError, match='grad_output of shape'):
        RELU_BACKWARD_OP(torch.ones(3), torch.ones(4), 0.5)
    with pytest.raises(TypeError, match='grad_output is'):
        RELU_BACKWARD_OP(torch.ones(3, dtype=torch.float64), torch.ones(3),
                         0.5)


def test_ffn_relu_and_dropout_are_fused():
    """mmcv's FFN (Linear, ReLU, Dropout, Linear, Dropout): the ReLU and its
    dropout become one ReLUCounterDropout; keys, outputs and gradients in
    training (same random state) and in eval are those of ReLU + counter
    dropout unfused."""
    torch.manual_seed(0)
    fused = FFN(embed_dims=8, feedforward_channels=16, ffn_drop=0.3,
                act_cfg=dict(type='ReLU', inplace=False))
    unfused = FFN(embed_dims=8, feedforward_channels=16, ffn_drop=0.3,
                  act_cfg=dict(type='ReLU', inplace=False))
    unfused.load_state_dict(fused.state_dict())
    keys = list(fused.state_dict())
    assert use_counter_dropout(fused) == 2
    # unfused: the plain swap, ReLU left in place
    unfused.layers[0][2] = CounterDropout(0.3)
    unfused.layers[2] = CounterDropout(0.3)
    assert [type(m) for m in fused.layers[0]][1:] == [ReLUCounterDropout]
    assert fused.layers[0][1].p == 0.3
    assert list(fused.state_dict()) == keys
    x = torch.randn(2, 40, 8)
    for training in (True, False):
        results = []
        for model in (fused, unfused):
            model.train(training)
            model.zero_grad()
            torch.manual_seed(5)
            out = model(x)
            out.square().sum().backward()
            results.append((out.detach(), [q.grad for q in
                                           model.parameters()]))
        assert torch.equal(results[0][0], results[1][0])
        for g, g_ref in zip(results[0][1], results[1][1]):
            assert torch.equal(g, g_ref)
    # a ReLU before something else, or a lone dropout, is not fused
    seq = nn.Sequential(nn.ReLU(), nn.Linear(2, 2), nn.Dropout(0.1))
    use_counter_dropout(seq)
    assert [type(m) for m in seq] == [nn.ReLU, nn.Linear, CounterDropout]


@pytest.mark.parametrize('masks', ['none', 'attn_mask', 'both'])
def test_multihead_attention_with_counter_dropout(masks, monkeypatch):
    """In training, the swapped nn.MultiheadAttention equals torch's own
    with its dropout made counter dropout (the reference: torch's code, its
    ``F.dropout`` patched), outputs and gradients; in eval it is torch's."""
    torch.manual_seed(0)
    ours = nn.MultiheadAttention(16, 4, dropout=0.3)
    reference = nn.MultiheadAttention(16, 4, dropout=0.3)
    reference.load_state_dict(ours.state_dict())
    assert use_counter_dropout(ours) == 1
    assert type(ours) is CounterDropoutMultiheadAttention
    assert list(ours.state_dict()) == list(reference.state_dict())
    gen = torch.Generator().manual_seed(1)
    query = torch.randn(7, 3, 16, generator=gen)
    key = torch.randn(7, 3, 16, generator=gen)
    kwargs = {}
    if masks != 'none':
        kwargs['attn_mask'] = torch.rand(7, 7, generator=gen) < 0.3
        kwargs['attn_mask'].fill_diagonal_(False)
    if masks == 'both':
        kwargs['key_padding_mask'] = torch.zeros(3, 7, dtype=torch.bool)
        kwargs['key_padding_mask'][1, -2:] = True
    torch_dropout = F.dropout

    def run(model, counter):
        monkeypatch.setattr(
            F, 'dropout', (lambda x, p, training=True, inplace=False:
                           counter_dropout(x, p, training))
            if counter else torch_dropout)
        model.zero_grad()
        torch.manual_seed(5)
        out, weights = model(query, key, query, **kwargs)
        out.square().sum().backward()
        return out.detach(), weights, [q.grad for q in model.parameters()]

    for model in ours, reference:
        model.train()
    got, want = run(ours, False), run(reference, True)
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-6)
    for g, g_ref in zip(got[2], want[2]):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
    torch.manual_seed(6)
    assert not torch.equal(ours(query, key, query, **kwargs)[0], got[0])
    for model in ours, reference:
        model.eval()
    assert torch.equal(run(ours, False)[0], run(reference, False)[0])
