"""FLOP count of the MSDA op (``ddetr_plugin.ops.flops``) in mmengine's
``FlopAnalyzer``: registered on import, ``5 * B * N_q * M * L * K * D``
multiply-adds (and its output elements as activations), which is 5/4 of
what mmengine counts for the pure-PyTorch reference (its bilinear
``grid_sampler`` calls) on the same shapes, and a whole detector is
counted without unsupported operators of ours."""
from functools import partial

import pytest
import torch
from helpers.ddetr_model_utils import (build_our_model, load_our_config,
                                       make_batch)
from helpers.msda_inputs import make_msda_inputs
from mmengine.analysis import (ActivationAnalyzer, FlopAnalyzer,
                               get_model_complexity_info)

import ddetr_plugin  # noqa: F401  (registers the handle)
from ddetr_plugin.ops import (multi_scale_deformable_attn,
                              multi_scale_deformable_attn_pytorch)
from ddetr_plugin.ops.flops import MSDA_OP, msda_flops


#: how ``FlopAnalyzer.by_operator`` names it (without the namespace)
COUNTED_AS = MSDA_OP.split('::')[-1]


class _Op(torch.nn.Module):
    """One call of the op (or of the reference) as a module to trace."""

    def __init__(self, reference=False):
        super().__init__()
        self.reference = reference

    def forward(self, value, spatial_shapes, level_start_index, locations,
                weights):
        if self.reference:
            return multi_scale_deformable_attn_pytorch(
                value, spatial_shapes, locations, weights)
        return multi_scale_deformable_attn(value, spatial_shapes,
                                           level_start_index, locations,
                                           weights)


SIZES = [
    # batch, queries, heads, head_dim, level shapes, points
    (2, 5, 2, 4, ((6, 8), (3, 4)), 3),
    (1, 300, 8, 32, ((20, 30), (10, 15), (5, 8), (3, 4)), 4),
]


def test_formula():
    assert msda_flops(1, 1, 1, 1, 1, 1) == 5
    assert msda_flops(2, 300, 8, 4, 4, 32) == 5 * 2 * 300 * 8 * 4 * 4 * 32


@pytest.mark.parametrize('batch,queries,heads,head_dim,shapes,points', SIZES)
def test_flop_analyzer_counts_the_op(batch, queries, heads, head_dim, shapes,
                                     points):
    inputs = make_msda_inputs(batch, queries, heads, head_dim, shapes,
                              points, dtype=torch.float32)
    analyzer = FlopAnalyzer(_Op(), inputs)
    expected = msda_flops(batch, queries, heads, len(shapes), points,
                          head_dim)
    assert analyzer.by_operator() == {COUNTED_AS: expected}
    assert analyzer.total() == expected
    assert not analyzer.unsupported_ops()
    # activations: the output elements, as for aten::linear
    activations = ActivationAnalyzer(_Op(), inputs)
    assert activations.total() == batch * queries * heads * head_dim
    assert not activations.unsupported_ops()


@pytest.mark.parametrize('batch,queries,heads,head_dim,shapes,points', SIZES)
def test_five_quarters_of_the_reference_bilinear_count(
        batch, queries, heads, head_dim, shapes, points):
    """mmengine counts each bilinear ``grid_sampler`` output element as 4
    (its corners); ours adds the attention weight's multiply-add."""
    inputs = make_msda_inputs(batch, queries, heads, head_dim, shapes,
                              points, dtype=torch.float32)
    ours = FlopAnalyzer(_Op(), inputs).total()
    reference = FlopAnalyzer(_Op(reference=True),
                             inputs).by_operator()['grid_sampler']
    assert 4 * ours == 5 * reference


def test_a_detector_has_no_unsupported_op_of_ours(plugin_scope):
    """mmdet's get_flops.py path: ``get_model_complexity_info`` (which
    takes no handles) on a small detector (ResNet-18, 2 + 2 layers, 4
    levels) counts every MSDA call: the encoder's (one query per token of
    all levels) and the decoder's (one per object query)."""
    model = build_our_model(load_our_config(
        'deformable-detr-refine_r50_16xb2-50e_coco.py')).eval()
    data = model.data_preprocessor(make_batch(), False)
    inputs = data['inputs']
    forward = model.forward  # as get_flops.py calls it
    model.forward = partial(forward, data_samples=data['data_samples'])
    analyzer = FlopAnalyzer(model, (inputs, ))
    total = analyzer.total()
    assert MSDA_OP not in analyzer.unsupported_ops()
    activations = ActivationAnalyzer(model, (inputs, ))
    activations.total()
    assert MSDA_OP not in activations.unsupported_ops()
    with torch.no_grad():
        tokens = sum(f.shape[-2] * f.shape[-1]
                     for f in model.extract_feat(inputs))
    transformer = model.transformer
    attn = transformer.encoder.layers[0].self_attn
    per_query = msda_flops(inputs.shape[0], 1, attn.num_heads,
                           attn.num_levels, attn.num_points,
                           attn.embed_dims // attn.num_heads)
    assert analyzer.by_operator()[COUNTED_AS] == per_query * (
        tokens * len(transformer.encoder.layers) +
        transformer.num_queries * len(transformer.decoder.layers))
    result = get_model_complexity_info(model, inputs=(inputs, ),
                                       show_table=False, show_arch=False)
    assert result['flops'] == total
