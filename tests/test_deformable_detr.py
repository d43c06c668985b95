"""Our DeformableDETR reproduces mmdet 3.3's, variant by variant.

mmdet's model is built from mmdet's own config (shrunk: ResNet-18, 2+2
layers, 30 queries) and initialised, its weights perturbed, converted with
``mmdet_to_ddetr`` and loaded (strict) into ours, built from our config with
the same shrinking. mmdet runs mmcv's pure-PyTorch MSDA (CPU), ours our op.
Both see the same two differently sized images (padding masks matter)
through their own ``DetDataPreprocessor``.
"""
import copy

import pytest
import torch
from torch.testing import assert_close

from helpers.ddetr_model_utils import (VARIANTS, assert_same_detections,
                                       build_mmdet_model, build_our_model,
                                       load_mmdet_config, load_our_config,
                                       make_batch, perturb_, set_dropout_)
from ddetr_plugin.converters import mmdet_to_ddetr

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope='module', params=VARIANTS)
def model_pair(request):
    torch.manual_seed(0)
    theirs = build_mmdet_model(load_mmdet_config(request.param))
    perturb_(theirs)
    ours = build_our_model(load_our_config(request.param))
    ours.load_state_dict(mmdet_to_ddetr(theirs.state_dict()), strict=True)
    return theirs, ours


def _preprocess(model, data, training):
    return model.data_preprocessor(copy.deepcopy(data), training)


@torch.no_grad()
def test_eval_outputs_match(model_pair):
    theirs, ours = model_pair
    theirs.eval()
    ours.eval()
    data = make_batch()
    their_data = _preprocess(theirs, data, False)
    our_data = _preprocess(ours, data, False)
    assert_close(our_data['inputs'], their_data['inputs'], rtol=0, atol=0)

    # every decoder layer's class logits and normalised boxes
    their_cls, their_boxes = theirs(**their_data, mode='tensor')
    our_cls, our_boxes = ours(**our_data, mode='tensor')
    assert our_cls.shape == their_cls.shape
    for layer in range(their_cls.shape[0]):
        assert_close(our_cls[layer], their_cls[layer], **TOL)
        assert_close(our_boxes[layer], their_boxes[layer], **TOL)

    # top-100 detections, rescaled to the original images
    their_preds = theirs(**their_data, mode='predict')
    our_preds = ours(**our_data, mode='predict')
    for their, our in zip(their_preds, our_preds):
        assert len(our.pred_instances) == 100
        assert_same_detections(our.pred_instances, their.pred_instances,
                               **TOL)


@pytest.mark.parametrize('empty_gt', [False, True])
def test_train_losses_match(model_pair, empty_gt):
    theirs, ours = model_pair
    for model in theirs, ours:
        model.train()
        set_dropout_(model, 0.)
    data = make_batch(empty_gt=empty_gt)
    their_losses = theirs(**_preprocess(theirs, data, True), mode='loss')
    our_losses = ours(**_preprocess(ours, data, True), mode='loss')
    assert list(our_losses) == list(their_losses)
    for name, value in their_losses.items():
        assert_close(our_losses[name], value, **TOL, msg=name)
    if ours.as_two_stage:
        assert 'enc_loss_cls' in our_losses
