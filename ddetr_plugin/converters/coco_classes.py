"""COCO class lists of released Deformable DETR checkpoints.

The original repository and Hugging Face's ``SenseTime/deformable-detr*``
models predict ``num_classes=91`` outputs: output ``c`` is COCO category id
``c`` (the ids of the 2017 annotation files, 1-90 with gaps; 0 and the 10
unused ids are never positive). mmdet (and so its converted checkpoints)
predicts the 80 categories contiguously, in id order.
"""
from typing import Optional, Tuple

from mmdet.datasets import CocoDataset

#: COCO category id of each of mmdet's 80 classes (``CocoDataset`` order)
COCO_CATEGORY_IDS: Tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42,
    43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90)
#: the 80 class names, as mmdet's ``CocoDataset``
COCO_80_CLASSES: Tuple[str, ...] = tuple(CocoDataset.METAINFO['classes'])
#: the unused-id placeholder of :data:`COCO_91_CLASSES` (HF's ``id2label``)
UNUSED_ID = 'N/A'


def _coco_91_classes() -> Tuple[str, ...]:
    names = [UNUSED_ID] * 91
    for category_id, name in zip(COCO_CATEGORY_IDS, COCO_80_CLASSES):
        names[category_id] = name
    return tuple(names)


#: output ``c`` of a 91-class checkpoint: the name of COCO category id ``c``
COCO_91_CLASSES: Tuple[str, ...] = _coco_91_classes()


def coco_classes_for(num_classes: int) -> Optional[Tuple[str, ...]]:
    """The COCO class list of a checkpoint with ``num_classes`` outputs and
    no class names: :data:`COCO_91_CLASSES` for 91, :data:`COCO_80_CLASSES`
    for 80, None otherwise."""
    return {91: COCO_91_CLASSES, 80: COCO_80_CLASSES}.get(num_classes)
