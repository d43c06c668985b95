"""``DeformableDETRHead`` branch layout and init, and the detector's control
of ``with_box_refine``/``as_two_stage``."""
import pytest
import torch
from mmengine.model import bias_init_with_prob

from helpers.ddetr_model_utils import build_our_model, load_our_config
from ddetr_plugin.registry import MODELS

# our names resolve in our scope whatever scope an earlier test left current
pytestmark = pytest.mark.usefixtures('plugin_scope')


def _head(**kwargs):
    head = MODELS.build(
        dict(type='DeformableDETRHead', num_classes=5, embed_dims=32,
             **kwargs))
    head.init_weights()
    return head


def test_shared_branches_single_stage():
    head = _head(num_pred_layer=3, share_pred_layer=True)
    assert len({id(m) for m in head.cls_branches}) == 1
    assert len({id(m) for m in head.reg_branches}) == 1
    # repeated under every index in the state_dict, as mmdet's
    assert 'cls_branches.2.weight' in head.state_dict()
    assert torch.allclose(head.cls_branches[0].bias,
                          torch.full((5, ), bias_init_with_prob(0.01)))
    last = head.reg_branches[0][-1]
    assert not last.weight.any()
    assert last.bias.tolist() == [0., 0., -2., -2.]


def test_refine_two_stage_branches():
    head = _head(num_pred_layer=4, share_pred_layer=False, as_two_stage=True)
    assert len({id(m) for m in head.reg_branches}) == 4
    assert head.proposal_branches == (head.cls_branches[3],
                                      head.reg_branches[3])
    assert all(not m[-1].bias.any() for m in head.reg_branches)
    # copies of one initial branch
    assert torch.equal(head.reg_branches[0][0].weight,
                       head.reg_branches[3][0].weight)


def test_forward_shapes():
    head = _head(num_pred_layer=2)
    hidden_states = torch.randn(2, 3, 7, 32)
    references = [torch.rand(3, 7, 2)] * 3
    cls_scores, bbox_preds = head(hidden_states, references)
    assert cls_scores.shape == (2, 3, 7, 5)
    assert bbox_preds.shape == (2, 3, 7, 4)
    assert ((bbox_preds > 0) & (bbox_preds < 1)).all()


def test_needs_sigmoid_loss():
    with pytest.raises(ValueError, match='use_sigmoid'):
        _head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False))


def test_detector_sets_head_and_transformer_args():
    cfg = load_our_config('deformable-detr-refine-twostage_r50_16xb2-50e_'
                          'coco.py')
    model = build_our_model(cfg)
    assert model.bbox_head.num_pred_layer == 3  # 2 decoder layers + 1
    assert not model.bbox_head.share_pred_layer
    assert model.transformer.as_two_stage
    cfg.model.bbox_head.share_pred_layer = True
    with pytest.raises(ValueError, match='share_pred_layer'):
        build_our_model(cfg)
