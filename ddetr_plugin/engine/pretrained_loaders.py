"""mmengine reads the released checkpoints of every layout.

:func:`register_pretrained_loaders` (called when :mod:`ddetr_plugin.engine`
is imported) extends mmengine's ``CheckpointLoader`` where it stops short:

* Hugging Face ``.safetensors`` files load as Runner checkpoints
  (:func:`load_safetensors_checkpoint`; class names from the
  ``config.json`` beside them);
* torch's safe loading accepts the ``argparse.Namespace`` of
  original-repository training checkpoints.

Other files load as before. The weights are converted to our layout by
``DeformableDETR``'s load pre-hook
(:mod:`ddetr_plugin.converters.load_hook`), so ``load_from`` and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` take any layout.
"""
import os.path as osp

from mmengine.runner.checkpoint import CheckpointLoader

from ddetr_plugin.converters.hf_checkpoint import (hf_classes,
                                                   load_hf_checkpoint)
from ddetr_plugin.converters.original_checkpoint import \
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
