"""Mixed precision on CPU: the MSDA op under autocast, our
``CPUAmpOptimWrapper`` (mmengine's ``AmpOptimWrapper`` refuses CPU), and
``tools/train.py --amp`` training 10 BCCD iterations in bfloat16: autocast
active in every Linear (``helpers.autocast_probe.AutocastProbeHook``),
losses finite and close to a float32 run on the same batches."""
import json
import math

import pytest
import torch
from helpers.msda_inputs import make_msda_inputs
from helpers.tiny_training import (TOOLS, bccd_annotations, run_tool,
                                   scalar_records, tool_env,
                                   write_tiny_config)

from ddetr_plugin.engine import CPUAmpOptimWrapper
from ddetr_plugin.models.layers.msda_attention import \
    MultiScaleDeformableAttention
from ddetr_plugin.ops import level_start_index, multi_scale_deformable_attn


def _leaves(inputs):
    value, shapes, starts, locations, weights = inputs
    return (value.requires_grad_(), shapes, starts,
            locations.requires_grad_(), weights.requires_grad_())


def test_op_runs_in_the_dtype_of_value_under_autocast():
    """bfloat16 ``value`` (what a linear layer gives under autocast) with
    float32 locations and weights: the op runs in bfloat16 (float32
    accumulation), close to float32, and the float32 inputs get float32
    gradients; a float32 ``value`` keeps the op in float32."""
    inputs32 = _leaves(make_msda_inputs(dtype=torch.float32, head_dim=8))
    expected = multi_scale_deformable_attn(*inputs32)
    expected.sum().backward()
    value = inputs32[0].detach().bfloat16().requires_grad_()
    inputs = _leaves(make_msda_inputs(dtype=torch.float32, head_dim=8))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = multi_scale_deformable_attn(value, *inputs[1:])
        out32 = multi_scale_deformable_attn(*inputs32)
    assert out.dtype == torch.bfloat16
    assert out32.dtype == torch.float32  # float32 value: no downcast
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    out.float().sum().backward()
    assert value.grad.dtype == torch.bfloat16
    assert inputs[3].grad.dtype == inputs[4].grad.dtype == torch.float32
    for got, want in ((value.grad, inputs32[0].grad),
                      (inputs[4].grad, inputs32[4].grad)):
        torch.testing.assert_close(got.float(), want, atol=5e-2, rtol=5e-2)


def test_attention_layer_stays_in_bfloat16_under_autocast():
    layer = MultiScaleDeformableAttention(
        embed_dims=32, num_heads=2, num_levels=2, num_points=2,
        batch_first=True).eval()
    spatial_shapes = torch.tensor([[8, 8], [4, 4]])
    query, value = torch.randn(2, 5, 32), torch.randn(2, 80, 32)
    reference_points = torch.rand(2, 5, 2, 2)
    seen = []
    layer.output_proj.register_forward_hook(
        lambda module, args, out: seen.append(args[0].dtype))
    kwargs = dict(value=value, reference_points=reference_points,
                  spatial_shapes=spatial_shapes,
                  level_start_index=level_start_index(spatial_shapes))
    expected = layer(query, **kwargs)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(query, **kwargs)
    assert seen == [torch.float32, torch.bfloat16]  # the op's output dtype
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=5e-2)


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='with CUDA the wrapper is mmengine\'s (float16 '
                    'autocast on the GPU, float16 allowed)')
def test_amp_optim_wrapper_on_cpu():
    """The CPU path: bfloat16 autocast, float32 weights updated, no loss
    scaling state, float16 refused."""
    model = torch.nn.Linear(4, 1)
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.AdamW(model.parameters(), lr=0.1),
        loss_scale='dynamic')  # what --amp sets; bfloat16 needs none
    assert wrapper.cast_dtype == torch.bfloat16
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    before = model.weight.detach().clone()
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype == torch.float32
    assert not torch.equal(model.weight, before)
    wrapper.load_state_dict(wrapper.state_dict())
    with pytest.raises(ValueError, match='CPU autocast supports only '
                       'bfloat16'):
        CPUAmpOptimWrapper(
            optimizer=torch.optim.SGD(model.parameters(), 0.1),
            dtype='float16')


def test_registered_under_its_own_name_only():
    """Our scope builds ours as ``CPUAmpOptimWrapper``; ``AmpOptimWrapper``
    is still mmengine's (ours no longer hides it)."""
    from mmengine.optim import AmpOptimWrapper

    from ddetr_plugin.registry import OPTIM_WRAPPERS
    assert OPTIM_WRAPPERS.get('CPUAmpOptimWrapper') is CPUAmpOptimWrapper
    assert 'AmpOptimWrapper' not in OPTIM_WRAPPERS.module_dict
    assert OPTIM_WRAPPERS.get('AmpOptimWrapper') is AmpOptimWrapper


def test_train_tool_amp_selects_ours():
    """``tools/train.py --amp`` turns into ``--cfg-options`` for mmdet's
    script: ours with mmdet's ``loss_scale='dynamic'`` from
    ``OptimWrapper``, ours in place of mmengine's ``AmpOptimWrapper``,
    nothing when already ours, an error for another wrapper."""
    import runpy

    from mmengine.config import Config
    amp_cfg_options = runpy.run_path(
        str(TOOLS / 'train.py'))['amp_cfg_options']

    def options(**optim_wrapper):
        return amp_cfg_options(Config(dict(optim_wrapper=optim_wrapper)))

    assert options(type='OptimWrapper') == [
        '--cfg-options', 'optim_wrapper.type=CPUAmpOptimWrapper',
        'optim_wrapper.loss_scale=dynamic']
    assert options(type='AmpOptimWrapper', loss_scale=512.0) == [
        '--cfg-options', 'optim_wrapper.type=CPUAmpOptimWrapper']
    assert options(type='CPUAmpOptimWrapper') == []
    with pytest.raises(SystemExit, match='only supported when'):
        options(type='ApexOptimWrapper')


PROBE = """
custom_imports = dict(imports=['helpers.autocast_probe'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='AutocastProbeHook', out_file={out_file!r})]
log_processor = dict(window_size=1)  # each iteration's own losses
"""
LOSS_TERMS = ('loss', 'loss_cls', 'loss_bbox', 'loss_iou')
# bfloat16 against float32, |amp - fp32| / |fp32| per loss term and
# iteration (each iteration's own value: log window 1). Measured here (AVX2,
# no native bfloat16, 1 thread): at most 0.35% in iteration 1 (same weights
# and batch: the forward's rounding alone), 0.87% over iterations 1-10
# (loss_iou, iteration 4), 1.7% over 1-30 as the runs drift apart; the
# gradient norm of iteration 1 0.56% (later ones drift up to 23%: clipped
# updates of different gradients). 5% leaves a margin of 5x over the first
# 10 iterations for other CPUs' bfloat16 rounding, and still catches a loss
# term off by 10% or a gradient left scaled.
COMPARED_ITERATIONS = 10
RELATIVE_TOLERANCE = 5e-2
# bfloat16 is slow where the CPU has no native support (0.04x on AVX2):
# the runs train exactly the compared iterations
ITERATIONS = COMPARED_ITERATIONS


def _train(tmp_path, name, *args):
    """``ITERATIONS`` iterations of the tiny BCCD model (1 image per batch,
    dropout and flips on: the same batches and masks in every run, seeded)
    by ``tools/train.py``, on the CPU even where CUDA is available. Returns
    (tool output, scalar records with losses, probe records)."""
    folder = tmp_path / name
    folder.mkdir()
    ann_file = bccd_annotations(folder, ITERATIONS)
    probe = folder / 'probe.jsonl'
    config = write_tiny_config(folder / f'{name}.py', ann_file, batch_size=1,
                               train_images=ITERATIONS, max_epochs=1,
                               val_begin=2,
                               dropout=0.1, flip=0.25,
                               extra=PROBE.format(out_file=str(probe)))
    work_dir = folder / 'work'
    proc = run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir,
                    *args, env=tool_env(CUDA_VISIBLE_DEVICES=''))
    records = [r for r in scalar_records(work_dir) if 'loss' in r]
    probes = [json.loads(line) for line in probe.read_text().splitlines()]
    return proc.stdout + proc.stderr, records, probes


@pytest.mark.slow
def test_train_with_amp_on_cpu(tmp_path):
    """``--amp`` builds our wrapper; every Linear of every iteration runs
    under CPU autocast with bfloat16 outputs (float32 run: neither); losses
    and gradient norms are finite; every loss term of the first
    ``COMPARED_ITERATIONS`` iterations, and the gradient norm of the first,
    within ``RELATIVE_TOLERANCE`` of the float32 run's on the same batches
    (same seed: same images, flips and dropout masks)."""
    amp_log, amp, amp_probe = _train(tmp_path, 'amp', '--amp')
    fp32_log, fp32, fp32_probe = _train(tmp_path, 'fp32')
    assert "type='CPUAmpOptimWrapper'" in amp_log
    assert "type='CPUAmpOptimWrapper'" not in fp32_log
    for records, probes in ((amp, amp_probe), (fp32, fp32_probe)):
        assert [r['iter'] for r in records] == list(
            range(1, ITERATIONS + 1))
        assert [p['iter'] for p in probes] == list(range(1, ITERATIONS + 1))
        assert all(p['calls'] > 0 for p in probes)
    assert all(p['autocast'] == [True] and p['dtypes'] == ['torch.bfloat16']
               for p in amp_probe), amp_probe
    assert all(p['autocast'] == [False] and p['dtypes'] == ['torch.float32']
               for p in fp32_probe), fp32_probe
    for record in amp:
        for key in LOSS_TERMS + ('grad_norm', ):
            assert math.isfinite(record[key]), (record['iter'], key)
    compared = [(got, want, LOSS_TERMS) for got, want in zip(
        amp[:COMPARED_ITERATIONS], fp32[:COMPARED_ITERATIONS])]
    compared.append((amp[0], fp32[0], ('grad_norm', )))  # same weights
    for got, want, keys in compared:
        for key in keys:
            difference = abs(got[key] - want[key]) / abs(want[key])
            assert difference <= RELATIVE_TOLERANCE, (
                got['iter'], key, got[key], want[key])
