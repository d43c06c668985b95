"""``DeformableDETRTransformer`` on padded inputs: positional encoding, valid
ratios, two-stage proposals and their top-k selection."""
import pytest
import torch
from mmdet.models.layers import \
    SinePositionalEncoding as MMDetSinePositionalEncoding
from torch import nn
from torch.testing import assert_close

from ddetr_plugin.registry import MODELS

EMBED_DIMS = 32
# two levels; image 1 is padded: valid 6x7 of 8x10, then 3x4 of 4x5
SHAPES = [(8, 10), (4, 5)]
VALID = [[(8, 10), (4, 5)], [(6, 7), (3, 4)]]

pytestmark = pytest.mark.usefixtures('plugin_scope')


def _transformer(as_two_stage=True, num_levels=2, num_queries=10):
    msda = dict(
        embed_dims=EMBED_DIMS, num_heads=4, num_levels=num_levels,
        num_points=2, dropout=0.)
    ffn = dict(embed_dims=EMBED_DIMS, feedforward_channels=64, ffn_drop=0.)
    transformer = MODELS.build(
        dict(
            type='DeformableDETRTransformer',
            num_queries=num_queries,
            num_feature_levels=2,
            as_two_stage=as_two_stage,
            positional_encoding=dict(
                type='SinePositionalEncoding',
                num_feats=EMBED_DIMS // 2,
                offset=-0.5),
            encoder=dict(
                type='DeformableDETRTransformerEncoder',
                num_layers=1,
                layer_cfg=dict(self_attn_cfg=msda, ffn_cfg=ffn)),
            decoder=dict(
                type='DeformableDETRTransformerDecoder',
                num_layers=2,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=EMBED_DIMS, num_heads=4),
                    cross_attn_cfg=msda,
                    ffn_cfg=ffn))))
    transformer.init_weights()
    return transformer


def _masks():
    masks = []
    for lvl, (h, w) in enumerate(SHAPES):
        mask = torch.ones(len(VALID), h, w, dtype=torch.bool)
        for img, valid in enumerate(VALID):
            mask[img, :valid[lvl][0], :valid[lvl][1]] = False
        masks.append(mask)
    return masks


def _flat_inputs(transformer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = [
        torch.randn(len(VALID), EMBED_DIMS, h, w, generator=gen)
        for h, w in SHAPES
    ]
    return transformer.flatten_levels(feats, _masks())


def test_positional_encoding_matches_mmdet():
    theirs = MMDetSinePositionalEncoding(num_feats=16, normalize=True,
                                         offset=-0.5)
    ours = MODELS.build(
        dict(type='SinePositionalEncoding', num_feats=16, offset=-0.5))
    for mask in _masks():
        assert torch.equal(ours(mask), theirs(mask))


def test_flatten_levels():
    transformer = _transformer()
    (feat, mask, pos, spatial_shapes, level_start_index,
     valid_ratios) = _flat_inputs(transformer)
    assert feat.shape == pos.shape == (2, 100, EMBED_DIMS)
    assert spatial_shapes.tolist() == [[8, 10], [4, 5]]
    assert level_start_index.tolist() == [0, 80]
    assert mask[0].sum() == 0 and mask[1].sum() == 80 - 42 + 20 - 12
    assert_close(valid_ratios[1],
                 torch.tensor([[0.7, 0.75], [0.8, 0.75]]))
    assert (valid_ratios[0] == 1).all()


def test_padded_pixels_are_invalid_proposals():
    transformer = _transformer()
    memory, mask, _, spatial_shapes, _, _ = _flat_inputs(transformer)
    output_memory, proposals = transformer.gen_encoder_output_proposals(
        memory, mask, spatial_shapes)
    assert proposals[mask].isinf().all() and (proposals[mask] > 0).all()
    assert torch.isfinite(proposals[~mask]).all()
    # padded pixels have zeroed memory: one shared transformed value
    padded_memory = output_memory[mask]
    assert_close(padded_memory, padded_memory[:1].expand_as(padded_memory))
    # valid proposals are centred on their pixel of the unpadded level
    boxes = proposals[1, ~mask[1]].sigmoid()
    (h0, w0), _ = VALID[1]
    cx = (torch.arange(w0) + 0.5) / w0
    cy = (torch.arange(h0) + 0.5) / h0
    assert_close(boxes[:h0 * w0, 0], cx.repeat(h0))
    assert_close(boxes[:h0 * w0, 1], cy.repeat_interleave(w0))
    assert_close(boxes[:h0 * w0, 2:], torch.full((h0 * w0, 2), 0.05))
    assert_close(boxes[h0 * w0:, 2:], torch.full((12, 2), 0.1))


def _padded_first_branches(transformer):
    """Branches under which padded pixels score highest: the class weight
    is the transformed memory of a zeroed pixel (Cauchy-Schwarz)."""
    with torch.no_grad():
        padded = transformer.memory_trans_norm(
            transformer.memory_trans_fc.bias)
    cls_branch = nn.Linear(EMBED_DIMS, 3, bias=False)
    cls_branch.weight.data = padded.repeat(3, 1)
    reg_branch = nn.Linear(EMBED_DIMS, 4)
    nn.init.zeros_(reg_branch.weight)
    nn.init.zeros_(reg_branch.bias)
    return cls_branch, reg_branch


def test_top_k_proposals_on_padded_inputs():
    transformer = _transformer()
    memory, mask, _, spatial_shapes, _, _ = _flat_inputs(transformer)
    _, _, reference_points, enc_class, enc_coord = \
        transformer.two_stage_queries(memory, mask, spatial_shapes,
                                      *_padded_first_branches(transformer))
    assert reference_points.shape == (2, 10, 4)
    assert enc_class.shape == (2, 100, 3) and enc_coord.shape == (2, 100, 4)
    # mmdet 3.3 / reference code behaviour: padded pixels may become queries
    assert (reference_points[1] == 1).all(-1).all()


def test_two_stage_with_fewer_tokens_than_queries_uses_every_token():
    """100 tokens (SHAPES) for 150 queries: topk would fail mid-training;
    every token becomes a proposal instead, with a warning."""
    transformer = _transformer(num_queries=150)
    memory, mask, _, spatial_shapes, _, _ = _flat_inputs(transformer)
    with pytest.warns(UserWarning, match='100 tokens, fewer than '
                      'num_queries=150'):
        query, query_pos, reference_points, _, _ = \
            transformer.two_stage_queries(memory, mask, spatial_shapes,
                                          *_padded_first_branches(
                                              transformer))
    assert query.shape == query_pos.shape == (2, 100, EMBED_DIMS)
    assert reference_points.shape == (2, 100, 4)
    assert transformer.num_proposals(150) == 150


@pytest.mark.parametrize('as_two_stage', [False, True])
def test_forward_shapes(as_two_stage):
    transformer = _transformer(as_two_stage=as_two_stage)
    gen = torch.Generator().manual_seed(0)
    feats = [
        torch.randn(2, EMBED_DIMS, h, w, generator=gen) for h, w in SHAPES
    ]
    reg_branches = [nn.Linear(EMBED_DIMS, 4) for _ in range(2)]
    proposal_branches = (nn.Linear(EMBED_DIMS, 3), nn.Linear(EMBED_DIMS, 4))
    out = transformer(
        feats,
        _masks(),
        reg_branches=reg_branches,
        proposal_branches=proposal_branches if as_two_stage else None)
    assert out['hidden_states'].shape == (2, 2, 10, EMBED_DIMS)
    refs = out['references']
    assert len(refs) == 3
    assert refs[0].shape == (2, 10, 4 if as_two_stage else 2)
    # refined references are boxes, detached from the branches
    assert refs[1].shape == (2, 10, 4) and not refs[1].requires_grad
    assert (out['enc_outputs_class'] is not None) == as_two_stage


def test_config_errors():
    with pytest.raises(ValueError, match='num_levels'):
        _transformer(num_levels=3)
    transformer = _transformer(as_two_stage=True)
    feats = [torch.randn(2, EMBED_DIMS, h, w) for h, w in SHAPES]
    with pytest.raises(ValueError, match='proposal_branches'):
        transformer(feats, _masks())
    with pytest.raises(ValueError, match='feature levels'):
        transformer(feats[:1], _masks()[:1])


@pytest.mark.parametrize('reference_dims', [2, 4])
def test_look_forward_twice_changes_only_the_gradients(reference_dims):
    """Look forward twice (DINO, Sec. 3.5) returns the same references and
    hidden states; only the loss of layer d + 1 now reaches layer d's box
    branch through the reference it refines."""
    transformer = _transformer(as_two_stage=False).eval()  # no dropout
    (value, key_padding_mask, _, spatial_shapes, level_start_index,
     valid_ratios) = _flat_inputs(transformer)
    gen = torch.Generator().manual_seed(1)
    batch_size, num_queries = value.shape[0], 5
    query, query_pos = torch.randn(
        2, batch_size, num_queries, EMBED_DIMS, generator=gen)
    reference_points = torch.rand(
        batch_size, num_queries, reference_dims, generator=gen) * 0.8 + 0.1
    reg_branches = nn.ModuleList(
        nn.Linear(EMBED_DIMS, 4) for _ in range(2))
    decoder = transformer.decoder
    outputs, gradients = [], []
    for look_forward_twice in (False, True):
        decoder.look_forward_twice = look_forward_twice
        reg_branches.zero_grad(set_to_none=True)
        hidden_states, references = decoder(
            query, query_pos, value, key_padding_mask, reference_points,
            spatial_shapes, level_start_index, valid_ratios,
            reg_branches=reg_branches)
        # the head's box of the last layer, relative to its reference
        reg_branches[1](hidden_states[1]).add(
            torch.logit(references[1], eps=1e-5)).sigmoid().sum().backward()
        outputs.append((hidden_states.detach(),
                        [ref.detach() for ref in references]))
        gradients.append(reg_branches[0].weight.grad)
    assert torch.equal(outputs[0][0], outputs[1][0])
    for plain, forward_twice in zip(outputs[0][1], outputs[1][1]):
        assert torch.equal(plain, forward_twice)
    # the query passes layer 1 either way, so layer 0's box branch gets a
    # gradient only through the undetached reference
    assert gradients[0] is None
    assert gradients[1] is not None and gradients[1].abs().sum() > 0
