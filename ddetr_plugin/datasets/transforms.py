"""Training transforms for dirty data: an image that cannot be read skips
its sample instead of killing the run, and boxes are clipped to the image
with degenerate ones dropped, each counted and named in the log.

Both are registered in our ``TRANSFORMS`` scope and used by the train
pipelines of ``configs/_base_/datasets/``. A transform returning None makes
mmengine's ``BaseDataset.__getitem__`` draw another sample (up to its
``max_refetch``); test-mode datasets raise on None instead, so skipping is
opt-in (``skip_unreadable=True``, the train pipelines only).

The loader is registered in our scope under mmcv's name
``LoadImageFromFile`` (as mmdet registers its ``LoadAnnotations`` under
mmcv's): mmdet's own tools recognise a pipeline's loading steps by that
name, looked up in mmdet's registry (``mmdet.datasets.get_loading_pipeline``,
used by ``tools/analysis_tools/analyze_results.py``, keeps the steps whose
class *is* mmcv's ``LoadImageFromFile`` or mmdet's ``LoadAnnotations``), and
the step they keep is built in our scope, with its arguments, as ours.
Without ``skip_unreadable`` it is exactly mmcv's loader.
"""
import logging
from typing import Optional

import torch
from mmcv.transforms import BaseTransform
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine.logging import print_log

from ddetr_plugin.registry import TRANSFORMS


class UnreadableImagesError(RuntimeError):
    """More images failed to load than the configured fraction."""


@TRANSFORMS.register_module()
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile``, optionally skipping unreadable images.

    With ``skip_unreadable=False`` (the default, and what the test
    pipelines use) it is mmcv's loader: an unreadable image raises. With
    ``skip_unreadable=True`` (the train pipelines of our dataset configs) a
    missing, empty, truncated or non-image file gives one warning naming
    the file and the running count, and None, so the dataset draws another
    sample. Counts are per process (each dataloader worker holds its own
    copy of the pipeline) and over distinct files; once more than
    ``max_failed_fraction`` of the images this process has read failed, the
    run stops with :class:`UnreadableImagesError`. The fraction is taken
    over at least ``min_images`` images, so the first failure of a run never
    stops it on its own.

    Args:
        skip_unreadable (bool): skip (True) or raise (False, mmcv's
            behaviour) on an unreadable image. Default False.
        max_failed_fraction (float): failed / read images that stops the
            run. Default 0.01.
        min_images (int): the denominator's floor. Default 100.
        **kwargs: mmcv's ``LoadImageFromFile`` arguments (``color_type``,
            ``imdecode_backend``, ``backend_args``, ...).

    Raises:
        ValueError: ``max_failed_fraction`` outside [0, 1].
    """

    def __init__(self, skip_unreadable: bool = False,
                 max_failed_fraction: float = 0.01,
                 min_images: int = 100, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 <= max_failed_fraction <= 1:
            raise ValueError('max_failed_fraction must be in [0, 1], got '
                             f'{max_failed_fraction}')
        self.skip_unreadable = skip_unreadable
        self.max_failed_fraction = max_failed_fraction
        self.min_images = min_images
        self.read_files = set()
        self.failed_files = set()

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']`` as mmcv does, or skip it.

        Args:
            results (dict): with ``img_path``.

        Returns:
            dict | None: ``results`` with ``img`` (H, W, 3) uint8 BGR,
            ``img_shape`` and ``ori_shape``; None when the image could not
            be read and ``skip_unreadable`` is set.

        Raises:
            Exception: mmcv's error for an unreadable image, without
                ``skip_unreadable``.
            UnreadableImagesError: too many failures (see the class).
        """
        if not self.skip_unreadable:
            return super().transform(results)
        path = results['img_path']
        self.read_files.add(path)
        try:
            loaded = super().transform(results)
            reason = 'the loader returned no image'
        except Exception as error:  # any decoder failure skips the sample
            loaded, reason = None, f'{type(error).__name__}: {error}'
        if loaded is not None:
            return loaded
        if path not in self.failed_files:
            self.failed_files.add(path)
            print_log(
                f'skipped unreadable image {path} ({reason}); '
                f'{len(self.failed_files)} of {len(self.read_files)} images '
                'read by this process failed',
                logger='current',
                level=logging.WARNING)
        limit = self.max_failed_fraction * max(len(self.read_files),
                                               self.min_images)
        if len(self.failed_files) > limit:
            raise UnreadableImagesError(
                f'{len(self.failed_files)} of {len(self.read_files)} images '
                f'could not be read, more than max_failed_fraction='
                f'{self.max_failed_fraction} (e.g. '
                f'{sorted(self.failed_files)[:5]}); run '
                'tools/analysis_tools/check_dataset.py on the config')
        return None

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f', skip_unreadable={self.skip_unreadable}, '
                f'max_failed_fraction={self.max_failed_fraction}, '
                f'min_images={self.min_images})')


@TRANSFORMS.register_module()
class LoadImageFromFileOrSkip(LoadImageFromFile):
    """:class:`LoadImageFromFile` with ``skip_unreadable=True``, under the
    name earlier configs used.

    mmdet's ``analyze_results.py`` does not recognise this name as a
    loading step (see the module docstring); new configs write
    ``dict(type='LoadImageFromFile', skip_unreadable=True)``.

    Args:
        **kwargs: :class:`LoadImageFromFile` arguments.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault('skip_unreadable', True)
        super().__init__(**kwargs)


@TRANSFORMS.register_module()
class ClipAndDropBoxes(BaseTransform):
    """Clip the ground-truth boxes to the image, drop the degenerate ones.

    Boxes with a non-finite coordinate, or narrower or lower than
    ``min_size`` pixels after clipping, are removed together with their
    labels and ignore flags. The first time an image loses or clips a box,
    one warning names the file and the counts. Place it last before
    ``PackDetInputs`` so that it sees the boxes the model trains on.

    Args:
        min_size (float): smallest kept width and height, in pixels of the
            transformed image. Default 1.

    Required keys: ``img_shape`` (h, w), ``gt_bboxes`` (mmdet
    ``HorizontalBoxes``, N x 4 pixel xyxy). Modified keys: ``gt_bboxes``,
    ``gt_bboxes_labels``, ``gt_ignore_flags``.
    """

    def __init__(self, min_size: float = 1.) -> None:
        self.min_size = min_size
        self.reported_files = set()

    def transform(self, results: dict) -> dict:
        """Clip and filter ``results['gt_bboxes']`` in place.

        Returns:
            dict: ``results``, boxes clipped and filtered.
        """
        boxes = results.get('gt_bboxes')
        if boxes is None or len(boxes) == 0:
            return results
        finite = torch.isfinite(boxes.tensor).all(dim=1)
        before = boxes.tensor.clone()
        boxes.clip_(results['img_shape'])
        keep = finite & (boxes.widths >= self.min_size) & (
            boxes.heights >= self.min_size)
        clipped = int(((boxes.tensor != before).any(dim=1) & keep).sum())
        dropped = int((~keep).sum())
        for key in ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags'):
            if key in results:
                results[key] = results[key][keep.numpy()
                                            if key != 'gt_bboxes' else keep]
        path = results.get('img_path')
        if (clipped or dropped) and path not in self.reported_files:
            self.reported_files.add(path)
            print_log(
                f'{path}: {clipped} box(es) clipped to the '
                f'{results["img_shape"][1]}x{results["img_shape"][0]} image, '
                f'{dropped} dropped (non-finite or under {self.min_size} px)',
                logger='current',
                level=logging.WARNING)
        return results
