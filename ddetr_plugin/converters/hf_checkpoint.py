"""Hugging Face ``DeformableDetrForObjectDetection`` weights
(``SenseTime/deformable-detr``, ``-with-box-refine``,
``-with-box-refine-two-stage``) to ``ddetr_plugin`` ones.

:func:`hf_to_ddetr` converts a state_dict, :func:`convert_hf_checkpoint` a
``model.safetensors`` / ``pytorch_model.bin`` file or a model folder with
``config.json`` (``tools/model_converters/hf_to_ddetr.py``). Both the names
of the released files (transformers 4.x: ``model.backbone.conv_encoder.
model.*``, ``fc1``, ``self_attn.out_proj``) and those of transformers 5
(``model.backbone.model.*``, ``mlp.fc1``, ``self_attn.o_proj``) convert; the
backbone may be timm's ResNet (``use_timm_backbone=True``, the released
models; torchvision names) or Hugging Face's ``ResNetBackbone``
(:mod:`.resnet_keys`).

Hugging Face -> ddetr_plugin:

* ``model.backbone.conv_encoder.model.*``, ``model.backbone.model.*`` ->
  ``backbone.*``
* ``model.input_proj.{i}.{0,1}.*`` ->
  ``neck.{input,extra}_projs.{j}.{conv,gn}.*`` (as the original layout)
* ``model.query_position_embeddings.weight`` ->
  ``transformer.query_embedding.weight``
* ``model.level_embed`` -> ``transformer.level_embed``
* ``model.reference_points.*`` -> ``transformer.reference_points_fc.*``
* ``model.enc_output(_norm)``, ``model.pos_trans(_norm)`` ->
  ``transformer.memory_trans_{fc,norm}``,
  ``transformer.pos_trans_{fc,norm}``
* ``model.encoder.layers.{i}.self_attn.*`` ->
  ``transformer.encoder.layers.{i}.self_attn.*``
* ``...layers.{i}.self_attn_layer_norm`` -> ``...self_attn_norm``
* ``...layers.{i}.(mlp.)fc1`` / ``(mlp.)fc2`` -> ``...ffn.layers.0.0`` /
  ``ffn.layers.1``
* ``...layers.{i}.final_layer_norm`` -> ``...ffn_norm``
* ``model.decoder.layers.{i}.self_attn.{q,k,v}_proj.*`` ->
  ``...self_attn.attn.in_proj_*`` (concatenated q, k, v)
* ``...self_attn.out_proj.*`` / ``o_proj.*`` ->
  ``...self_attn.attn.out_proj.*``
* ``model.decoder.layers.{i}.encoder_attn.*`` -> ``...cross_attn.*``
* ``...encoder_attn_layer_norm`` -> ``...cross_attn_norm``
* ``class_embed.{i}.*``, ``bbox_embed.{i}.layers.{k}.*`` ->
  ``bbox_head.cls_branches.{i}.*``, ``bbox_head.reg_branches.{i}.{2k}.*``
* ``model.decoder.{class,bbox}_embed.*`` -> dropped: aliases of the head,
  checked equal (or the head itself where only they were saved)

``save_pretrained`` stores tied weights once: a shared head (no box
refinement) under layer 0 only, repeated here under every layer; the
refined head under ``model.decoder.*`` only; transformers 5's tied class
heads of the refinement variant without two-stage under ``class_embed.0``
only, repeated here under every layer with a log line. Sharded folders
(``*.index.json``) are read shard by shard.

Classes: the released models have ``num_labels=91`` (output ``c`` is COCO
category id ``c``, ``id2label`` ``'N/A'`` at unused ids), kept as they are;
``config.json``'s ``id2label`` becomes ``meta['dataset_meta']['classes']``.
The neck's convolutions have biases: configs for these weights set
``model.neck.bias=True``.
"""
import json
import os.path as osp
import re
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from .coco_classes import coco_classes_for
from .detr_keys import (HEAD_RULES, check_converted, convert_backbone,
                        convert_input_projs, drop_head_aliases,
                        expand_shared_branches, num_classes, rename, rule,
                        save_converted, split_prefix)

_BACKBONE_PREFIXES = ('model.backbone.conv_encoder.model.',
                      'model.backbone.model.')
_ENCODER = r'model\.encoder\.layers\.(\d+)\.'
_DECODER = r'model\.decoder\.layers\.(\d+)\.'
_OURS_ENCODER = r'transformer.encoder.layers.\1.'
_OURS_DECODER = r'transformer.decoder.layers.\1.'
_P = r'(weight|bias)'
_RULES = HEAD_RULES + [
    rule(r'model\.query_position_embeddings\.weight',
         'transformer.query_embedding.weight'),
    rule(r'model\.level_embed', 'transformer.level_embed'),
    rule(r'model\.reference_points\.' + _P,
         r'transformer.reference_points_fc.\1'),
    rule(r'model\.enc_output\.' + _P, r'transformer.memory_trans_fc.\1'),
    rule(r'model\.enc_output_norm\.' + _P,
         r'transformer.memory_trans_norm.\1'),
    rule(r'model\.pos_trans\.' + _P, r'transformer.pos_trans_fc.\1'),
    rule(r'model\.pos_trans_norm\.' + _P, r'transformer.pos_trans_norm.\1'),
    rule(_ENCODER + r'self_attn\.(\w+\.(?:weight|bias))',
         _OURS_ENCODER + r'self_attn.\2'),
    rule(_DECODER + r'self_attn\.in_proj_' + _P,
         _OURS_DECODER + r'self_attn.attn.in_proj_\2'),
    rule(_DECODER + r'self_attn\.(?:out_proj|o_proj)\.' + _P,
         _OURS_DECODER + r'self_attn.attn.out_proj.\2'),
    rule(_DECODER + r'encoder_attn\.(\w+\.(?:weight|bias))',
         _OURS_DECODER + r'cross_attn.\2'),
    rule(_DECODER + r'encoder_attn_layer_norm\.' + _P,
         _OURS_DECODER + r'cross_attn_norm.\2'),
]
for _layers, _ours in ((_ENCODER, _OURS_ENCODER), (_DECODER, _OURS_DECODER)):
    _RULES += [
        rule(_layers + r'self_attn_layer_norm\.' + _P,
             _ours + r'self_attn_norm.\2'),
        rule(_layers + r'(?:mlp\.)?fc1\.' + _P, _ours + r'ffn.layers.0.0.\2'),
        rule(_layers + r'(?:mlp\.)?fc2\.' + _P, _ours + r'ffn.layers.1.\2'),
        rule(_layers + r'final_layer_norm\.' + _P, _ours + r'ffn_norm.\2'),
    ]
_QKV = re.compile(_DECODER + r'self_attn\.([qkv])_proj\.' + _P)


def _merge_qkv(state_dict: Mapping[str, Tensor]
               ) -> Tuple[Dict[str, Tensor], List[str]]:
    """HF's separate decoder self-attention projections to
    ``nn.MultiheadAttention``'s ``in_proj_{weight,bias}`` (q, k, v
    concatenated along dim 0).

    Returns:
        tuple: the state_dict with ``self_attn.in_proj_*`` instead of
        ``self_attn.{q,k,v}_proj.*``, and the q/k/v keys missing for it.
    """
    merged, groups = {}, {}
    for key, value in state_dict.items():
        match = _QKV.fullmatch(key)
        if match is None:
            merged[key] = value
        else:
            groups.setdefault((match[1], match[3]), {})[match[2]] = value
    missing = []
    for (layer, param), parts in sorted(groups.items()):
        prefix = f'model.decoder.layers.{layer}.self_attn.'
        absent = [p for p in 'qkv' if p not in parts]
        missing += [f'{prefix}{p}_proj.{param}' for p in absent]
        if not absent:
            merged[f'{prefix}in_proj_{param}'] = torch.cat(
                [parts[p] for p in 'qkv'])
    return merged, missing


def _expand_tied_class_heads(converted: Dict[str, Tensor],
                             num_decoder_layers: int) -> None:
    """transformers 5 ties every ``class_embed.N`` to ``class_embed.0`` in
    the box-refinement variant without two-stage (its
    ``_tied_weights_keys``), so ``save_pretrained`` stores layer 0's class
    head only, while the box heads stay one per layer. Repeat it under
    every decoder layer (our head has one class branch per layer there),
    with a log line; a file with every layer's class head (transformers
    4, the original repository) is left as it is."""
    heads = [k for k in converted if k.startswith('bbox_head.cls_branches.')]
    if not heads or any(not k.startswith('bbox_head.cls_branches.0.')
                        for k in heads):
        return
    for key in heads:
        for i in range(1, num_decoder_layers):
            converted[key.replace('.0.', f'.{i}.', 1)] = converted[key]
    print_log(
        'Hugging Face checkpoint with one class head (class_embed.0) for '
        f'{num_decoder_layers} decoder layers (transformers 5 ties them in '
        'with_box_refine without two_stage): repeated under every layer',
        logger='current')


def hf_to_ddetr(state_dict: Mapping[str, Tensor],
            with_box_refine: Optional[bool] = None) -> Dict[str, Tensor]:
    """Convert a Hugging Face ``DeformableDetrForObjectDetection``
    state_dict (see the module docstring for the table).

    Args:
        state_dict (Mapping[str, Tensor]): ``model.state_dict()`` or the
            tensors of ``model.safetensors`` / ``pytorch_model.bin``.
        with_box_refine (bool, optional): the config's ``with_box_refine``.
            Without box refinement a head stored once (layer 0) is repeated
            for every layer; with it every layer must be present. None:
            repeat only what is absent.

    Returns:
        dict[str, Tensor]: our keys, loadable with ``strict=True`` into our
        ``DeformableDETR`` of the same variant, ``neck.bias=True`` and
        ``num_classes`` equal to HF's ``num_labels``.

    Raises:
        KeyError: keys that are no weight of the HF model, or keys the
            variant needs and ``state_dict`` lacks; the message lists them.
        ValueError: a decoder alias of the head differs from the head.
    """
    state_dict = drop_head_aliases(state_dict, 'model.decoder.')
    converted, unknown, missing = {}, [], []
    rest = dict(state_dict)
    for prefix in _BACKBONE_PREFIXES:
        backbone, rest = split_prefix(rest, prefix)
        if backbone:
            converted, unknown, missing = convert_backbone(backbone, prefix)
    input_projs, rest = split_prefix(rest, 'model.input_proj.')
    necks, neck_unknown = convert_input_projs(
        {f'input_proj.{k}': v for k, v in input_projs.items()})
    rest, qkv_missing = _merge_qkv(rest)
    others, other_unknown = rename(rest, _RULES)
    converted.update(necks)
    converted.update(others)
    num_decoder_layers = len({
        k.split('.')[3] for k in converted
        if k.startswith('transformer.decoder.layers.')
    })
    two_stage = 'transformer.memory_trans_fc.weight' in converted
    if not with_box_refine:
        expand_shared_branches(converted,
                               num_decoder_layers + int(two_stage))
    elif not two_stage:
        _expand_tied_class_heads(converted, num_decoder_layers)
    check_converted('Hugging Face', converted,
                    unknown + neck_unknown + other_unknown,
                    missing + qkv_missing)
    return converted


# the weights files of a save_pretrained folder, in the order looked for
_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json',
                 'pytorch_model.bin', 'pytorch_model.bin.index.json')


def _load_weights_file(path: str) -> Dict[str, Tensor]:
    """One ``.safetensors`` file, or a ``.bin`` file read with
    ``torch.load(weights_only=True)``."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)


def load_hf_checkpoint(src: str) -> Tuple[Dict[str, Tensor], dict]:
    """Read Hugging Face weights and, if there is one, their config.

    Args:
        src (str): a ``.safetensors`` file, a ``.bin`` file (read with
            ``torch.load(weights_only=True)``), a sharded checkpoint's
            ``*.index.json``, or a ``save_pretrained`` folder holding
            ``config.json`` and one of those (``model.safetensors``,
            ``model.safetensors.index.json`` with its shards,
            ``pytorch_model.bin``, ``pytorch_model.bin.index.json``). A
            file's folder is searched for ``config.json`` and shards too.

    Returns:
        tuple: ``(state_dict, config)``; ``config`` is ``{}`` without
        ``config.json``.

    Raises:
        FileNotFoundError: ``src`` does not exist, or a folder holds no
            weights file.
    """
    folder = src if osp.isdir(src) else osp.dirname(src)
    if osp.isdir(src):
        names = [n for n in _WEIGHT_FILES if osp.isfile(osp.join(src, n))]
        if not names:
            raise FileNotFoundError(
                f'{src}: none of {", ".join(_WEIGHT_FILES)}')
        src = osp.join(src, names[0])
    if not osp.isfile(src):
        raise FileNotFoundError(f'{src}: no such file')
    if src.endswith('.index.json'):
        with open(src) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        state_dict = {}
        for shard in shards:
            state_dict.update(_load_weights_file(osp.join(folder, shard)))
    else:
        state_dict = _load_weights_file(src)
    config_file = osp.join(folder, 'config.json')
    config = {}
    if osp.isfile(config_file):
        with open(config_file) as f:
            config = json.load(f)
    return state_dict, config


def hf_classes(config: Mapping, num_classes_: int) -> Optional[tuple]:
    """Class names of HF outputs: ``id2label`` in id order, else the COCO
    list for 91 or 80 outputs (:func:`~.coco_classes.coco_classes_for`)."""
    id2label = config.get('id2label')
    if id2label and len(id2label) == num_classes_:
        return tuple(id2label[k] for k in sorted(id2label, key=int))
    return coco_classes_for(num_classes_)


def convert_hf_checkpoint(src: str, out: Optional[str] = None) -> dict:
    """Convert Hugging Face weights with :func:`hf_to_ddetr`.

    The variant is read from ``config.json`` (``with_box_refine``,
    ``two_stage``) when there is one, else from the keys.

    Args:
        src (str): see :func:`load_hf_checkpoint`.
        out (str, optional): where to ``torch.save`` the result.

    Returns:
        dict: see :func:`~.detr_keys.save_converted`, with the classes of
        :func:`hf_classes`.

    Raises:
        FileNotFoundError: see :func:`load_hf_checkpoint`.
        KeyError, ValueError: see :func:`hf_to_ddetr`.
    """
    state_dict, config = load_hf_checkpoint(src)
    converted = hf_to_ddetr(state_dict, config.get('with_box_refine'))
    return save_converted(converted,
                          hf_classes(config, num_classes(converted)), out)
