"""Load any of the four checkpoint layouts with ``load_from`` or
``init_cfg=dict(type='Pretrained', checkpoint=...)``, and fine-tune on
other classes.

Three pieces, each extending mmengine where it stops short:

* :func:`register_pretrained_loaders`: mmengine's ``CheckpointLoader``
  reads Hugging Face ``.safetensors`` files (class names from the
  ``config.json`` beside them), and torch's safe loading accepts the
  ``argparse.Namespace`` of original-repository training checkpoints.
  Other files load as before.
* :func:`convert_layout_on_load`, a ``load_state_dict`` pre-hook of
  ``DeformableDETR``: whatever path loads the weights, an mmdet,
  original-repository or Hugging Face state_dict is converted to ours
  first (:func:`ddetr_plugin.converters.layouts.to_ddetr`), with a log line
  naming the layout found.
* :class:`PretrainedClassesHook`, a Runner hook (``after_load_checkpoint``,
  so ``load_from`` only): converts the layout the same way and, when the
  checkpoint's class names differ from the dataset's, keeps the rows of
  the classes both have and initialises the others
  (:func:`ddetr_plugin.converters.class_rows.remap_class_rows`), logging
  the kept and new classes.
"""
import os.path as osp
from typing import Mapping

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from ddetr_plugin.registry import HOOKS
from ..converters.class_rows import remap_class_rows
from ..converters.hf_checkpoint import hf_classes, load_hf_checkpoint
from ..converters.layouts import (checkpoint_classes, detect_layout,
                                  to_ddetr, unwrap_state_dict)
from ..converters.original_checkpoint import \
    allow_original_checkpoint_types


#: mmengine ``CheckpointLoader`` scheme of :func:`load_safetensors_checkpoint`
#: (schemes are regexes matched at the start of the path)
SAFETENSORS_SCHEME = r'.+\.safetensors$'


def load_safetensors_checkpoint(filename: str, map_location=None) -> dict:
    """Read a Hugging Face ``model.safetensors`` as a Runner checkpoint.

    Args:
        filename (str): the ``.safetensors`` file; a ``config.json`` beside
            it gives the class names (``id2label``).
        map_location: unused (tensors are read to the CPU).

    Returns:
        dict: ``{'meta': {'dataset_meta': {'classes': ...}}, 'state_dict':
        <HF tensors>}`` (``meta`` empty when the classes are unknown).

    Raises:
        FileNotFoundError: no such file.
    """
    state_dict, config = load_hf_checkpoint(osp.expanduser(filename))
    bias = state_dict.get('class_embed.0.bias')
    classes = hf_classes(config, 0 if bias is None else len(bias))
    meta = {} if classes is None else dict(dataset_meta=dict(classes=classes))
    return dict(meta=meta, state_dict=state_dict)


def register_pretrained_loaders() -> None:
    """Let mmengine read the released checkpoints of every layout
    (idempotent).

    Registers :func:`load_safetensors_checkpoint` for
    :data:`SAFETENSORS_SCHEME` paths, and allows the ``argparse.Namespace``
    of the original repository's files in torch's safe loading
    (:func:`~ddetr_plugin.converters.original_checkpoint.
    allow_original_checkpoint_types`). Everything else stays refused.
    """
    CheckpointLoader.register_scheme(
        prefixes=SAFETENSORS_SCHEME, loader=load_safetensors_checkpoint,
        force=True)
    allow_original_checkpoint_types()


def convert_layout_on_load(module: nn.Module, state_dict: dict, prefix: str,
                           *args) -> None:
    """``load_state_dict`` pre-hook: convert ``state_dict`` in place to our
    layout (keys under ``prefix``), logging the layout found.

    Registered by ``DeformableDETR``; a state_dict already in our layout is
    left as it is. An original checkpoint's ``model`` entry is unwrapped.

    A state_dict of no known layout (e.g. partial) is left to torch's own
    missing/unexpected-key report.

    Raises:
        ValueError: the checkpoint's neck
            convolutions have biases (original and Hugging Face weights)
            and the model's do not (set ``model.neck.bias=True``).
        KeyError: see the layout's converter.
    """
    own = {k[len(prefix):]: v for k, v in state_dict.items()
           if k.startswith(prefix)}
    weights = unwrap_state_dict(own)
    try:
        layout = detect_layout(weights)
    except ValueError:  # partial or foreign: torch reports the keys
        return
    if layout == 'ddetr' and weights is own:
        return
    converted, layout = to_ddetr(weights)
    print_log(f'checkpoint in the {layout} layout: converted to '
              "ddetr_plugin's on load", logger='current')
    _check_neck_bias(module, converted)
    for key in own:
        del state_dict[prefix + key]
    state_dict.update({prefix + k: v for k, v in converted.items()})


def _check_neck_bias(model: nn.Module, state_dict: Mapping) -> None:
    bias_key = 'neck.input_projs.0.conv.bias'
    if bias_key in state_dict and bias_key not in model.state_dict():
        raise ValueError(
            f'the checkpoint has {bias_key} (original-repository and Hugging '
            'Face weights have neck convolutions with biases); set '
            'model.neck.bias=True in the config')


@HOOKS.register_module()
class PretrainedClassesHook(Hook):
    """Load a checkpoint of any layout, and of other classes, with
    ``load_from``.

    After the Runner reads ``load_from`` (``after_load_checkpoint``), the
    weights are converted to our layout; then, if the names of the
    checkpoint's class rows (:func:`~ddetr_plugin.converters.layouts.
    checkpoint_classes`) differ from the dataset's classes (the
    ``metainfo`` the Runner's loops give the visualizer), every
    classification layer is rebuilt by
    :func:`~ddetr_plugin.converters.class_rows.remap_class_rows`, starting
    from the model's initialised weights. A log line lists the kept and the
    new classes. Resumed checkpoints (our layout, same classes) pass
    unchanged.

    Raises:
        ValueError: the checkpoint's class rows have no names (not 80 or 91
            rows and no ``meta['dataset_meta']['classes']``) and their
            number differs from the dataset's classes.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state_dict, layout = to_ddetr(unwrap_state_dict(checkpoint))
        if layout != 'ddetr':
            print_log(f'checkpoint in the {layout} layout: converted to '
                      "ddetr_plugin's", logger='current')
            _check_neck_bias(model, state_dict)
        dataset_meta = runner.visualizer.dataset_meta or {}
        classes = dataset_meta.get('classes')
        rows = len(state_dict['bbox_head.cls_branches.0.bias'])
        names = checkpoint_classes(checkpoint, rows)
        if classes is not None and names is None and rows != len(classes):
            raise ValueError(
                f'the checkpoint has {rows} classes without names (no '
                "meta['dataset_meta']['classes']), the dataset "
                f'{len(classes)}: cannot match them')
        if classes is not None and names is not None and \
                tuple(names) != tuple(classes):
            proposal_layer = model.bbox_head.num_pred_layer - 1 \
                if model.as_two_stage else None
            state_dict, kept, new = remap_class_rows(
                state_dict, names, classes, model.state_dict(),
                proposal_layer)
            print_log(f'fine-tuning on {len(classes)} classes: kept the '
                      f'checkpoint\'s rows of {kept}, initialised {new}',
                      logger='current')
        checkpoint['state_dict'] = state_dict
