"""The original repository's layout: the key names and shapes of its three
released R50 checkpoints (written from its ``models/deformable_detr.py``,
``deformable_transformer.py``, ``backbone.py`` and ``ms_deform_attn.py``;
no download) convert onto our full-size configs exactly, and the original
and Hugging Face converters agree on the same tensors."""
import argparse
import re
import runpy

import pytest
import torch

from helpers.ddetr_model_utils import (VARIANTS, build_our_model,
                                       load_our_config)
from helpers.paths import REPO_ROOT
from ddetr_plugin.converters.coco_classes import COCO_91_CLASSES
from ddetr_plugin.converters.hf_checkpoint import hf_to_ddetr
from ddetr_plugin.converters.original_checkpoint import original_to_ddetr

D, FFN, HEADS, LEVELS, POINTS, QUERIES, CLASSES, LAYERS = \
    256, 1024, 8, 4, 4, 300, 91, 6
# (with_box_refine, two_stage) of the released checkpoints, as VARIANTS
RELEASED = dict(zip(VARIANTS, [(False, False), (True, False), (True, True)]))


def torchvision_resnet50():
    """``backbone.0.body.*`` of the original: torchvision's ResNet-50 up to
    layer4 (IntermediateLayerGetter), FrozenBatchNorm2d (4 buffers)."""
    shapes = {'conv1.weight': (64, 3, 7, 7)}

    def bn(name, channels):
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{name}.{p}'] = (channels,)

    bn('bn1', 64)
    in_channels = 64
    for stage, (blocks, width) in enumerate(
            zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for block in range(blocks):
            prefix = f'layer{stage}.{block}.'
            shapes[prefix + 'conv1.weight'] = (width, in_channels, 1, 1)
            bn(prefix + 'bn1', width)
            shapes[prefix + 'conv2.weight'] = (width, width, 3, 3)
            bn(prefix + 'bn2', width)
            shapes[prefix + 'conv3.weight'] = (width * 4, width, 1, 1)
            bn(prefix + 'bn3', width * 4)
            if block == 0:
                shapes[prefix + 'downsample.0.weight'] = (width * 4,
                                                          in_channels, 1, 1)
                bn(prefix + 'downsample.1', width * 4)
            in_channels = width * 4
    return {f'backbone.0.body.{k}': v for k, v in shapes.items()}


def original_shapes(with_box_refine, two_stage):
    """Every key and shape of a released original R50 checkpoint."""
    shapes = torchvision_resnet50()
    for level, channels in enumerate((512, 1024, 2048)):
        shapes[f'input_proj.{level}.0.weight'] = (D, channels, 1, 1)
    shapes['input_proj.3.0.weight'] = (D, 2048, 3, 3)
    for level in range(LEVELS):
        shapes[f'input_proj.{level}.0.bias'] = (D,)
        shapes[f'input_proj.{level}.1.weight'] = (D,)
        shapes[f'input_proj.{level}.1.bias'] = (D,)
    shapes['transformer.level_embed'] = (LEVELS, D)

    def linear(name, out_features, in_features):
        shapes[f'{name}.weight'] = (out_features, in_features)
        shapes[f'{name}.bias'] = (out_features,)

    def norm(name, features=D):
        shapes[f'{name}.weight'] = shapes[f'{name}.bias'] = (features,)

    def msda(name):  # MSDeformAttn
        linear(f'{name}.sampling_offsets', HEADS * LEVELS * POINTS * 2, D)
        linear(f'{name}.attention_weights', HEADS * LEVELS * POINTS, D)
        linear(f'{name}.value_proj', D, D)
        linear(f'{name}.output_proj', D, D)

    for i in range(LAYERS):
        layer = f'transformer.encoder.layers.{i}'
        msda(f'{layer}.self_attn')
        norm(f'{layer}.norm1')
        linear(f'{layer}.linear1', FFN, D)
        linear(f'{layer}.linear2', D, FFN)
        norm(f'{layer}.norm2')
        layer = f'transformer.decoder.layers.{i}'
        msda(f'{layer}.cross_attn')
        norm(f'{layer}.norm1')
        shapes[f'{layer}.self_attn.in_proj_weight'] = (3 * D, D)
        shapes[f'{layer}.self_attn.in_proj_bias'] = (3 * D,)
        linear(f'{layer}.self_attn.out_proj', D, D)
        norm(f'{layer}.norm2')
        linear(f'{layer}.linear1', FFN, D)
        linear(f'{layer}.linear2', D, FFN)
        norm(f'{layer}.norm3')
    if two_stage:
        linear('transformer.enc_output', D, D)
        norm('transformer.enc_output_norm')
        linear('transformer.pos_trans', 2 * D, 2 * D)
        norm('transformer.pos_trans_norm', 2 * D)
    else:
        shapes['query_embed.weight'] = (QUERIES, 2 * D)
        linear('transformer.reference_points', 2, D)
    num_pred = LAYERS + int(two_stage)
    for i in range(num_pred):
        linear(f'class_embed.{i}', CLASSES, D)
        for k, out_features in enumerate((D, D, 4)):
            linear(f'bbox_embed.{i}.layers.{k}', out_features, D)
    aliases = ([f'bbox_embed.{i}' for i in range(num_pred)]
               if with_box_refine else []) + \
        ([f'class_embed.{i}' for i in range(num_pred)] if two_stage else [])
    for alias in aliases:
        for key in [k for k in shapes if k.startswith(alias + '.')]:
            shapes[f'transformer.decoder.{key}'] = shapes[key]
    return shapes


def original_state_dict(with_box_refine, two_stage, device='meta'):
    """Tensors of those shapes, shared as the model's state_dict shares
    them: the decoder's aliases are the head's tensors, and without box
    refinement every prediction layer is layer 0."""
    gen = torch.Generator().manual_seed(0)
    state_dict = {}
    for key, shape in original_shapes(with_box_refine, two_stage).items():
        shared = re.sub(r'^(class_embed|bbox_embed)\.\d+\.', r'\1.0.', key)
        if key.startswith(('transformer.decoder.bbox_embed',
                           'transformer.decoder.class_embed')):
            state_dict[key] = state_dict[key[len('transformer.decoder.'):]]
        elif not with_box_refine and shared != key:
            state_dict[key] = state_dict[shared]
        elif device == 'meta':
            state_dict[key] = torch.empty(shape, device='meta')
        else:
            state_dict[key] = torch.randn(shape, generator=gen)
    return state_dict


def our_full_size_model(name):
    cfg = load_our_config(name, small=False)
    cfg.model.neck.bias = True
    cfg.model.bbox_head.num_classes = CLASSES
    with torch.device('meta'):
        return build_our_model(cfg)


@pytest.mark.parametrize('name', VARIANTS)
def test_released_layout_converts_onto_our_config(name):
    state_dict = original_state_dict(*RELEASED[name])
    converted = original_to_ddetr(state_dict)
    ours = our_full_size_model(name).state_dict()
    assert sorted(converted) == sorted(ours)
    for key, value in ours.items():
        assert converted[key].shape == value.shape, key
    if RELEASED[name][1]:  # the proposal head is the last prediction layer
        assert converted['bbox_head.cls_branches.6.weight'] is \
            state_dict['class_embed.6.weight']
    assert converted['transformer.decoder.layers.3.cross_attn_norm.bias'] \
        is state_dict['transformer.decoder.layers.3.norm1.bias']
    assert converted['transformer.decoder.layers.3.self_attn_norm.bias'] \
        is state_dict['transformer.decoder.layers.3.norm2.bias']


def test_unknown_missing_and_inconsistent_keys_are_named():
    state_dict = original_state_dict(True, False)
    state_dict['transformer.decoder.layers.0.norm4.weight'] = torch.ones(1)
    del state_dict['transformer.encoder.layers.5.linear2.bias']
    del state_dict['backbone.0.body.layer3.2.bn2.running_var']
    with pytest.raises(KeyError) as error:
        original_to_ddetr(state_dict)
    for key in ('transformer.decoder.layers.0.norm4.weight',
                'transformer.encoder.layers.5.ffn.layers.1.bias',
                'backbone.layer3.2.bn2.running_var'):
        assert key in str(error.value)
    state_dict = original_state_dict(True, False, device='cpu')
    state_dict['transformer.decoder.bbox_embed.2.layers.0.bias'] = \
        torch.zeros(D)
    with pytest.raises(ValueError, match='bbox_embed.2.layers.0.bias'):
        original_to_ddetr(state_dict)


def original_to_hf_names(state_dict):
    """The same tensors under the names of the released Hugging Face files
    (transformers 4.x, timm backbone), as HF's conversion script
    ``convert_deformable_detr_to_pytorch.py`` renamed them."""
    renames = [
        ('backbone.0.body.', 'model.backbone.conv_encoder.model.'),
        ('input_proj.', 'model.input_proj.'),
        ('query_embed.', 'model.query_position_embeddings.'),
        ('transformer.decoder.bbox_embed.', 'model.decoder.bbox_embed.'),
        ('transformer.decoder.class_embed.', 'model.decoder.class_embed.'),
        ('transformer.', 'model.'),
        ('.cross_attn.', '.encoder_attn.'), ('.linear1.', '.fc1.'),
        ('.linear2.', '.fc2.'),
    ]
    layer_norms = dict(
        encoder=dict(norm1='self_attn_layer_norm', norm2='final_layer_norm'),
        decoder=dict(norm1='encoder_attn_layer_norm',
                     norm2='self_attn_layer_norm', norm3='final_layer_norm'))
    out = {}
    for key, value in state_dict.items():
        for old, new in renames:
            if key.startswith(old) or (old.startswith('.') and old in key):
                key = key.replace(old, new, 1)
        for part, norms in layer_norms.items():
            for old, new in norms.items():
                if f'.{part}.layers.' in key and f'.{old}.' in key:
                    key = key.replace(f'.{old}.', f'.{new}.')
        if 'self_attn.in_proj_' in key:
            for name, chunk in zip('qkv', value.chunk(3)):
                out[key.replace('in_proj_', f'{name}_proj.')] = chunk
        else:
            out[key] = value
    return out


def test_original_and_hf_converters_agree():
    state_dict = original_state_dict(True, True, device='cpu')
    from_orig = original_to_ddetr(state_dict)
    from_hf_ = hf_to_ddetr(original_to_hf_names(state_dict))
    assert sorted(from_orig) == sorted(from_hf_)
    for key, value in from_orig.items():
        assert torch.equal(from_hf_[key], value), key


def test_tool_reads_a_training_checkpoint(tmp_path):
    """A released file also holds ``args`` (an argparse.Namespace) and the
    optimizer state; the tool reads it with safe loading."""
    src, out = tmp_path / 'r50_deformable_detr-checkpoint.pth', \
        tmp_path / 'ours.pth'
    state_dict = original_state_dict(False, False, device='cpu')
    torch.save(dict(model=state_dict, optimizer=dict(state={}), epoch=49,
                    args=argparse.Namespace(lr=2e-4, two_stage=False)), src)
    tool = runpy.run_path(
        str(REPO_ROOT / 'tools' / 'model_converters' /
            'original_to_ddetr.py'))
    tool['main']([str(src), str(out)])
    converted = torch.load(out, weights_only=True)
    assert converted['meta']['dataset_meta']['classes'] == COCO_91_CLASSES
    assert torch.equal(converted['state_dict']['transformer.level_embed'],
                       state_dict['transformer.level_embed'])
