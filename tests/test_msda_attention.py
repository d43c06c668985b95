"""MultiScaleDeformableAttention: a drop-in for mmcv's, given the same weights."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention as MmcvMSDA

from ddetr_plugin.models.layers.msda_attention import \
    MultiScaleDeformableAttention
from ddetr_plugin.ops import level_start_index

SHAPES = ((10, 12), (5, 6), (3, 3))


def _pair(**kwargs):
    torch.manual_seed(0)
    ref = MmcvMSDA(embed_dims=32, num_heads=4, num_levels=len(SHAPES),
                   num_points=3, **kwargs).eval()
    ours = MultiScaleDeformableAttention(embed_dims=32, num_heads=4,
                                         num_levels=len(SHAPES),
                                         num_points=3, **kwargs).eval()
    # identical initialisation scheme for the deterministic parts
    torch.testing.assert_close(ours.sampling_offsets.bias,
                               ref.sampling_offsets.bias)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    # random weights, so the comparison covers every parameter
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def _inputs(batch, num_queries, box_refs, batch_first):
    gen = torch.Generator().manual_seed(1)
    spatial_shapes = torch.tensor(SHAPES)
    num_value = int(spatial_shapes.prod(1).sum())
    query = torch.randn(batch, num_queries, 32, generator=gen)
    value = torch.randn(batch, num_value, 32, generator=gen)
    query_pos = torch.randn(batch, num_queries, 32, generator=gen)
    refs = torch.rand(batch, num_queries, len(SHAPES), 4 if box_refs else 2,
                      generator=gen)
    mask = torch.zeros(batch, num_value, dtype=torch.bool)
    mask[-1, -7:] = True
    if not batch_first:
        query, value, query_pos = (t.transpose(0, 1)
                                   for t in (query, value, query_pos))
    return dict(query=query, value=value, query_pos=query_pos,
                key_padding_mask=mask, reference_points=refs,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index(spatial_shapes))


@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('box_refs', [False, True])
@pytest.mark.parametrize('batch', [1, 3])
def test_matches_mmcv(batch_first, box_refs, batch):
    ours, ref = _pair(batch_first=batch_first)
    kwargs = _inputs(batch, 7, box_refs, batch_first)
    out = ours(**kwargs)
    want = ref(**kwargs)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), list(ours.parameters()))
    grads_ref = torch.autograd.grad(want.square().sum(),
                                    list(ref.parameters()))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_rejects_bad_reference_points():
    ours, _ = _pair(batch_first=True)
    kwargs = _inputs(1, 7, False, True)
    kwargs['reference_points'] = kwargs['reference_points'][..., :1]
    with pytest.raises(ValueError, match='reference_points must end in 2'):
        ours(**kwargs)


def test_rejects_indivisible_heads():
    with pytest.raises(ValueError, match='divisible by num_heads'):
        MultiScaleDeformableAttention(embed_dims=30, num_heads=4)


def test_torch_compile_fullgraph_module():
    ours, _ = _pair(batch_first=True)
    kwargs = _inputs(2, 7, False, True)
    compiled = torch.compile(ours, fullgraph=True)
    torch.testing.assert_close(compiled(**kwargs), ours(**kwargs),
                               atol=1e-5, rtol=1e-5)


def _ops_run(fn):
    with torch.profiler.profile() as prof:
        out = fn()
    return out, {event.name for event in prof.events()}


def test_unpadded_values_are_not_copied():
    # no padded token: the zeroing is skipped (no masked_fill, no copy of
    # the values), and the output is that of no mask at all
    ours, _ = _pair(batch_first=True)
    kwargs = _inputs(2, 7, False, True)
    kwargs['key_padding_mask'] = torch.zeros_like(kwargs['key_padding_mask'])
    out, ops = _ops_run(lambda: ours(**kwargs))
    assert 'aten::masked_fill' not in ops
    assert torch.equal(out, ours(**{**kwargs, 'key_padding_mask': None}))
    # a padded token: zeroed
    kwargs['key_padding_mask'][1, :5] = True
    padded, ops = _ops_run(lambda: ours(**kwargs))
    assert 'aten::masked_fill' in ops
    assert not torch.equal(padded, out)


@pytest.mark.parametrize('capture', ['trace', 'export'])
def test_captured_graph_zeroes_padding(capture):
    # captured from a batch without padding, the graph still zeroes the
    # padded values of later inputs (the ONNX export captures as `export`)
    ours, _ = _pair(batch_first=True)
    kwargs = _inputs(2, 7, False, True)
    padded_mask = kwargs['key_padding_mask']
    assert padded_mask.any()
    names = ('query', 'value', 'query_pos', 'key_padding_mask',
             'reference_points', 'spatial_shapes', 'level_start_index')

    def positional(mask):
        return tuple(kwargs[n] if n != 'key_padding_mask' else mask
                     for n in names)

    class Positional(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.attention = ours

        def forward(self, *args):
            return self.attention(**dict(zip(names, args)))

    unpadded = positional(torch.zeros_like(padded_mask))
    if capture == 'trace':
        graph = torch.jit.trace(Positional(), unpadded, check_trace=False)
    else:
        graph = torch.export.export(Positional(), unpadded).module()
    torch.testing.assert_close(
        graph(*positional(padded_mask)), ours(**kwargs), atol=0, rtol=0)
