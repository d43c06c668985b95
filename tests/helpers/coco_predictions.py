"""Detections for COCO evaluations without a model: the ground-truth boxes
of a COCO json (real BCCD annotations, :func:`helpers.tiny_training.
bccd_annotations`), some dropped, the others moved, plus false positives,
with scores, as the ``data_samples`` that mmdet's ``CocoMetric.process``
takes. Their precision-recall curves are neither empty nor perfect, so
tests of the curves compare real, varied numbers. Used by
``tests/test_coco_metric_with_pr_curves.py`` and
``tests/test_pr_curve_hook.py``."""
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def jittered_detections(ann_file: Path, classes: Sequence[str],
                        seed: int = 0, keep: float = 0.85,
                        jitter: float = 0.15,
                        false_positives: int = 3) -> list:
    """One data sample per image of ``ann_file``.

    Args:
        ann_file (Path): COCO json whose categories are named ``classes``.
        classes (Sequence[str]): Class names; a detection's label is the
            index of its category's name here (as mmdet's ``CocoMetric``
            maps labels).
        seed (int): numpy generator seed.
        keep (float): Probability that a ground-truth box is detected.
        jitter (float): Standard deviation of each corner's shift, as a
            fraction of the box's width/height.
        false_positives (int): Random boxes added per image (random class,
            low scores).

    Returns:
        list[dict]: ``img_id``, ``ori_shape`` and ``pred_instances``
        (``bboxes`` x1y1x2y2 float tensor ``(N, 4)``, ``scores`` ``(N,)``,
        ``labels`` int64 ``(N,)``) per image, in the json's image order.
    """
    coco = json.loads(Path(ann_file).read_text())
    names = {cat['id']: cat['name'] for cat in coco['categories']}
    rng = np.random.default_rng(seed)
    samples = []
    for image in coco['images']:
        width, height = image['width'], image['height']
        boxes, scores, labels = [], [], []
        for ann in coco['annotations']:
            if ann['image_id'] != image['id'] or rng.random() > keep:
                continue
            x, y, w, h = ann['bbox']
            shift = rng.normal(0, jitter, 4) * [w, h, w, h]
            boxes.append([x + shift[0], y + shift[1], x + w + shift[2],
                          y + h + shift[3]])
            scores.append(rng.uniform(0.3, 1.0))
            labels.append(classes.index(names[ann['category_id']]))
        for _ in range(false_positives):
            x, y = rng.uniform(0, width - 40), rng.uniform(0, height - 40)
            size = rng.uniform(20, 120, 2)
            boxes.append([x, y, min(x + size[0], width),
                          min(y + size[1], height)])
            scores.append(rng.uniform(0.05, 0.6))
            labels.append(int(rng.integers(len(classes))))
        boxes = np.clip(np.array(boxes, dtype=np.float32).reshape(-1, 4),
                        0, [width, height, width, height])
        samples.append(dict(
            img_id=image['id'], ori_shape=(height, width),
            pred_instances=dict(
                bboxes=torch.from_numpy(boxes),
                scores=torch.tensor(scores, dtype=torch.float32),
                labels=torch.tensor(labels, dtype=torch.int64))))
    return samples
