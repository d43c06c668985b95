"""Offline checkpoint converters; state_dict functions are named
``<source>_to_ddetr`` (``<source>_to_mmdet`` for backbones), file functions
``convert_<source>_checkpoint``.

* :mod:`.mmdet_checkpoint`: mmdet 3.x Deformable DETR checkpoints to our
  layout (:func:`mmdet_to_ddetr` for a state_dict,
  ``convert_mmdet_checkpoint`` for a file);
* :mod:`.original_checkpoint` and :mod:`.hf_checkpoint`: the original
  repository's and Hugging Face's checkpoints (``original_to_ddetr``,
  ``hf_to_ddetr``), sharing :mod:`.detr_keys` and :mod:`.resnet_keys`;
* :mod:`.layouts`: which layout a state_dict is in, ``any_to_ddetr`` for
  any; :mod:`.load_hook`: ``DeformableDETR``'s load pre-hook converting
  whatever it is given; :mod:`.class_rows` and :mod:`.coco_classes`:
  fine-tuning on other classes;
* :mod:`.mobilenetv2`: third-party ImageNet MobileNetV2 weights to an mmdet
  backbone checkpoint (``torchvision_mobilenetv2_to_mmdet``);
* :mod:`.trusted_checkpoint`: a trusted checkpoint that torch's safe
  loading refuses, rewritten as one it accepts.

Only :func:`mmdet_to_ddetr` is exported here; import the submodules
explicitly (``from ddetr_plugin.converters import mobilenetv2``).
Annotation (dataset) converters live in :mod:`ddetr_plugin.datasets`.
Nothing here is registered in a registry, and nothing here imports
:mod:`ddetr_plugin.engine` (the layers of ``ddetr_plugin/__init__.py``):
files are read with torch's safe loading and the allow-list that importing
``ddetr_plugin`` registers.
"""
from .mmdet_checkpoint import mmdet_to_ddetr

__all__ = ['mmdet_to_ddetr']
