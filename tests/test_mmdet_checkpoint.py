"""``mmdet_to_ddetr`` maps full-size mmdet DeformableDETR state_dicts (the
layout of mmdet's released checkpoints) onto our full-size configs,
strictly."""
import runpy

import pytest
import torch

from helpers.ddetr_model_utils import (VARIANTS, build_mmdet_model,
                                       build_our_model, load_mmdet_config,
                                       load_our_config)
from helpers.paths import REPO_ROOT
from ddetr_plugin.converters import mmdet_to_ddetr


@pytest.fixture(scope='module')
def mmdet_state_dicts():
    return {
        name: build_mmdet_model(load_mmdet_config(name, small=False))
        .state_dict()
        for name in VARIANTS
    }


@pytest.mark.parametrize('name', VARIANTS)
def test_full_size_checkpoint_loads_strict(mmdet_state_dicts, name):
    state_dict = mmdet_state_dicts[name]
    ours = build_our_model(load_our_config(name, small=False))
    converted = mmdet_to_ddetr(state_dict)
    assert len(converted) == len(state_dict)
    ours.load_state_dict(converted, strict=True)
    assert torch.equal(ours.transformer.level_embed,
                       state_dict['level_embed'])
    assert torch.equal(
        ours.transformer.decoder.layers[5].cross_attn_norm.weight,
        state_dict['decoder.layers.5.norms.1.weight'])


def test_unknown_and_missing_keys_are_named(mmdet_state_dicts):
    state_dict = dict(mmdet_state_dicts[VARIANTS[0]])
    state_dict['decoder.layers.0.norms.3.weight'] = torch.ones(1)
    del state_dict['encoder.layers.2.self_attn.value_proj.bias']
    del state_dict['reference_points_fc.weight']
    with pytest.raises(KeyError) as error:
        mmdet_to_ddetr(state_dict)
    for key in ('decoder.layers.0.norms.3.weight',
                'encoder.layers.2.self_attn.value_proj.bias',
                'reference_points_fc.weight'):
        assert key in str(error.value)


def test_two_stage_needs_proposal_layers(mmdet_state_dicts):
    state_dict = dict(mmdet_state_dicts[VARIANTS[2]])
    del state_dict['pos_trans_norm.bias']
    with pytest.raises(KeyError, match='pos_trans_norm.bias'):
        mmdet_to_ddetr(state_dict)


def test_tool_keeps_meta(mmdet_state_dicts, tmp_path):
    src, out = tmp_path / 'mmdet.pth', tmp_path / 'ours.pth'
    meta = dict(epoch=50, dataset_meta=dict(classes=('a', 'b')))
    torch.save(dict(meta=meta, state_dict=mmdet_state_dicts[VARIANTS[1]]),
               src)
    tool = runpy.run_path(
        str(REPO_ROOT / 'tools' / 'model_converters' / 'mmdet_to_ddetr.py'))
    tool['main']([str(src), str(out)])
    converted = torch.load(out, weights_only=True)
    assert converted['meta'] == meta
    assert 'transformer.encoder.layers.0.ffn_norm.weight' in \
        converted['state_dict']


DINO_CONFIG = 'dino-4scale_r50_8xb2-12e_coco.py'


@pytest.fixture(scope='module')
def mmdet_dino_state_dict():
    return build_mmdet_model(
        load_mmdet_config(DINO_CONFIG, small=False,
                          folder='dino')).state_dict()


def test_full_size_dino_checkpoint_loads_strict(mmdet_dino_state_dict):
    ours = build_our_model(
        load_our_config(DINO_CONFIG, small=False, folder='dino'))
    converted = mmdet_to_ddetr(mmdet_dino_state_dict)
    assert len(converted) == len(mmdet_dino_state_dict)
    ours.load_state_dict(converted, strict=True)
    for ours_key, mmdet_key in [
        ('transformer.query_embedding.weight', 'query_embedding.weight'),
        ('transformer.decoder.ref_point_head.layers.1.weight',
         'decoder.ref_point_head.layers.1.weight'),
        ('transformer.decoder.norm.bias', 'decoder.norm.bias'),
        ('dn_query_generator.label_embedding.weight',
         'dn_query_generator.label_embedding.weight'),
    ]:
        assert torch.equal(ours.state_dict()[ours_key],
                           mmdet_dino_state_dict[mmdet_key])


@pytest.mark.parametrize('key', [
    'dn_query_generator.label_embedding.weight', 'decoder.norm.weight',
    'memory_trans_norm.bias', 'query_embedding.weight'
])
def test_dino_missing_keys_are_named(mmdet_dino_state_dict, key):
    state_dict = dict(mmdet_dino_state_dict)
    del state_dict[key]
    with pytest.raises(KeyError, match=key.replace('.', r'\.')):
        mmdet_to_ddetr(state_dict)
