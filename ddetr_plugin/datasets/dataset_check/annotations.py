"""The fast check of an annotation file (well under a second for BCCD;
``tools/train.py`` runs it on the train and val splits before the first
iteration): its structure, ids, categories, box values, and the image files
present and not empty.

The rules on boxes follow mmdet 3.3's ``CocoDataset.parse_data_info``, which
drops boxes with width or height < 1, area <= 0, no overlap with the image,
or a category outside the config's classes, and marks crowd boxes ignored.
"""
import json
import math
import os
import os.path as osp
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Set

from .report import SplitReport
from .specs import DatasetSpec, ImageEntry


@dataclass
class BoxCounts:
    """Boxes per image id that training uses, from :func:`check_annotations`.

    Args:
        kept (Counter): boxes mmdet keeps (not crowd), per image id.
        crowd (Counter): crowd boxes (ignored by the loss), per image id.
        with_class (set): images with any annotation of a config class.
    """
    kept: Counter = field(default_factory=Counter)
    crowd: Counter = field(default_factory=Counter)
    with_class: Set[object] = field(default_factory=set)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    return _is_number(value) and math.isfinite(value)


def load_annotation_file(ann_file: str, report: SplitReport) -> Optional[dict]:
    """Read ``ann_file`` and check its top-level structure.

    Args:
        ann_file (str): path of a COCO json file.
        report (SplitReport): receives ``missing_annotation_file``,
            ``malformed_json`` and ``missing_key`` errors.

    Returns:
        dict | None: the parsed json, or None when no image list can be
        read from it.
    """
    if not osp.isfile(ann_file):
        report.add('missing_annotation_file', 'no such file', file=ann_file)
        return None
    try:
        with open(ann_file, 'rb') as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        report.add('malformed_json', f'{error.msg} at line {error.lineno} '
                   f'column {error.colno}', file=ann_file)
        return None
    except UnicodeDecodeError as error:
        report.add('malformed_json', f'not UTF-8 text: {error}',
                   file=ann_file)
        return None
    if not isinstance(data, dict):
        report.add('malformed_json', f'top level is a {type(data).__name__},'
                   ' a COCO file is an object', file=ann_file)
        return None
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            found = 'missing' if key not in data else \
                f'a {type(data[key]).__name__}, not a list'
            report.add('missing_key', f'"{key}" is {found}', file=ann_file)
    return data if isinstance(data.get('images'), list) else None


def check_image_entries(images: list, spec: DatasetSpec,
                        report: SplitReport) -> Dict[object, ImageEntry]:
    """Check the ``images`` of an annotation file: fields, duplicate ids,
    files present and not empty.

    Args:
        images (list): the json's ``images`` list.
        spec (DatasetSpec): the dataset (image folder, annotation file).
        report (SplitReport): receives ``invalid_image_entry``,
            ``duplicate_image_id``, ``missing_file``, ``unreadable_image``
            (zero bytes) and ``no_images``.

    Returns:
        dict: image id -> :class:`ImageEntry` of every usable entry.
    """
    entries: Dict[object, ImageEntry] = {}
    for image in images:
        fields = image if isinstance(image, dict) else {}
        image_id = fields.get('id')
        name = fields.get('file_name')
        size = (fields.get('width'), fields.get('height'))
        if image_id is None or not isinstance(name, str) or not all(
                _is_finite_number(v) and v > 0 for v in size):
            report.add('invalid_image_entry', 'needs id, file_name and '
                       f'positive width/height, got {image!r}'[:300],
                       file=name, image_id=image_id)
            continue
        if image_id in entries:
            report.add('duplicate_image_id', f'id also used by '
                       f'{entries[image_id].file_name}', file=name,
                       image_id=image_id)
            continue
        path = osp.join(spec.img_dir, name)
        entries[image_id] = ImageEntry(image_id, name, path, *size)
        if not osp.isfile(path):
            report.add('missing_file', f'no such file {path}', file=name,
                       image_id=image_id)
        elif os.stat(path).st_size == 0:
            report.add('unreadable_image', 'zero bytes', file=name,
                       image_id=image_id)
    if not entries:
        report.add('no_images', 'no usable image entry',
                   file=spec.ann_file)
    return entries


def _box_problem(box: Sequence[float], entry: ImageEntry) -> Optional[tuple]:
    """(kind, message) of a numeric xywh box on its image, as mmdet's
    ``CocoDataset`` sees it, or None for a box used as it is."""
    x, y, w, h = box
    if w < 1 or h < 1:
        return ('degenerate_box', f'width {w:g}, height {h:g}: dropped')
    overlap_w = min(x + w, entry.width) - max(x, 0)
    overlap_h = min(y + h, entry.height) - max(y, 0)
    if overlap_w <= 0 or overlap_h <= 0:
        return ('box_outside', f'xywh {list(box)} outside the '
                f'{entry.width}x{entry.height} image: dropped')
    if x < 0 or y < 0 or x + w > entry.width or y + h > entry.height:
        return ('box_partly_outside', f'xywh {list(box)} crosses the border '
                f'of the {entry.width}x{entry.height} image: clipped')
    return None


def check_annotations(data: dict, entries: Dict[object, ImageEntry],
                      spec: DatasetSpec, report: SplitReport) -> BoxCounts:
    """Check the annotations and categories of an annotation file the way
    mmdet's ``CocoDataset`` reads them.

    Args:
        data (dict): the parsed json.
        entries (dict): its usable image entries
            (:func:`check_image_entries`).
        spec (DatasetSpec): the dataset (classes, annotation file).
        report (SplitReport): receives the category, annotation and box
            problems.

    Returns:
        BoxCounts: the boxes per image that training uses.
    """
    categories = data.get('categories')
    categories = categories if isinstance(categories, list) else []
    category_names = {c.get('id'): c.get('name') for c in categories
                      if isinstance(c, dict)}
    known = set(category_names.values())
    for name in spec.classes:
        if name not in known:
            report.add('class_not_in_categories',
                       f'config class {name!r} has no category; categories: '
                       f'{sorted(known, key=str)}', file=spec.ann_file)
    class_ids = {i for i, n in category_names.items() if n in spec.classes}
    kept = Counter()  # image id -> boxes mmdet keeps (not crowd)
    crowd = Counter()
    with_class = set()  # images with any annotation of a class category
    outside_classes = Counter()
    seen_ids = set()
    annotations = data.get('annotations')
    for ann in annotations if isinstance(annotations, list) else []:
        ann = ann if isinstance(ann, dict) else {}
        ann_id, image_id = ann.get('id'), ann.get('image_id')
        entry = entries.get(image_id)
        where = dict(file=entry.file_name if entry else None,
                     image_id=image_id, annotation_id=ann_id)
        missing = [k for k in ('id', 'image_id', 'category_id', 'bbox',
                               'area') if k not in ann]
        if missing:
            report.add('invalid_annotation', f'missing {missing} (mmdet\'s '
                       'CocoDataset reads them)', **where)
            continue
        if ann_id in seen_ids:
            report.add('duplicate_annotation_id', 'annotation id used '
                       'twice (mmdet asserts unique ids)', **where)
        seen_ids.add(ann_id)
        if entry is None:
            report.add('orphan_annotation', f'image id {image_id!r} is not '
                       'in "images"', **where)
            continue
        box = ann['bbox']
        if not (isinstance(box, list) and len(box) == 4
                and all(_is_finite_number(v) for v in box)) or \
                not _is_finite_number(ann['area']):
            report.add('invalid_box', f'bbox {box!r}, area {ann["area"]!r}: '
                       'need 4 finite numbers (x, y, w, h) and a finite area',
                       **where)
            continue
        category = ann['category_id']
        if category not in category_names:
            report.add('unknown_category', f'category_id {category!r} not in '
                       f'categories {sorted(category_names, key=str)}',
                       **where)
            continue
        if category not in class_ids:
            outside_classes[category_names[category]] += 1
            continue
        with_class.add(image_id)
        problem = _box_problem(box, entry)
        if problem:
            report.add(*problem, **where)
            if problem[0] != 'box_partly_outside':
                continue
        if ann.get('iscrowd', 0):
            crowd[image_id] += 1
        else:
            kept[image_id] += 1
    for name, count in outside_classes.items():
        report.add('category_not_in_classes', f'{count} annotation(s) of '
                   f'category {name!r} ignored: not in the config classes',
                   file=spec.ann_file)
    return BoxCounts(kept, crowd, with_class)


def check_box_counts(entries: Dict[object, ImageEntry], counts: BoxCounts,
                     spec: DatasetSpec, report: SplitReport) -> None:
    """Report images without (usable) boxes and crowd-only images, with
    what training does with them (``crowd_only_image``,
    ``image_without_boxes``)."""
    dropped = spec.filter_empty_gt and not spec.test_mode
    for image_id, entry in entries.items():
        if counts.kept[image_id]:
            continue
        where = dict(file=entry.file_name, image_id=image_id)
        fate = ('dropped by filter_cfg.filter_empty_gt=True'
                if dropped and image_id not in counts.with_class else
                'trained as a negative (every query learns background)')
        if counts.crowd[image_id]:
            report.add('crowd_only_image', f'{counts.crowd[image_id]} crowd '
                       f'box(es), ignored by the loss: {fate}', **where)
        else:
            report.add('image_without_boxes', fate, **where)
