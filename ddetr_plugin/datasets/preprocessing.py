"""Test-time data of a detector config, as both inference backends
(:mod:`ddetr_plugin.apis.inference`) and the ONNX exporter
(:mod:`ddetr_plugin.deployment.onnx_export`) use it: an image file read as
mmcv reads it (:func:`read_image`); mmdet's ``Resize`` and
``DetDataPreprocessor`` built from the config
(:func:`preprocessing_from_config`, :class:`Preprocessor`); the network's
boxes back in pixels of the original image (:func:`rescale_boxes`); the
class names of the outputs (:func:`detector_classes`).

The preprocessing is json-serialisable, so the exporter stores it in the
``.onnx`` file and the onnxruntime backend rebuilds the same
:class:`Preprocessor` from it.
"""
import json
from pathlib import Path
from typing import Tuple, Union

import mmcv
import numpy as np
import torch
from mmdet.structures import DetDataSample


def read_image(path: Union[str, Path]) -> np.ndarray:
    """An image file as (h, w, 3) uint8 BGR (``mmcv.imread``).

    Raises:
        ValueError: the file is not a decodable image (corrupt, truncated,
            or another kind of file).
    """
    image = mmcv.imread(str(path))
    if image is None:
        raise ValueError(f'cannot decode {path} as an image (corrupt or not '
                         'an image)')
    return image


def _tuples(value):
    """json lists back to the tuples mmcv's transforms expect."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def preprocessing_from_config(cfg) -> dict:
    """The test-time preprocessing of a model config, json-serialisable.

    Args:
        cfg (mmengine.Config): a detector config with
            ``test_dataloader.dataset.pipeline`` (or ``test_pipeline``)
            holding one ``Resize`` and ``model.data_preprocessor``.

    Returns:
        dict: ``resize`` (the ``Resize`` transform config, e.g.
        ``scale=(512, 384)`` (w, h), ``keep_ratio=True``) and
        ``data_preprocessor`` (the ``DetDataPreprocessor`` config: ``mean``,
        ``std``, ``bgr_to_rgb``, ``pad_size_divisor``), types prefixed
        ``mmdet.``.

    Raises:
        ValueError: no ``Resize`` in the test pipeline, or no
            ``model.data_preprocessor``.
    """
    pipeline = cfg.get('test_pipeline') or \
        cfg.test_dataloader.dataset.pipeline
    resizes = [t for t in pipeline if t['type'].split('.')[-1] == 'Resize']
    if len(resizes) != 1 or 'data_preprocessor' not in cfg.model:
        raise ValueError('the config needs exactly one Resize in its test '
                         'pipeline and a model.data_preprocessor, got '
                         f'{[t["type"] for t in pipeline]}')
    resize = dict(resizes[0], type='mmdet.Resize')
    data_preprocessor = dict(cfg.model.data_preprocessor,
                             type='mmdet.DetDataPreprocessor')
    return json.loads(json.dumps(dict(resize=resize,
                                      data_preprocessor=data_preprocessor)))


class Preprocessor:
    """mmdet's test-time ``Resize`` and ``DetDataPreprocessor``, as both
    backends run them.

    Args:
        preprocessing (dict): see :func:`preprocessing_from_config`.
    """

    def __init__(self, preprocessing: dict) -> None:
        from mmdet.registry import MODELS, TRANSFORMS
        self.resize = TRANSFORMS.build(_tuples(preprocessing['resize']))
        self.data_preprocessor = MODELS.build(
            _tuples(preprocessing['data_preprocessor'])).eval()

    def __call__(self, image: np.ndarray) -> Tuple[torch.Tensor,
                                                   DetDataSample]:
        """Resize, normalise and pad one image.

        Args:
            image (np.ndarray): (h, w, 3) uint8, BGR (as ``mmcv.imread``).

        Returns:
            tuple: ``inputs`` (1, 3, H, W) float32 normalised, padded right
            and bottom to ``pad_size_divisor``, and its ``DetDataSample``
            with ``ori_shape``, ``img_shape`` (resized, (h, w) pixels),
            ``scale_factor`` (w_scale, h_scale), ``batch_input_shape``.
        """
        resized = self.resize(dict(img=image, ori_shape=image.shape[:2]))
        sample = DetDataSample(
            metainfo=dict(
                ori_shape=image.shape[:2],
                img_shape=resized['img_shape'],
                scale_factor=resized['scale_factor']))
        img = torch.from_numpy(
            np.ascontiguousarray(resized['img'].transpose(2, 0, 1)))
        with torch.no_grad():
            data = self.data_preprocessor(
                dict(inputs=[img], data_samples=[sample]), training=False)
        return data['inputs'], data['data_samples'][0]


def rescale_boxes(boxes: torch.Tensor, sample: DetDataSample
                  ) -> torch.Tensor:
    """Boxes from network-input pixels to original-image pixels.

    Clipped to the resized image (``img_shape``), then divided by
    ``scale_factor``, as mmdet's heads do with ``rescale=True``.

    Args:
        boxes (Tensor): (K, 4) xyxy in pixels of the network input.
        sample (DetDataSample): with ``img_shape`` and ``scale_factor``.

    Returns:
        Tensor: (K, 4) xyxy in pixels of the original image.
    """
    img_h, img_w = sample.img_shape
    limits = boxes.new_tensor([img_w, img_h, img_w, img_h])
    boxes = torch.minimum(boxes.clamp(min=0), limits)
    return boxes / boxes.new_tensor(sample.scale_factor).repeat(2)


def detector_classes(model) -> Tuple[str, ...]:
    """The class names of a detector built by mmdet's ``init_detector``.

    ``model.dataset_meta['classes']`` (the checkpoint's
    ``meta['dataset_meta']``), except where ``init_detector`` fell back to
    COCO's names because the checkpoint has none: then the classes of the
    config's test dataset (``test_dataloader.dataset.metainfo.classes``),
    when it lists others.

    Args:
        model: the detector, with ``dataset_meta`` and ``cfg``.

    Returns:
        tuple[str]: one name per label index.
    """
    from mmdet.evaluation import get_classes
    classes = tuple(model.dataset_meta['classes'])
    cfg_classes = model.cfg.test_dataloader.dataset.get(
        'metainfo', {}).get('classes')
    if cfg_classes and classes == tuple(get_classes('coco')) and \
            tuple(cfg_classes) != classes:
        return tuple(cfg_classes)
    return classes
