"""``load_from`` / ``init_cfg`` / ``load_checkpoint`` take mmdet, original
and Hugging Face checkpoints as they are: the layout is detected from the
keys, converted on load and logged."""
import argparse
import logging
import runpy
from contextlib import contextmanager

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

from helpers.ddetr_model_utils import (VARIANTS, build_mmdet_model,
                                       build_our_model, load_mmdet_config,
                                       load_our_config)
from helpers.paths import REPO_ROOT
from ddetr_plugin.converters import mmdet_to_ddetr
from ddetr_plugin.converters.hf_checkpoint import hf_to_ddetr
from ddetr_plugin.converters.layouts import detect_layout
from ddetr_plugin.converters.original_checkpoint import original_to_ddetr
from ddetr_plugin.registry import MODELS
from test_hf_checkpoint import HF_VARIANTS, LABELS, hf_model, our_model
from test_original_checkpoint import CLASSES, original_state_dict


@contextmanager
def logged_messages():
    """The messages logged to mmengine's current logger meanwhile."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def assert_loaded(model, expected):
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def test_hf_safetensors_load_with_their_layout_logged(tmp_path):
    name = VARIANTS[2]
    hf = hf_model(*HF_VARIANTS[name])
    hf.save_pretrained(tmp_path)  # config.json + deduplicated safetensors
    ours = our_model(name)
    with logged_messages() as messages:
        load_checkpoint(ours, str(tmp_path / 'model.safetensors'),
                        strict=True)
    assert_loaded(ours, hf_to_ddetr(hf.state_dict(), True))
    assert "checkpoint in the hf layout: converted to ddetr_plugin's on " \
        'load' in messages


def test_original_training_checkpoint_loads_through_init_cfg(tmp_path):
    state_dict = original_state_dict(False, False, device='cpu')
    path = tmp_path / 'r50_deformable_detr-checkpoint.pth'
    torch.save(dict(model=state_dict, epoch=49,
                    args=argparse.Namespace(two_stage=False)), path)
    cfg = load_our_config(VARIANTS[0], small=False)
    cfg.model.neck.bias = True
    cfg.model.bbox_head.num_classes = CLASSES
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    ours = build_our_model(cfg)
    ours.init_weights()
    assert_loaded(ours, original_to_ddetr(state_dict))


def test_mmdet_checkpoint_loads_as_it_is(tmp_path):
    mmdet_state = build_mmdet_model(load_mmdet_config(VARIANTS[1]))\
        .state_dict()
    path = tmp_path / 'mmdet.pth'
    torch.save(dict(meta={}, state_dict=mmdet_state), path)
    ours = build_our_model(load_our_config(VARIANTS[1]))
    load_checkpoint(ours, str(path), strict=True)
    assert_loaded(ours, mmdet_to_ddetr(mmdet_state))


def test_neck_without_bias_and_unknown_layout_are_explained(plugin_scope):
    name = VARIANTS[0]
    hf_state = hf_model(*HF_VARIANTS[name]).state_dict()
    ours = our_model(name)
    ours.neck = MODELS.build(dict(  # bias=False, as mmdet's
        type='DeformableDETRNeck', in_channels=[512, 1024, 2048],
        out_channels=ours.neck.input_projs[0].conv.out_channels))
    with pytest.raises(ValueError, match='model.neck.bias=True'):
        ours.load_state_dict(hf_state)
    with pytest.raises(ValueError, match='not a Deformable DETR checkpoint'):
        detect_layout({'fc.weight': torch.ones(1)})


def test_hf_tool_converts_a_model_folder(tmp_path):
    hf = hf_model(*HF_VARIANTS[VARIANTS[0]])
    hf.save_pretrained(tmp_path / 'hf')  # the shared head saved once
    tool = runpy.run_path(
        str(REPO_ROOT / 'tools' / 'model_converters' / 'hf_to_ddetr.py'))
    tool['main']([str(tmp_path / 'hf'), str(tmp_path / 'ours.pth')])
    converted = torch.load(tmp_path / 'ours.pth', weights_only=True)
    assert converted['meta']['dataset_meta']['classes'] == tuple(
        hf.config.id2label[i] for i in range(LABELS))
    expected = hf_to_ddetr(hf.state_dict(), False)
    assert sorted(converted['state_dict']) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(converted['state_dict'][key], value), key
