"""Detection on image files with a PyTorch checkpoint or an exported ONNX
model, written as json files and drawn images (``tools/infer.py``).

Both backends share every step but the network
(:mod:`ddetr_plugin.datasets.preprocessing`): the image is resized by
mmdet's ``Resize`` and normalised and padded by mmdet's
``DetDataPreprocessor``, both built from the model's config (for ONNX, from
the copy of it stored in the file, see
:mod:`ddetr_plugin.deployment.onnx_export`); the network's boxes, in pixels
of the network input, are clipped to the resized image and divided by the
resize's ``scale_factor`` (as mmdet's ``rescale=True``) in
``rescale_boxes``; :func:`result_to_dict` and mmdet's
``DetLocalVisualizer`` write the outputs.

The ONNX graph treats its whole input as image (no padding mask). Where the
resized image is not a multiple of ``pad_size_divisor`` the PyTorch model
masks the padding and the ONNX model does not, so their boxes differ a
little there; BCCD's 640x480 images resize to 512x384 and need no padding.
"""
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import mmcv
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from ddetr_plugin.datasets.preprocessing import (Preprocessor,
                                                 detector_classes,
                                                 preprocessing_from_config,
                                                 read_image, rescale_boxes)
from ddetr_plugin.deployment.onnx_export import (METADATA_KEY,
                                                 require_onnx_packages)
from ddetr_plugin.engine.conv_bn_eval import \
    turn_on_conv_bn_eval_from_config

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')
BACKENDS = ('pytorch', 'onnxruntime')


class PyTorchDetector:
    """A config + checkpoint, run in PyTorch (with the config's
    ``efficient_conv_bn_eval``, see :mod:`ddetr_plugin.engine.conv_bn_eval`).

    Attributes: ``model`` (the detector), ``classes``, ``preprocessing``
    (see :func:`preprocessing_from_config`), ``preprocessor``.

    Args:
        config (str): model config file.
        checkpoint (str): checkpoint file (Runner or plain state_dict).
        device (str): torch device.
    """

    def __init__(self, config: str, checkpoint: str,
                 device: str = 'cpu') -> None:
        from mmdet.apis import init_detector
        self.model = init_detector(config, checkpoint, device=device)
        turn_on_conv_bn_eval_from_config(self.model, self.model.cfg)
        self.classes = detector_classes(self.model)
        self.preprocessing = preprocessing_from_config(self.model.cfg)
        self.preprocessor = Preprocessor(self.preprocessing)

    def __call__(self, inputs: torch.Tensor, sample: DetDataSample
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Detect in one preprocessed image.

        Args:
            inputs (Tensor): (1, 3, H, W) from :class:`Preprocessor`.
            sample (DetDataSample): its sample (``img_shape``,
                ``batch_input_shape``; the padding is masked).

        Returns:
            tuple: ``scores`` (K,), ``labels`` (K,) int64, ``boxes`` (K, 4)
            xyxy in pixels of ``inputs``.
        """
        device = next(self.model.parameters()).device
        with torch.no_grad():
            pred = self.model.predict(
                inputs.to(device), [sample.clone()],
                rescale=False)[0].pred_instances
        return pred.scores.cpu(), pred.labels.cpu(), pred.bboxes.cpu()


class OnnxRuntimeDetector:
    """An exported ``.onnx`` model (``tools/deployment/export_onnx.py``),
    run by onnxruntime's CPU execution provider.

    Attributes: ``session``, ``classes``, ``preprocessing``,
    ``preprocessor``, ``input_shape`` (the graph's ``[B, 3, H, W]``, str
    for free dims).

    Args:
        model_file (str): the ``.onnx`` file; its metadata holds the
            preprocessing and class names.

    Raises:
        ImportError: onnxruntime is missing.
        ValueError: the file has no ``ddetr_plugin`` metadata (not made by
            our exporter).
    """

    def __init__(self, model_file: str) -> None:
        require_onnx_packages()
        import onnxruntime
        self.session = onnxruntime.InferenceSession(
            str(model_file), providers=['CPUExecutionProvider'])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise ValueError(f'{model_file} has no {METADATA_KEY!r} metadata; '
                             'export it with tools/deployment/export_onnx.py')
        metadata = json.loads(metadata[METADATA_KEY])
        self.classes = tuple(metadata['classes'])
        self.preprocessing = metadata['preprocessing']
        self.preprocessor = Preprocessor(self.preprocessing)
        self.input_shape = self.session.get_inputs()[0].shape  # B, 3, H, W

    def __call__(self, inputs: torch.Tensor, sample: DetDataSample
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Detect in one preprocessed image; see
        :meth:`PyTorchDetector.__call__` (here the padding is image).

        Raises:
            ValueError: a static graph exported for another input size.
        """
        fixed = [d for d in self.input_shape[2:] if isinstance(d, int)]
        if fixed and tuple(self.input_shape[2:]) != tuple(inputs.shape[2:]):
            raise ValueError(
                f'the ONNX model takes {self.input_shape[2:]} (H, W) inputs '
                f'but this image becomes {list(inputs.shape[2:])}; export '
                'with --dynamic or --shape matching it')
        scores, labels, boxes = self.session.run(
            None, {'image': inputs.numpy()})
        return (torch.from_numpy(scores[0]), torch.from_numpy(labels[0]),
                torch.from_numpy(boxes[0]))


def build_detector(backend: str, model_files: Sequence[str],
                   device: str = 'cpu'
                   ) -> Union[PyTorchDetector, OnnxRuntimeDetector]:
    """The detector of ``backend``.

    Args:
        backend (str): ``'pytorch'`` (``model_files`` = config,
            checkpoint) or ``'onnxruntime'`` (``model_files`` = the .onnx
            file).
        model_files (Sequence[str]): see ``backend``.
        device (str): torch device of the PyTorch backend.

    Raises:
        FileNotFoundError: a model file is missing.
        ValueError: an unknown backend or the wrong number of files.
    """
    expected = dict(pytorch=2, onnxruntime=1)
    if backend not in expected:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend}')
    if len(model_files) != expected[backend]:
        raise ValueError(f'backend {backend} takes {expected[backend]} '
                         f'model file(s), got {list(model_files)}')
    for path in model_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f'model file not found: {path}')
    if backend == 'pytorch':
        return PyTorchDetector(*model_files, device=device)
    return OnnxRuntimeDetector(*model_files)


def collect_images(path: Union[str, Path]) -> List[Path]:
    """The image files to run on.

    Args:
        path (str | Path): an image file (taken whatever its extension), or
            a folder whose files with an extension in
            :data:`IMAGE_EXTENSIONS` are taken (sorted, not recursive).

    Returns:
        list[Path]: the images.

    Raises:
        FileNotFoundError: ``path`` does not exist, or the folder has no
            image.
    """
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in
                        IMAGE_EXTENSIONS)
        if not images:
            raise FileNotFoundError(
                f'no image ({", ".join(IMAGE_EXTENSIONS)}) in folder {path}')
        return images
    if path.is_file():
        return [path]
    raise FileNotFoundError(f'image or folder not found: {path}')


def result_to_dict(scores: torch.Tensor, labels: torch.Tensor,
                   boxes: torch.Tensor, sample: DetDataSample,
                   image_path: Path, classes: Sequence[str],
                   score_thr: float) -> dict:
    """The json written per image.

    Args:
        scores (Tensor): (K,) scores.
        labels (Tensor): (K,) int64 class indices into ``classes``.
        boxes (Tensor): (K, 4) xyxy in pixels of the original image.
        sample (DetDataSample): with ``ori_shape``.
        image_path (Path): the input image.
        classes (Sequence[str]): class names.
        score_thr (float): detections below this score are left out.

    Returns:
        dict: ``image``, ``width``, ``height``, ``score_thr``, ``classes``,
        ``bboxes_xyxy`` (original-image pixels, 2 decimals), ``scores`` (4
        decimals), ``labels``, ``class_names``; highest score first.
    """
    keep = scores >= score_thr
    order = scores[keep].argsort(descending=True)
    scores, labels, boxes = (scores[keep][order], labels[keep][order],
                             boxes[keep][order])
    height, width = sample.ori_shape[:2]
    label_list = labels.tolist()
    return dict(
        image=str(image_path), width=int(width), height=int(height),
        score_thr=score_thr, classes=list(classes),
        bboxes_xyxy=[[round(v, 2) for v in box] for box in boxes.tolist()],
        scores=[round(s, 4) for s in scores.tolist()],
        labels=label_list, class_names=[classes[i] for i in label_list])


def run_inference(detector: Union[PyTorchDetector, OnnxRuntimeDetector],
                  inputs: Sequence[Union[str, Path]], out_dir: Union[str,
                                                                      Path],
                  score_thr: float = 0.3) -> Tuple[List[dict], Dict[str,
                                                                    str]]:
    """Detect in every image, write ``preds/<stem>.json`` and
    ``vis/<name>``; a file or folder that fails is recorded and skipped.

    Args:
        detector: from :func:`build_detector`.
        inputs (Sequence[str | Path]): image files and folders.
        out_dir (str | Path): output folder (created).
        score_thr (float): in [0, 1]; detections kept and drawn.

    Returns:
        tuple: the json dicts written (see :func:`result_to_dict`), and
        ``{input: error message}`` for every input that failed (missing,
        empty folder, undecodable, or a stem already written by another
        input).
    """
    from mmdet.visualization import DetLocalVisualizer

    out_dir = Path(out_dir)
    (out_dir / 'preds').mkdir(parents=True, exist_ok=True)
    (out_dir / 'vis').mkdir(parents=True, exist_ok=True)
    visualizer = DetLocalVisualizer.get_instance(
        f'ddetr_plugin_infer_{id(detector)}')
    visualizer.dataset_meta = dict(classes=detector.classes)
    records, failures, stems = [], {}, {}
    for item in inputs:
        try:
            images = collect_images(item)
        except FileNotFoundError as err:
            failures[str(item)] = str(err)
            continue
        for image_path in images:
            if image_path.stem in stems:
                failures[str(image_path)] = (
                    f'its outputs would overwrite those of '
                    f'{stems[image_path.stem]} (same file stem)')
                continue
            try:
                image = read_image(image_path)
                inputs_tensor, sample = detector.preprocessor(image)
                scores, labels, boxes = detector(inputs_tensor, sample)
            except (ValueError, OSError) as err:
                failures[str(image_path)] = str(err)
                continue
            stems[image_path.stem] = image_path
            boxes = rescale_boxes(boxes, sample)
            record = result_to_dict(scores, labels, boxes, sample,
                                    image_path, detector.classes, score_thr)
            with open(out_dir / 'preds' / f'{image_path.stem}.json',
                      'w') as f:
                json.dump(record, f)
            sample.pred_instances = InstanceData(
                scores=scores, labels=labels, bboxes=boxes)
            visualizer.add_datasample(
                image_path.name, mmcv.bgr2rgb(image), data_sample=sample,
                draw_gt=False, show=False, pred_score_thr=score_thr,
                out_file=str(out_dir / 'vis' / image_path.name))
            records.append(record)
    return records, failures
