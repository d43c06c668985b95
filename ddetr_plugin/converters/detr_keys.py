"""What the checkpoint converters share.

* our layout's keys: those of one encoder/decoder layer
  (:data:`ENCODER_LAYER_KEYS`, :data:`DECODER_LAYER_KEYS`, keyed by mmdet's
  names), of each variant's transformer (:data:`SINGLE_STAGE_KEYS`,
  :data:`TWO_STAGE_KEYS`), and the completeness check of a converted
  state_dict (:func:`missing_keys`, :func:`check_converted`), used by every
  layout's converter;
* for the original-repository and Hugging Face converters
  (:mod:`.original_checkpoint`, :mod:`.hf_checkpoint`): renaming by rules,
  the input projections and prediction heads both layouts store alike, the
  decoder's aliases of the head, and the Runner-loadable checkpoint written.
"""
import os
import os.path as osp
import re
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .resnet_keys import resnet_to_mmdet

_LINEAR = ('weight', 'bias')
_MSDA = [
    f'{proj}.{p}'
    for proj in ('sampling_offsets', 'attention_weights', 'value_proj',
                 'output_proj') for p in _LINEAR
]
_FFN = [f'ffn.layers.0.0.{p}' for p in _LINEAR] + \
    [f'ffn.layers.1.{p}' for p in _LINEAR]

#: mmdet suffix -> our suffix, for every key of one encoder layer
#: (``transformer.encoder.layers.{i}.<ours>``)
ENCODER_LAYER_KEYS = {
    **{f'self_attn.{k}': f'self_attn.{k}' for k in _MSDA},
    **{k: k for k in _FFN},
    **{f'norms.0.{p}': f'self_attn_norm.{p}' for p in _LINEAR},
    **{f'norms.1.{p}': f'ffn_norm.{p}' for p in _LINEAR},
}
#: mmdet suffix -> our suffix, for every key of one decoder layer
#: (``transformer.decoder.layers.{i}.<ours>``)
DECODER_LAYER_KEYS = {
    **{
        f'self_attn.attn.{k}': f'self_attn.attn.{k}'
        for k in ('in_proj_weight', 'in_proj_bias', 'out_proj.weight',
                  'out_proj.bias')
    },
    **{f'cross_attn.{k}': f'cross_attn.{k}' for k in _MSDA},
    **{k: k for k in _FFN},
    **{f'norms.0.{p}': f'self_attn_norm.{p}' for p in _LINEAR},
    **{f'norms.1.{p}': f'cross_attn_norm.{p}' for p in _LINEAR},
    **{f'norms.2.{p}': f'ffn_norm.{p}' for p in _LINEAR},
}
#: keys under ``transformer.`` (in mmdet: at the top) that only the
#: single-stage variants have (the learnt queries and their references)
SINGLE_STAGE_KEYS = ['query_embedding.weight'] + \
    [f'reference_points_fc.{p}' for p in _LINEAR]
#: keys under ``transformer.`` (in mmdet: at the top) that only the
#: two-stage variant has (the proposal layers)
TWO_STAGE_KEYS = [
    f'{m}.{p}' for m in ('memory_trans_fc', 'memory_trans_norm',
                         'pos_trans_fc', 'pos_trans_norm') for p in _LINEAR
]

#: keys under ``transformer.`` (in mmdet: at the top) that only DINO has:
#: its proposal layers, content queries and the decoder's box embedding and
#: final norm
DINO_KEYS = ['query_embedding.weight'] + [
    f'{m}.{p}' for m in ('memory_trans_fc', 'memory_trans_norm',
                         'decoder.ref_point_head.layers.0',
                         'decoder.ref_point_head.layers.1', 'decoder.norm')
    for p in _LINEAR
]
#: DINO's denoising label embedding (top level in both layouts)
DINO_DENOISING_KEY = 'dn_query_generator.label_embedding.weight'

#: (pattern matched against the whole key, our name from the match)
Rule = Tuple['re.Pattern', Callable[['re.Match'], str]]


def rule(pattern: str, template: str) -> Rule:
    """A :data:`Rule` whose name is ``template`` with ``\\1``... filled."""
    return re.compile(pattern), lambda match: match.expand(template)


#: the prediction heads: ``class_embed`` / ``bbox_embed`` (a 3-layer MLP)
#: per prediction layer, identical in both layouts (HF prefixes nothing)
HEAD_RULES: List[Rule] = [
    rule(r'class_embed\.(\d+)\.(weight|bias)',
         r'bbox_head.cls_branches.\1.\2'),
    (re.compile(r'bbox_embed\.(\d+)\.layers\.([012])\.(weight|bias)'),
     lambda m: f'bbox_head.reg_branches.{m[1]}.{2 * int(m[2])}.{m[3]}'),
]
_INPUT_PROJ = re.compile(r'input_proj\.(\d+)\.([01])\.(weight|bias)')


def rename(state_dict: Mapping[str, Tensor],
           rules: Sequence[Rule]) -> Tuple[Dict[str, Tensor], List[str]]:
    """Rename every key by the first rule matching it whole.

    Returns:
        tuple: ``(renamed, unknown)``; ``unknown`` lists the keys no rule
        matched.
    """
    renamed, unknown = {}, []
    for key, value in state_dict.items():
        for pattern, name in rules:
            match = pattern.fullmatch(key)
            if match:
                renamed[name(match)] = value
                break
        else:
            unknown.append(key)
    return renamed, unknown


def convert_input_projs(state_dict: Mapping[str, Tensor]
                        ) -> Tuple[Dict[str, Tensor], List[str]]:
    """``input_proj.{i}.{0,1}.*`` (Conv2d + GroupNorm per level) to our neck.

    The 1x1 projections of the backbone maps become ``neck.input_projs``,
    the 3x3 stride-2 ones of the extra levels ``neck.extra_projs`` (counted
    from 0), told apart by the kernel size of ``input_proj.{i}.0.weight``.

    Args:
        state_dict (Mapping[str, Tensor]): keys starting with
            ``input_proj.``, without any model prefix.

    Returns:
        tuple: ``(converted, unknown)`` as :func:`rename`.
    """
    num_inputs = sum(
        1 for k, v in state_dict.items()
        if _INPUT_PROJ.fullmatch(k) and k.endswith('.0.weight') and
        v.shape[-1] == 1)
    converted, unknown = {}, []
    for key, value in state_dict.items():
        match = _INPUT_PROJ.fullmatch(key)
        if match is None:
            unknown.append(key)
            continue
        level = int(match[1])
        part = 'input_projs' if level < num_inputs else 'extra_projs'
        index = level if level < num_inputs else level - num_inputs
        module = 'conv' if match[2] == '0' else 'gn'
        converted[f'neck.{part}.{index}.{module}.{match[3]}'] = value
    return converted, unknown


def split_prefix(state_dict: Mapping[str, Tensor], prefix: str
                 ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """``(keys under prefix with it removed, the other keys)``."""
    inside = {k[len(prefix):]: v for k, v in state_dict.items()
              if k.startswith(prefix)}
    outside = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    return inside, outside


def drop_head_aliases(state_dict: Mapping[str, Tensor],
                      alias_prefix: str) -> Dict[str, Tensor]:
    """Resolve the decoder's references to the head (``alias_prefix +
    'bbox_embed.*'`` / ``'class_embed.*'``, stored by box refinement and
    two-stage): dropped when the head's own tensor is there and equal,
    used as the head's tensor when only the alias was saved (Hugging
    Face's ``save_pretrained`` keeps one name of tied weights).

    Raises:
        ValueError: an alias differs from its head tensor.
    """
    kept = {}
    for key, value in state_dict.items():
        if not key.startswith((alias_prefix + 'bbox_embed.',
                               alias_prefix + 'class_embed.')):
            kept.setdefault(key, value)
            continue
        head_key = key[len(alias_prefix):]
        head = state_dict.get(head_key)
        if head is None:
            kept[head_key] = value
        elif head is not value and not torch.equal(head, value):
            raise ValueError(f'{key} should be an alias of {head_key}, but '
                             'differs from it')
    return kept


def expand_shared_branches(state_dict: Dict[str, Tensor],
                           num_pred_layer: int) -> Dict[str, Tensor]:
    """Repeat the shared prediction head (no box refinement) under every
    layer index, as our head's state_dict has it.

    A file saved without duplicates (Hugging Face's ``save_pretrained``)
    holds only layer 0 of a shared head; layers that are present are kept.
    """
    for key in [k for k in state_dict
                if re.match(r'bbox_head\.(cls|reg)_branches\.0\.', k)]:
        for i in range(1, num_pred_layer):
            state_dict.setdefault(
                key.replace('_branches.0.', f'_branches.{i}.', 1),
                state_dict[key])
    return state_dict


def convert_backbone(backbone: Mapping[str, Tensor], source_prefix: str
                     ) -> Tuple[Dict[str, Tensor], List[str], List[str]]:
    """:func:`~.resnet_keys.resnet_to_mmdet` under ``backbone.``; unknown
    and missing keys carry their full source / our names."""
    converted, unknown, missing = resnet_to_mmdet(backbone)
    return ({f'backbone.{k}': v for k, v in converted.items()},
            [source_prefix + k for k in unknown],
            [f'backbone.{k}' for k in missing])


def _layer_count(keys: List[str], part: str) -> int:
    indices = [int(m[1]) for m in (re.match(
        rf'transformer\.{part}\.layers\.(\d+)\.', k) for k in keys) if m]
    return max(indices) + 1 if indices else 1


def missing_keys(converted: Mapping[str, Tensor],
                 neck_conv_bias: bool = True) -> List[str]:
    """Our keys a ``DeformableDETR`` of the converted variant needs and
    ``converted`` lacks (outside the backbone, which
    :func:`~.resnet_keys.resnet_to_mmdet` checks): the only definition of
    which keys a variant must have, for every layout's converter.

    The variant is read from the keys: DINO if
    ``transformer.decoder.ref_point_head.layers.0.weight`` is present,
    else two-stage if ``transformer.memory_trans_fc.weight`` is; the
    numbers of
    encoder/decoder layers and of neck levels from the largest indices.

    Args:
        converted (Mapping[str, Tensor]): a state_dict in our layout.
        neck_conv_bias (bool): the neck's convolutions have biases
            (original-repository and Hugging Face weights; mmdet's have
            none).

    Returns:
        list[str]: the missing keys, sorted.
    """
    keys = list(converted)
    dino = 'transformer.decoder.ref_point_head.layers.0.weight' in converted
    two_stage = dino or 'transformer.memory_trans_fc.weight' in converted
    variant_keys = DINO_KEYS if dino else (
        TWO_STAGE_KEYS if two_stage else SINGLE_STAGE_KEYS)
    required = ['transformer.level_embed'] + [
        f'transformer.{k}' for k in variant_keys
    ] + ([DINO_DENOISING_KEY] if dino else [])
    for part, layer_keys in (('encoder', ENCODER_LAYER_KEYS),
                             ('decoder', DECODER_LAYER_KEYS)):
        required += [
            f'transformer.{part}.layers.{i}.{k}'
            for i in range(_layer_count(keys, part))
            for k in layer_keys.values()
        ]
    num_pred_layer = _layer_count(keys, 'decoder') + int(two_stage)
    for i in range(num_pred_layer):
        required += [f'bbox_head.cls_branches.{i}.{p}' for p in _LINEAR]
        required += [f'bbox_head.reg_branches.{i}.{j}.{p}'
                     for j in (0, 2, 4) for p in _LINEAR]
    required += ['neck.input_projs.0.conv.weight']
    conv_params = _LINEAR if neck_conv_bias else ('weight', )
    for key in keys:
        match = re.match(r'(neck\.(input|extra)_projs\.\d+\.)', key)
        if match:
            required += [f'{match[1]}conv.{p}' for p in conv_params] + \
                [f'{match[1]}gn.{p}' for p in _LINEAR]
    return sorted({k for k in required if k not in converted})


def check_converted(layout: str, converted: Mapping[str, Tensor],
                    unknown: List[str], missing: List[str]) -> None:
    """Raise if any source key was not converted or our layout lacks keys.

    Raises:
        KeyError: naming the layout, the unknown source keys and the
            missing keys of our layout.
    """
    missing = sorted(set(missing) | set(missing_keys(converted)))
    if unknown or missing:
        raise KeyError(f'not a {layout} Deformable DETR state_dict: unknown '
                       f'keys {sorted(unknown)}, missing keys {missing}')


def num_classes(converted: Mapping[str, Tensor]) -> int:
    """Classes of a converted state_dict (rows of its first class layer)."""
    return len(converted['bbox_head.cls_branches.0.bias'])


def save_converted(state_dict: Dict[str, Tensor],
                   classes: Optional[Sequence[str]],
                   out: Optional[str] = None) -> dict:
    """Wrap a converted state_dict as a Runner-loadable checkpoint.

    Args:
        state_dict (dict[str, Tensor]): our keys.
        classes (Sequence[str], optional): the names of its class rows, put
            in ``meta['dataset_meta']['classes']`` (what fine-tuning matches
            the dataset's classes against); None for none.
        out (str, optional): where to ``torch.save`` it; its folder is
            created.

    Returns:
        dict: ``{'meta': {...}, 'state_dict': state_dict}``.
    """
    meta = {} if classes is None else dict(
        dataset_meta=dict(classes=tuple(classes)))
    checkpoint = dict(meta=meta, state_dict=state_dict)
    if out is not None:
        if osp.dirname(out):
            os.makedirs(osp.dirname(out), exist_ok=True)
        torch.save(checkpoint, out)
    return checkpoint
