"""Check a config's COCO-json datasets the way training reads them, before
training: every problem named with its file and ids (:mod:`.report` lists
the kinds, errors and warnings). Import everything from here
(``from ddetr_plugin.datasets.dataset_check import check_config``).

One module per concern:

* :mod:`.specs`: what a config's datasets read (:func:`dataset_specs`);
* :mod:`.annotations`: the fast check of the annotation file (structure,
  ids, categories, box values, image files present and not empty): well
  under a second for BCCD; ``tools/train.py`` runs it on the train and val
  splits before the first iteration and refuses to start on errors;
* :mod:`.image_files`: the image check, every image decoded by the
  config's own loading transform (``tools/analysis_tools/
  check_dataset.py``);
* :mod:`.model_config`: checks that need the model config (classes,
  objects per image against the queries): the place for new ones;
* :mod:`.report`: the findings, their text and JSON forms;
* :mod:`.check`: the entry points (:func:`check_dataset`,
  :func:`check_config`, :func:`check_before_training`).
"""
from .annotations import BoxCounts, load_annotation_file
from .check import (DatasetCheckError, check_before_training, check_config,
                    check_dataset)
from .image_files import check_image_files, inspect_image
from .model_config import ModelSpec, model_spec
from .report import (ERROR, KINDS, WARNING, Problem, SplitReport,
                     format_reports, has_errors)
from .specs import SPLITS, DatasetSpec, ImageEntry, dataset_specs

__all__ = [
    'BoxCounts', 'DatasetCheckError', 'DatasetSpec', 'ERROR', 'ImageEntry',
    'KINDS', 'ModelSpec', 'Problem', 'SPLITS', 'SplitReport', 'WARNING',
    'check_before_training', 'check_config', 'check_dataset',
    'check_image_files', 'dataset_specs', 'format_reports', 'has_errors',
    'inspect_image', 'load_annotation_file', 'model_spec'
]
