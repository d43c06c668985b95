"""Offline checkpoint converters.

* :mod:`.mmdet_checkpoint`: mmdet 3.x Deformable DETR checkpoints to our
  layout (:func:`from_mmdet` for a state_dict,
  ``convert_mmdet_checkpoint`` for a file);
* :mod:`.original_checkpoint` and :mod:`.hf_checkpoint`: the original
  repository's and Hugging Face's checkpoints (``from_original``,
  ``from_hf``), sharing :mod:`.detr_keys` and :mod:`.resnet_keys`;
* :mod:`.layouts`: which layout a state_dict is in, ``to_ddetr`` for any;
  :mod:`.class_rows` and :mod:`.coco_classes`: fine-tuning on other
  classes;
* :mod:`.mobilenetv2`: third-party ImageNet MobileNetV2 weights to an mmdet
  backbone checkpoint.

Only :func:`from_mmdet` is exported here; import the submodules explicitly
(``from ddetr_plugin.converters import mobilenetv2``). Annotation (dataset)
converters live in :mod:`ddetr_plugin.datasets`. Nothing here is registered
in a registry.
"""
from .mmdet_checkpoint import from_mmdet

__all__ = ['from_mmdet']
