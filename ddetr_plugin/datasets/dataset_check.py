"""Check a config's COCO-json datasets the way training reads them, before
training: every problem named with its file and ids (see
:mod:`.check_report` for the kinds, errors and warnings).

Two parts:

* the fast check (annotation file, its structure, ids, categories, box
  values, image files present and not empty): well under a second for
  BCCD; ``tools/train.py`` runs it on the train and val splits before the
  first iteration and refuses to start on errors;
* the image check: every image decoded by the config's own loading
  transform (so a file is "readable" exactly when training can read it),
  plus Pillow's header for the colour mode and EXIF orientation, on a
  thread pool (``tools/analysis_tools/check_dataset.py``).

The rules on boxes follow mmdet 3.3's ``CocoDataset.parse_data_info``, which
drops boxes with width or height < 1, area <= 0, no overlap with the image,
or a category outside the config's classes, and marks crowd boxes ignored.
"""
import json
import math
import os
import os.path as osp
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.utils import ProgressBar
from PIL import Image

from ddetr_plugin.registry import DATASETS
from .check_report import SplitReport, format_reports, has_errors

SPLITS = ('train', 'val', 'test')
EXIF_ORIENTATION = 0x0112
MIN_IMAGE_SIDE = 32  # the coarsest backbone stride of the configs
# Pillow mode -> what a 3-channel 8-bit decode (color_type='color') does
MODE_CONVERSIONS = {
    '1': 'black-and-white: loaded as 3 equal channels',
    'L': 'grayscale: loaded as 3 equal channels',
    'LA': 'grayscale with alpha: alpha dropped, 3 equal channels',
    'P': 'palette: expanded to colours',
    'PA': 'palette with alpha: expanded to colours, alpha dropped',
    'RGBA': 'RGBA: alpha dropped (transparent pixels keep their colour)',
    'I;16': '16-bit: scaled to 8 bits (value / 256)',
    'I;16B': '16-bit: scaled to 8 bits (value / 256)',
    'I': '32-bit integer: scaled to 8 bits',
    'F': '32-bit float: converted to 8 bits',
    'CMYK': 'CMYK: converted to RGB by the decoder (no ICC profile)',
    'YCbCr': 'YCbCr: converted to RGB by the decoder',
}


class DatasetCheckError(RuntimeError):
    """The dataset check found errors; the message is the report."""


@dataclass
class DatasetSpec:
    """What one dataloader's dataset reads, resolved by the dataset itself.

    Args:
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        ann_file (str): the COCO json path (``data_root`` joined).
        img_dir (str): ``data_prefix['img']`` (``data_root`` joined).
        classes (tuple[str]): ``metainfo['classes']``.
        filter_empty_gt (bool): images without boxes are dropped.
        test_mode (bool): the dataset never drops images.
        loader (LoadImageFromFile, optional): the pipeline's loading
            transform.
    """
    split: str
    ann_file: str
    img_dir: str
    classes: tuple
    filter_empty_gt: bool
    test_mode: bool
    loader: Optional[LoadImageFromFile]


@dataclass
class ImageEntry:
    """An image entry of the annotation file, for the image check."""
    image_id: object
    file_name: str
    path: str
    width: int
    height: int


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


def _check_images(images: list, spec: DatasetSpec,
                  report: SplitReport) -> Dict[object, ImageEntry]:
    """Image entries: fields, duplicate ids, files present and not empty."""
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


def _check_annotations(data: dict, entries: Dict[object, ImageEntry],
                       spec: DatasetSpec, num_queries: Optional[int],
                       report: SplitReport) -> None:
    """Annotations and categories, then per-image box counts."""
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
    _check_box_counts(entries, kept, crowd, with_class, spec, num_queries,
                      report)


def _check_box_counts(entries, kept, crowd, with_class, spec, num_queries,
                      report) -> None:
    """Images without (usable) boxes, crowd-only, more objects than
    queries."""
    dropped = spec.filter_empty_gt and not spec.test_mode
    for image_id, entry in entries.items():
        where = dict(file=entry.file_name, image_id=image_id)
        if kept[image_id] == 0:
            fate = ('dropped by filter_cfg.filter_empty_gt=True'
                    if dropped and image_id not in with_class else
                    'trained as a negative (every query learns background)')
            if crowd[image_id]:
                report.add('crowd_only_image', f'{crowd[image_id]} crowd '
                           f'box(es), ignored by the loss: {fate}', **where)
            else:
                report.add('image_without_boxes', fate, **where)
        elif num_queries is not None and kept[image_id] > num_queries:
            report.add('more_objects_than_queries', f'{kept[image_id]} '
                       f'objects, num_queries={num_queries}: at most '
                       f'{num_queries} are matched, the rest count as missed',
                       **where)


def _png_bit_depth(path: str) -> int:
    """Bits per channel from a PNG's IHDR chunk (byte 24 of the file)."""
    with open(path, 'rb') as f:
        header = f.read(25)
    return header[24] if len(header) == 25 else 8


def inspect_image(loader: LoadImageFromFile,
                  entry: ImageEntry) -> List[Tuple[str, str]]:
    """Decode one image with the config's loading transform and read its
    header with Pillow.

    Args:
        loader (LoadImageFromFile): the config's (possibly our skipping
            subclass: its raising parent method is called).
        entry (ImageEntry): the image and its size in the json.

    Returns:
        list[tuple[str, str]]: ``(kind, message)`` of what was found:
        ``unreadable_image``, ``size_mismatch``, ``exif_orientation``,
        ``non_rgb_image``, ``tiny_image``.
    """
    try:
        results = LoadImageFromFile.transform(loader,
                                              dict(img_path=entry.path))
    except Exception as error:  # any decoder failure is the finding
        return [('unreadable_image', f'{type(error).__name__}: {error}')]
    if results is None:
        return [('unreadable_image', 'the loader returned no image')]
    found = []
    height, width = results['img'].shape[:2]
    mode, orientation, bit_depth = None, 1, 8
    try:
        with Image.open(entry.path) as image:
            mode = image.mode
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if image.format == 'PNG':  # Pillow reads 16-bit RGB as 8-bit
                bit_depth = _png_bit_depth(entry.path)
    except Exception:  # noqa: S110 decodable by OpenCV but not Pillow
        pass
    color_type = loader.color_type
    if orientation != 1:
        applied = 'ignore_orientation' not in color_type and \
            color_type != 'unchanged'
        found.append(('exif_orientation', f'EXIF orientation {orientation}: '
                      + (f'the loader (color_type={color_type!r}) rotates/'
                         f'flips it to {width}x{height}; boxes must be '
                         'drawn on the rotated image' if applied else
                         f'ignored by the loader (color_type={color_type!r})'
                         )))
    if bit_depth == 16 or (mode is not None and mode != 'RGB'):
        what = MODE_CONVERSIONS['I;16'] if bit_depth == 16 else \
            MODE_CONVERSIONS.get(mode, f'mode {mode}: converted by the '
                                 'decoder')
        found.append(('non_rgb_image', f'{what} (loader color_type='
                      f'{color_type!r}, loaded shape '
                      f'{tuple(results["img"].shape)})'))
    if (width, height) != (entry.width, entry.height):
        found.append(('size_mismatch', f'json says {entry.width}x'
                      f'{entry.height}, the loaded image is {width}x{height}'
                      ': boxes are clipped to the loaded image and misplaced '
                      'if the file was resized'))
    if min(width, height) < MIN_IMAGE_SIDE:
        found.append(('tiny_image', f'{width}x{height}: smaller than the '
                      f'backbone stride {MIN_IMAGE_SIDE}; Resize scales it '
                      'up'))
    return found


def check_image_files(entries: Iterable[ImageEntry], loader: LoadImageFromFile,
                      report: SplitReport, progress: bool = True,
                      num_threads: Optional[int] = None) -> None:
    """Decode every image (see :func:`inspect_image`) on a thread pool
    (OpenCV decodes without the GIL), in order, with a progress bar on
    stderr. Files already reported missing or empty are not read."""
    skip = {p.file for p in report.problems
            if p.kind in ('missing_file', 'unreadable_image')}
    entries = [e for e in entries if e.file_name not in skip]
    bar = ProgressBar(len(entries), file=sys.stderr) if progress else None
    with ThreadPoolExecutor(num_threads or os.cpu_count()) as pool:
        for entry, found in zip(
                entries, pool.map(lambda e: inspect_image(loader, e),
                                  entries)):
            for kind, message in found:
                report.add(kind, message, file=entry.file_name,
                           image_id=entry.image_id)
            if bar:
                bar.update()
    if bar:
        sys.stderr.write('\n')
    report.images_decoded = len(entries)


def _leaf_datasets(dataset_cfg: dict) -> List[dict]:
    """The dataset configs under mmengine's wrappers (``dataset`` of
    RepeatDataset/ClassBalancedDataset, ``datasets`` of ConcatDataset)."""
    if 'dataset' in dataset_cfg:
        return _leaf_datasets(dataset_cfg['dataset'])
    if 'datasets' in dataset_cfg:
        return [leaf for d in dataset_cfg['datasets']
                for leaf in _leaf_datasets(d)]
    return [dataset_cfg]


def dataset_specs(cfg: Config, split: str) -> List[object]:
    """What the ``{split}_dataloader`` datasets read, resolved by building
    each dataset (``lazy_init``: the annotation file is not read).

    Returns:
        list: a :class:`DatasetSpec` per COCO-json dataset, or the built
        dataset itself for any other type.
    """
    loader_cfg = cfg.get(f'{split}_dataloader')
    if not loader_cfg:
        return []
    specs = []
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'ddetr_plugin')):
        for dataset_cfg in _leaf_datasets(loader_cfg['dataset']):
            dataset = DATASETS.build(
                ConfigDict(dataset_cfg, lazy_init=True))
            if not isinstance(dataset, CocoDataset):
                specs.append(dataset)
                continue
            filter_cfg = dataset.filter_cfg or {}
            loaders = [t for t in dataset.pipeline.transforms
                       if isinstance(t, LoadImageFromFile)]
            specs.append(DatasetSpec(
                split, dataset.ann_file, dataset.data_prefix.get('img', ''),
                tuple(dataset.metainfo['classes']),
                bool(filter_cfg.get('filter_empty_gt', False)),
                dataset.test_mode, loaders[0] if loaders else None))
    return specs


def check_dataset(spec: DatasetSpec, num_queries: Optional[int] = None,
                  num_classes: Optional[int] = None, decode: bool = True,
                  progress: bool = True) -> SplitReport:
    """Check one dataset.

    Args:
        spec (DatasetSpec): what the dataset reads.
        num_queries (int, optional): the model's object queries.
        num_classes (int, optional): the head's ``num_classes``.
        decode (bool): also decode every image (the slow part).
        progress (bool): progress bar on stderr while decoding.

    Returns:
        SplitReport: the findings.
    """
    report = SplitReport(spec.split, ann_file=spec.ann_file)
    if num_classes is not None and num_classes != len(spec.classes):
        report.add('num_classes_mismatch', f'model.bbox_head.num_classes='
                   f'{num_classes} but {spec.split}_dataloader.dataset '
                   f'metainfo.classes has {len(spec.classes)}: '
                   f'{list(spec.classes)}', file=spec.ann_file)
    data = load_annotation_file(spec.ann_file, report)
    if data is None:
        return report
    report.num_images = len(data['images'])
    annotations = data.get('annotations')
    report.num_annotations = len(annotations) if isinstance(
        annotations, list) else 0
    entries = _check_images(data['images'], spec, report)
    _check_annotations(data, entries, spec, num_queries, report)
    if decode and spec.loader is not None:
        check_image_files(entries.values(), spec.loader, report, progress)
    return report


def _model_sizes(cfg: Config) -> Tuple[Optional[int], Optional[int]]:
    """(num_queries, num_classes) of the config's model, if it has them
    (ours: ``transformer.num_queries``; mmdet's: ``num_queries``)."""
    model = cfg.get('model') or {}
    num_queries = (model.get('transformer') or {}).get(
        'num_queries', model.get('num_queries'))
    num_classes = (model.get('bbox_head') or {}).get('num_classes')
    return num_queries, num_classes


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
    num_queries, num_classes = _model_sizes(cfg)
    reports = []
    for split in splits:
        for spec in dataset_specs(cfg, split):
            if isinstance(spec, DatasetSpec):
                reports.append(check_dataset(spec, num_queries, num_classes,
                                             decode, progress))
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


__all__ = ['DatasetCheckError', 'DatasetSpec', 'check_config',
           'check_dataset', 'check_before_training', 'check_image_files',
           'dataset_specs', 'inspect_image', 'load_annotation_file']
