"""The hostile-data corpus of the dataset tests: small COCO datasets, one per
case, generated in a temp folder from two real BCCD images (nothing binary
is committed), and the tiny BCCD-config model they are checked and trained
with.

Each :class:`Case` is one annotation file ``cases/<name>.json`` over the
shared ``images/`` folder, with what the checker must say about it.
"""
import copy
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
from mmengine.config import Config
from PIL import Image

from .paths import BCCD_CONFIG
SOURCE_IMAGES = ('BloodImage_00007.jpg', 'BloodImage_00011.jpg')
CATEGORIES = [dict(id=1, name='RBC'), dict(id=2, name='WBC'),
              dict(id=3, name='Platelets')]
NUM_QUERIES = 100
EXIF_ROTATE_90 = 6


@dataclass
class Case:
    """One hostile dataset and the expected verdict.

    Args:
        name (str): ``cases/<name>.json``.
        kind (str | None): the problem kind the checker must report (None:
            nothing to report).
        file (str | None): the file the message must name (an image, or
            the annotation file for structural problems).
        fast (bool): the fast check (``tools/train.py``) finds it too.
        trains (bool): part of the mixed training run; False for cases the
            fast check refuses.
    """
    name: str
    kind: Optional[str]
    file: Optional[str]
    fast: bool = True
    trains: bool = False


def _image(image_id, file_name, width=640, height=480) -> dict:
    return dict(id=image_id, file_name=file_name, width=width, height=height)


def _ann(ann_id, image_id, bbox, category_id=1, iscrowd=0) -> dict:
    area = bbox[2] * bbox[3] if all(
        isinstance(v, (int, float)) for v in bbox) else 1
    return dict(id=ann_id, image_id=image_id, category_id=category_id,
                bbox=bbox, area=area, iscrowd=iscrowd)


def _write_images(images: Path, bccd_images: Path) -> None:
    """The image files of the corpus, from real BCCD images."""
    images.mkdir()
    first = bccd_images / SOURCE_IMAGES[0]
    shutil.copy(first, images / 'clean.jpg')
    shutil.copy(bccd_images / SOURCE_IMAGES[1], images / 'clean2.jpg')
    data = first.read_bytes()
    (images / 'zero.jpg').write_bytes(b'')
    (images / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    (images / 'not_image.jpg').write_bytes(b'this is not an image\n' * 20)
    bgr = cv2.imread(str(first))
    cv2.imwrite(str(images / 'gray.jpg'), cv2.cvtColor(bgr,
                                                       cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(images / 'depth16.png'),
                cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    rgb = Image.open(first).convert('RGB')
    rgb.convert('RGBA').save(images / 'rgba.png')
    rgb.convert('CMYK').save(images / 'cmyk.jpg')
    exif = Image.Exif()
    exif[0x0112] = EXIF_ROTATE_90
    rgb.save(images / 'exif.jpg', exif=exif)
    rgb.resize((1, 1)).save(images / 'tiny.png')
    cv2.imwrite(str(images / 'huge.jpg'), cv2.resize(bgr, (5000, 3000)),
                [cv2.IMWRITE_JPEG_QUALITY, 60])


def _cases() -> Dict[str, tuple]:
    """name -> (Case, images, annotations, categories or None)."""
    box = [100, 100, 80, 60]

    def one(name):  # one 640x480 image with one box
        return [_image(1, name)], [_ann(1, 1, box)]

    grid = [[10 + 25 * (i % 25), 10 + 18 * (i // 25), 20, 15]
            for i in range(500)]
    return {
        # errors
        'zero_byte': (Case('zero_byte', 'unreadable_image', 'zero.jpg',
                           trains=True), *one('zero.jpg')),
        'truncated': (Case('truncated', 'unreadable_image', 'truncated.jpg',
                           fast=False, trains=True), *one('truncated.jpg')),
        'not_an_image': (Case('not_an_image', 'unreadable_image',
                              'not_image.jpg', fast=False, trains=True),
                         *one('not_image.jpg')),
        'missing_file': (Case('missing_file', 'missing_file', 'nowhere.jpg'),
                         *one('nowhere.jpg')),
        'nan_box': (Case('nan_box', 'invalid_box', 'clean.jpg'),
                    [_image(1, 'clean.jpg')],
                    [_ann(1, 1, [math.nan, 10, 50, 50])]),
        'string_box': (Case('string_box', 'invalid_box', 'clean.jpg'),
                       [_image(1, 'clean.jpg')],
                       [_ann(1, 1, ['10', '10', '50', '50'])]),
        'unknown_category': (Case('unknown_category', 'unknown_category',
                                  'clean.jpg'), [_image(1, 'clean.jpg')],
                             [_ann(1, 1, box, category_id=9)]),
        'duplicate_image_id': (Case('duplicate_image_id',
                                    'duplicate_image_id', 'clean2.jpg'),
                               [_image(1, 'clean.jpg'),
                                _image(1, 'clean2.jpg')],
                               [_ann(1, 1, box)]),
        'duplicate_annotation_id': (Case('duplicate_annotation_id',
                                         'duplicate_annotation_id',
                                         'clean.jpg'),
                                    [_image(1, 'clean.jpg')],
                                    [_ann(1, 1, box), _ann(1, 1, box)]),
        'orphan_annotation': (Case('orphan_annotation', 'orphan_annotation',
                                   None), [_image(1, 'clean.jpg')],
                              [_ann(1, 1, box), _ann(2, 99, box)]),
        'missing_annotations_key': (Case('missing_annotations_key',
                                         'missing_key',
                                         'missing_annotations_key.json'),
                                    [_image(1, 'clean.jpg')], None),
        'malformed_json': (Case('malformed_json', 'malformed_json',
                                'malformed_json.json'), None, None),
        'empty_dataset': (Case('empty_dataset', 'no_images',
                               'empty_dataset.json'), [], []),
        'missing_annotation_file': (Case('missing_annotation_file',
                                         'missing_annotation_file',
                                         'missing_annotation_file.json'),
                                    None, None),
        # warnings: training copes
        'grayscale': (Case('grayscale', 'non_rgb_image', 'gray.jpg',
                           trains=True), *one('gray.jpg')),
        'rgba_png': (Case('rgba_png', 'non_rgb_image', 'rgba.png',
                          trains=True), *one('rgba.png')),
        'png_16bit': (Case('png_16bit', 'non_rgb_image', 'depth16.png',
                           trains=True), *one('depth16.png')),
        'cmyk_jpeg': (Case('cmyk_jpeg', 'non_rgb_image', 'cmyk.jpg',
                           trains=True), *one('cmyk.jpg')),
        'exif_rotated': (Case('exif_rotated', 'exif_orientation', 'exif.jpg',
                              fast=False, trains=True), *one('exif.jpg')),
        'one_pixel': (Case('one_pixel', 'tiny_image', 'tiny.png', fast=False,
                           trains=True), [_image(1, 'tiny.png', 1, 1)],
                      [_ann(1, 1, [0, 0, 1, 1])]),
        'huge_image': (Case('huge_image', None, 'huge.jpg', trains=True),
                       [_image(1, 'huge.jpg', 5000, 3000)],
                       [_ann(1, 1, [1000, 800, 600, 500])]),
        'no_boxes': (Case('no_boxes', 'image_without_boxes', 'clean2.jpg',
                          trains=True), [_image(1, 'clean2.jpg')], []),
        'boxes_outside': (Case('boxes_outside', 'box_partly_outside',
                               'clean.jpg', trains=True),
                          [_image(1, 'clean.jpg')],
                          [_ann(1, 1, [600, 400, 100, 100]),
                           _ann(2, 1, [700, 500, 50, 50]), _ann(3, 1, box)]),
        'zero_size_box': (Case('zero_size_box', 'degenerate_box',
                               'clean.jpg', trains=True),
                          [_image(1, 'clean.jpg')],
                          [_ann(1, 1, [10, 10, 0, 20]), _ann(2, 1, box)]),
        'negative_size_box': (Case('negative_size_box', 'degenerate_box',
                                   'clean2.jpg', trains=True),
                              [_image(1, 'clean2.jpg')],
                              [_ann(1, 1, [10, 10, -5, 20]),
                               _ann(2, 1, box)]),
        'size_mismatch': (Case('size_mismatch', 'size_mismatch', 'clean.jpg',
                               fast=False, trains=True),
                          [_image(1, 'clean.jpg', 800, 600)],
                          [_ann(1, 1, [700, 500, 90, 90]), _ann(2, 1, box)]),
        'crowd_only': (Case('crowd_only', 'crowd_only_image', 'clean2.jpg',
                            trains=True), [_image(1, 'clean2.jpg')],
                       [_ann(1, 1, box, iscrowd=1)]),
        'many_boxes': (Case('many_boxes', 'more_objects_than_queries',
                            'clean.jpg', trains=True),
                       [_image(1, 'clean.jpg')],
                       [_ann(i + 1, 1, b, category_id=1 + i % 3)
                        for i, b in enumerate(grid)]),
        'foreign_category': (Case('foreign_category',
                                  'category_not_in_classes',
                                  'foreign_category.json', trains=True),
                             [_image(1, 'clean2.jpg')],
                             [_ann(1, 1, box, category_id=4),
                              _ann(2, 1, box)],
                             CATEGORIES + [dict(id=4, name='Other')]),
    }


def build_corpus(root: Path, bccd_images: Path) -> List[Case]:
    """Write the images, one annotation file per case, and ``mixed.json``:
    every case marked ``trains`` in one dataset (ids renumbered).

    Returns:
        list[Case]: the cases (at least 25).
    """
    _write_images(root / 'images', bccd_images)
    (root / 'cases').mkdir()
    cases = []
    mixed = dict(images=[], annotations=[], categories=CATEGORIES + [
        dict(id=4, name='Other')])
    for name, (case, images, annotations, *categories) in _cases().items():
        cases.append(case)
        path = root / 'cases' / f'{name}.json'
        if name == 'malformed_json':
            path.write_text('{"images": [{"id": 1, "file_name": ')
        elif name != 'missing_annotation_file':
            data = dict(images=images, categories=(categories or
                                                   [CATEGORIES])[0])
            if annotations is not None:
                data['annotations'] = annotations
            path.write_text(json.dumps(data))
        if case.trains:
            offset = len(mixed['images'])
            mixed['images'] += [dict(i, id=i['id'] + offset) for i in images]
            mixed['annotations'] += [
                dict(a, id=len(mixed['annotations']) + k + 1,
                     image_id=a['image_id'] + offset)
                for k, a in enumerate(annotations)]
    (root / 'mixed.json').write_text(json.dumps(mixed))
    return cases


def file_hashes(root: Path) -> Dict[str, str]:
    """SHA-256 of every file below ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes())
            .hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}


def tiny_config(root: Path, ann_file: Path) -> Config:
    """The BCCD demo config on ``ann_file`` over ``root/images``, shrunk:
    MobileNetV2 without pretrained weights, one encoder and one decoder
    layer, 128x96 images, batch 9, no workers, no validation or test, no
    checkpoints; work dir ``root/../work_dir``."""
    cfg = Config.fromfile(BCCD_CONFIG)
    model = cfg.model
    model.backbone.init_cfg = None
    model.transformer.encoder.num_layers = 1
    model.transformer.decoder.num_layers = 1
    model.transformer.num_queries = NUM_QUERIES
    dataset = cfg.train_dataloader.dataset
    dataset.update(ann_file=str(ann_file), data_root='',
                   data_prefix=dict(img=str(root / 'images') + '/'))
    dataset.pipeline[3].scale = (128, 96)
    cfg.train_dataloader.update(batch_size=9, num_workers=0,
                                persistent_workers=False)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = str(root.parent / 'work_dir')  # outside the corpus
    return copy.deepcopy(cfg)
