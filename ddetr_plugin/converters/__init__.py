"""Offline converters: mmdet Deformable DETR checkpoints to our layout
(:func:`from_mmdet`), Pascal VOC annotations to COCO json, and third-party
backbone weights to mmdet checkpoints.

Only :func:`from_mmdet` is exported here; import the other submodules
explicitly (``from ddetr_plugin.converters import voc_to_coco``). Nothing
here is registered in a registry.
"""
from .mmdet import from_mmdet

__all__ = ['from_mmdet']
