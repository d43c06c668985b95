"""Checks that need the model config: whether the config's model fits each
dataset (its classes, the objects per image), on top of what the data
itself holds.

:func:`model_spec` reads what these checks need of ``cfg.model`` into a
:class:`ModelSpec`; ``check_dataset`` (:mod:`.check`) runs
:func:`check_classes_fit` before reading the annotation file and
:func:`check_images_fit` after counting its boxes. A new check of this kind
adds the fields it needs to :class:`ModelSpec` (read in :func:`model_spec`)
and its kind to :data:`~.report.KINDS`, and is called from one of these two
functions (or from ``check_dataset`` beside them).
"""
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Optional

from mmengine.config import Config

from .report import SplitReport
from .specs import DatasetSpec, ImageEntry


@dataclass
class ModelSpec:
    """What the dataset checks read of a config's model; ``None`` where the
    config does not say.

    Args:
        num_queries (int, optional): object queries (ours:
            ``model.transformer.num_queries``; mmdet's:
            ``model.num_queries``).
        num_classes (int, optional): ``model.bbox_head.num_classes``.
        num_queries_one2many (int, optional): the training-only one-to-many
            queries of hybrid matching (``HybridDeformableDETR``).
        k_one2many (int, optional): repeats of each box for them.
        num_dn_queries (int, optional): the denoising queries per image that
            DINO's dynamic denoising groups aim at
            (``model.dn_cfg.group_cfg.num_dn_queries``, 100 by default).
    """
    num_queries: Optional[int] = None
    num_classes: Optional[int] = None
    num_queries_one2many: Optional[int] = None
    k_one2many: Optional[int] = None
    num_dn_queries: Optional[int] = None


def model_spec(cfg: Config) -> ModelSpec:
    """What the checks of this module need of ``cfg.model`` (see
    :class:`ModelSpec`); an empty spec for a config without a model."""
    model = cfg.get('model') or {}
    num_queries = (model.get('transformer') or {}).get(
        'num_queries', model.get('num_queries'))
    num_classes = (model.get('bbox_head') or {}).get('num_classes')
    num_dn_queries = None
    if model.get('type') in ('DINO', 'DNDeformableDETR') or \
            model.get('dn_cfg') is not None:
        group_cfg = (model.get('dn_cfg') or {}).get('group_cfg') or {}
        if group_cfg.get('dynamic', True):
            num_dn_queries = group_cfg.get('num_dn_queries', 100)
    return ModelSpec(
        num_queries=num_queries,
        num_classes=num_classes,
        num_queries_one2many=model.get('num_queries_one2many'),
        k_one2many=model.get('k_one2many'),
        num_dn_queries=num_dn_queries)


def check_classes_fit(spec: DatasetSpec, model: ModelSpec,
                      report: SplitReport) -> None:
    """The head has one output per dataset class
    (``num_classes_mismatch``)."""
    num_classes = model.num_classes
    if num_classes is not None and num_classes != len(spec.classes):
        report.add('num_classes_mismatch', f'model.bbox_head.num_classes='
                   f'{num_classes} but {spec.split}_dataloader.dataset '
                   f'metainfo.classes has {len(spec.classes)}: '
                   f'{list(spec.classes)}', file=spec.ann_file)


def check_images_fit(entries: Dict[object, ImageEntry], kept: Counter,
                     model: ModelSpec, report: SplitReport) -> None:
    """Every image has at most as many objects as the model has queries
    (``more_objects_than_queries``); with hybrid matching, at most as
    many repeated objects as one-to-many queries
    (``more_repeats_than_one2many_queries``); with DINO's dynamic denoising
    groups, at most ``num_dn_queries`` objects
    (``more_objects_than_denoising_queries``).

    Args:
        entries (dict): image id -> :class:`~.specs.ImageEntry`.
        kept (Counter): the boxes training uses, per image id
            (``BoxCounts.kept`` of :mod:`.annotations`).
        model (ModelSpec): the config's model.
        report (SplitReport): receives the findings.
    """
    num_queries = model.num_queries
    one2many = model.num_queries_one2many
    k_one2many = model.k_one2many or 1
    for image_id, entry in entries.items():
        if num_queries is not None and kept[image_id] > num_queries:
            report.add('more_objects_than_queries', f'{kept[image_id]} '
                       f'objects, num_queries={num_queries}: at most '
                       f'{num_queries} are matched, the rest count as missed',
                       file=entry.file_name, image_id=image_id)
        if one2many is not None and kept[image_id] * k_one2many > one2many:
            report.add('more_repeats_than_one2many_queries',
                       f'{kept[image_id]} objects x k_one2many={k_one2many} '
                       f'> num_queries_one2many={one2many}: the one-to-many '
                       f'queries match {one2many} of the repeats, the rest '
                       'stay unmatched (training goes on)',
                       file=entry.file_name, image_id=image_id)
        dn_queries = model.num_dn_queries
        if dn_queries is not None and kept[image_id] > dn_queries:
            report.add('more_objects_than_denoising_queries',
                       f'{kept[image_id]} objects > dn_cfg.group_cfg.'
                       f'num_dn_queries={dn_queries}: a batch with this image '
                       'gets one denoising group of '
                       f'{2 * kept[image_id]} queries per image (more memory '
                       'than planned; training goes on)',
                       file=entry.file_name, image_id=image_id)
