"""Datasets: preparation, checking, robust training transforms and the
test-time preprocessing.

* :mod:`.voc_to_coco`: Pascal VOC style datasets (e.g. BCCD) to COCO
  detection json, read by mmdet's ``CocoDataset``.
* :mod:`.dataset_check` (a package, one module per concern): check a
  config's datasets before training
  (``tools/analysis_tools/check_dataset.py``, and the fast part in
  ``tools/train.py``).
* :mod:`.transforms`: ``LoadImageFromFileOrSkip`` and ``ClipAndDropBoxes``,
  registered in our ``TRANSFORMS`` scope (imported by the registry when a
  config first resolves a transform name).
* :mod:`.palette`: a drawing colour for every class of a dataset config
  (:mod:`.wrapped_configs`: the dataset configs inside wrappers).
* :mod:`.preprocessing`: test-time image reading, resizing, normalisation
  and padding from a config, and boxes back to original pixels, shared by
  the inference backends (:mod:`ddetr_plugin.apis`) and the ONNX exporter
  (:mod:`ddetr_plugin.deployment`).

Import the submodules explicitly
(``from ddetr_plugin.datasets import voc_to_coco``); nothing is exported
here. The configs use mmdet's ``CocoDataset``. Checkpoint converters live
in :mod:`ddetr_plugin.converters`.
"""
