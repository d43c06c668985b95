"""Datasets: preparation of annotation files.

* :mod:`.voc_to_coco`: Pascal VOC style datasets (e.g. BCCD) to COCO
  detection json, read by mmdet's ``CocoDataset``.

Import the submodules explicitly
(``from ddetr_plugin.datasets import voc_to_coco``); nothing is exported
here. Checkpoint converters live in :mod:`ddetr_plugin.converters`.
"""
