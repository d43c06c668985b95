"""Datasets: preparation, checking and robust training transforms.

* :mod:`.voc_to_coco`: Pascal VOC style datasets (e.g. BCCD) to COCO
  detection json, read by mmdet's ``CocoDataset``.
* :mod:`.dataset_check` (and :mod:`.check_report`): check a config's
  datasets before training (``tools/analysis_tools/check_dataset.py``, and
  the fast part in ``tools/train.py``).
* :mod:`.transforms`: ``LoadImageFromFileOrSkip`` and ``ClipAndDropBoxes``,
  registered in our ``TRANSFORMS`` scope (imported by the registry when a
  config first resolves a transform name).

Import the submodules explicitly
(``from ddetr_plugin.datasets import voc_to_coco``); nothing is exported
here. The configs use mmdet's ``CocoDataset``. Checkpoint converters live
in :mod:`ddetr_plugin.converters`.
"""
