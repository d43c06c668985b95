"""The entry points of the dataset check: one dataset
(:func:`check_dataset`), every dataset of a config (:func:`check_config`),
and the fast check ``tools/train.py`` runs before training
(:func:`check_before_training`)."""
from typing import List, Optional, Sequence

from mmengine.config import Config

from .annotations import (check_annotations, check_box_counts,
                          check_image_entries, load_annotation_file)
from .image_files import check_image_files
from .model_config import (ModelSpec, check_classes_fit, check_images_fit,
                           model_spec)
from .report import SplitReport, format_reports, has_errors
from .specs import SPLITS, DatasetSpec, dataset_specs


class DatasetCheckError(RuntimeError):
    """The dataset check found errors; the message is the report."""


def check_dataset(spec: DatasetSpec, model: Optional[ModelSpec] = None,
                  decode: bool = True, progress: bool = True) -> SplitReport:
    """Check one dataset.

    Args:
        spec (DatasetSpec): what the dataset reads.
        model (ModelSpec, optional): what the checks that need the model
            config read of it (:func:`~.model_config.model_spec`); None
            skips them.
        decode (bool): also decode every image (the slow part).
        progress (bool): progress bar on stderr while decoding.

    Returns:
        SplitReport: the findings.
    """
    model = model or ModelSpec()
    report = SplitReport(spec.split, ann_file=spec.ann_file)
    check_classes_fit(spec, model, report)
    data = load_annotation_file(spec.ann_file, report)
    if data is None:
        return report
    report.num_images = len(data['images'])
    annotations = data.get('annotations')
    report.num_annotations = len(annotations) if isinstance(
        annotations, list) else 0
    entries = check_image_entries(data['images'], spec, report)
    counts = check_annotations(data, entries, spec, report)
    check_box_counts(entries, counts, spec, report)
    check_images_fit(entries, counts.kept, model, report)
    if decode and spec.loader is not None:
        check_image_files(entries.values(), spec.loader, report, progress)
    return report


def check_config(cfg: Config, splits: Sequence[str] = SPLITS,
                 decode: bool = True,
                 progress: bool = True) -> List[SplitReport]:
    """Check the datasets of a config's dataloaders.

    Args:
        cfg (Config): a detection config (``{split}_dataloader``, ``model``).
        splits (sequence[str]): among ``'train'``, ``'val'``, ``'test'``;
            splits without a dataloader are skipped.
        decode (bool): decode every image through the config's loader.
        progress (bool): progress bars on stderr.

    Returns:
        list[SplitReport]: one per checked dataset.

    Raises:
        ValueError: an unknown split name.
    """
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f'unknown split(s) {sorted(unknown)}; use {SPLITS}')
    model = model_spec(cfg)
    reports = []
    for split in splits:
        for spec in dataset_specs(cfg, split):
            if isinstance(spec, DatasetSpec):
                reports.append(check_dataset(spec, model, decode, progress))
            else:
                report = SplitReport(split)
                report.add('unsupported_dataset', f'{type(spec).__name__} '
                           'is not a CocoDataset: not checked')
                reports.append(report)
    return reports


def check_before_training(cfg: Config) -> List[SplitReport]:
    """The fast check of the train and val datasets, run by
    ``tools/train.py`` before the first iteration (no image is decoded).

    Returns:
        list[SplitReport]: the reports, when there is no error.

    Raises:
        DatasetCheckError: an error was found; the message is the report.
    """
    reports = check_config(cfg, ('train', 'val'), decode=False,
                           progress=False)
    if has_errors(reports):
        raise DatasetCheckError(
            'the dataset check found errors; training not started (fix '
            'them, or pass --skip-data-check to train anyway):\n'
            + format_reports(reports))
    return reports
