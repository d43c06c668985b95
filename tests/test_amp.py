"""Mixed precision on CPU: the MSDA op under autocast, our
``AmpOptimWrapper`` (mmengine's refuses CPU), and ``tools/train.py --amp``
training 30 BCCD iterations in bfloat16 with finite losses."""
import math

import pytest
import torch
from conftest import make_msda_inputs
from tiny_training import (TOOLS, bccd_annotations, run_tool,
                           scalar_records, write_tiny_config)

from ddetr_plugin.engine import AmpOptimWrapper
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


def test_amp_optim_wrapper_on_cpu():
    model = torch.nn.Linear(4, 1)
    wrapper = AmpOptimWrapper(
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
        AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), 0.1),
                        dtype='float16')


@pytest.mark.slow
def test_train_30_iterations_with_amp_on_cpu(tmp_path):
    ann_file = bccd_annotations(tmp_path, 30)
    config = write_tiny_config(tmp_path / 'amp.py', ann_file, batch_size=1,
                               train_images=30, max_epochs=1, val_begin=2,
                               dropout=0.1, flip=0.25)
    work_dir = tmp_path / 'work'
    proc = run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir,
                    '--amp')
    assert "type='AmpOptimWrapper'" in proc.stdout + proc.stderr
    records = [r for r in scalar_records(work_dir) if 'loss' in r]
    assert len(records) == 30
    for record in records:
        for key in ('loss', 'loss_cls', 'loss_bbox', 'loss_iou',
                    'grad_norm'):
            assert math.isfinite(record[key]), (record['iter'], key)
