"""ONNX export of a whole Deformable DETR: normalised image in, top-k
``scores``, ``labels`` and ``boxes`` out, in one graph.

The graph is made by PyTorch's ``torch.export``-based exporter
(``torch.onnx.export(dynamo=True)``, which needs ``onnxscript``). While it
traces, :func:`ddetr_plugin.ops.multi_scale_deformable_attn` runs its
reference decomposition (bilinear ``GridSample``, opset >= 16) instead of the
compiled operator, which ONNX does not know; PyTorch keeps using the compiled
operator everywhere else. The model's preprocessing and class names are
stored in the file's metadata (:data:`METADATA_KEY`), so the ``.onnx`` file
is all :class:`ddetr_plugin.apis.inference.OnnxRuntimeDetector` needs.
Matches mmdeploy's DETR-family export (whole input treated as image, no
padding mask) without mmdeploy's op rewrites.
"""
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ddetr_plugin.datasets.preprocessing import (detector_classes,
                                                 preprocessing_from_config)
from .symbolic_shapes import SymbolicSpatialShapes

# metadata_props key holding the preprocessing and class names (json)
METADATA_KEY = 'ddetr_plugin'
INPUT_NAMES = ['image']
OUTPUT_NAMES = ['scores', 'labels', 'boxes']
# the exporter writes opset 18 natively; older opsets fail onnx.checker
MIN_OPSET = 18
ONNX_PACKAGES = ('onnx', 'onnxscript', 'onnxruntime')


def require_onnx_packages() -> None:
    """Import ``onnx``, ``onnxscript`` and ``onnxruntime`` or say how to
    install them.

    Raises:
        ImportError: one is missing; the message names it and the pinned
            install command.
    """
    missing = []
    for name in ONNX_PACKAGES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f'ONNX export and the onnxruntime backend need {missing}, '
            'optional dependencies pinned in requirements.txt: run `make '
            'install`, or `pip install -c requirements.txt onnx onnxscript '
            'onnxruntime`')


class DetectorExportModule(nn.Module):
    """A Deformable DETR as one function of the normalised image.

    The whole input is the image (no padding mask: every pixel is valid),
    as in mmdeploy's DETR export; batch size is fixed by the export.

    Args:
        detector (DeformableDETR): the detector, in eval mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Detect.

        Args:
            image (Tensor): (B, 3, H, W) float32, normalised as the model's
                data preprocessor does (``(pixel - mean) / std``, RGB or BGR
                as it was trained).

        Returns:
            tuple: ``scores`` (B, K) float32 sigmoid probabilities,
            ``labels`` (B, K) int64 and ``boxes`` (B, K, 4) float32 xyxy in
            pixels of ``image``, clipped to it, ``K = test_cfg.max_per_img``,
            highest score first.
        """
        height, width = image.shape[-2:]
        # what forward_transformer and the head read of a DetDataSample;
        # real DetDataSamples deep-copy their metainfo, which torch.export
        # cannot do with symbolic sizes
        samples = [
            SimpleNamespace(
                img_shape=(height, width),
                batch_input_shape=(height, width),
                metainfo=dict(img_shape=(height, width)))
            for _ in range(image.shape[0])
        ]
        outputs = self.detector.forward_transformer(
            self.detector.extract_feat(image), samples)
        results = self.detector.bbox_head.predict(
            outputs['hidden_states'], outputs['references'], samples,
            rescale=False)
        return (torch.stack([r.scores for r in results]),
                torch.stack([r.labels for r in results]),
                torch.stack([r.bboxes for r in results]))


def export_onnx(detector: nn.Module,
                out_file: Union[str, Path],
                input_shape: Sequence[int],
                metadata: dict,
                opset: int = MIN_OPSET,
                dynamic: bool = False,
                batch_size: int = 1) -> Path:
    """Export ``detector`` to an ONNX file and check it with
    ``onnx.checker``.

    Args:
        detector (DeformableDETR): the detector (put in eval mode).
        out_file (str | Path): the ``.onnx`` file written (weights inside).
        input_shape (Sequence[int]): ``(H, W)`` of the traced input in
            pixels; with ``dynamic`` other sizes work too.
        metadata (dict): json-serialisable, stored under
            :data:`METADATA_KEY` (preprocessing, classes).
        opset (int): ONNX opset, >= :data:`MIN_OPSET`.
        dynamic (bool): height and width of ``image`` are free (``H`` and
            ``W`` symbols); otherwise the graph takes ``input_shape`` only.
        batch_size (int): the fixed batch size B of the graph.

    Returns:
        Path: ``out_file``.

    Raises:
        ImportError: onnx, onnxscript or onnxruntime is missing (see
            :func:`require_onnx_packages`).
        ValueError: ``opset`` below :data:`MIN_OPSET`, an ``input_shape``
            that is not two positive ints, or a ``dynamic`` export whose
            height or width came out fixed.
    """
    require_onnx_packages()
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f'opset {opset} is not supported: torch.onnx '
                         f'writes opset >= {MIN_OPSET} (GridSample, the MSDA '
                         'decomposition, needs >= 16)')
    if len(input_shape) != 2 or min(input_shape) <= 0:
        raise ValueError('input_shape must be (H, W) in pixels, got '
                         f'{tuple(input_shape)}')
    module = DetectorExportModule(detector.eval()).eval()
    param = next(detector.parameters())
    image = torch.zeros((batch_size, 3, *input_shape), dtype=param.dtype,
                        device=param.device)
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = {
            'image': {
                2: torch.export.Dim.AUTO,
                3: torch.export.Dim.AUTO
            }
        }
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), SymbolicSpatialShapes():
        program = torch.onnx.export(
            module, (image, ),
            dynamo=True,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            # onnxscript's optimiser drops a Clip bound of inverse_sigmoid
            # (graph rejected by onnx.checker); the graph is fine without
            optimize=False,
            external_data=False)
    model = program.model_proto
    if dynamic:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        fixed = [i for i in (2, 3) if dims[i].HasField('dim_value')]
        if fixed:
            raise ValueError(f'--dynamic export came out with fixed image '
                             f'dims {fixed} ({list(dims)}); some operation '
                             'specialised the input size')
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata)
    onnx.save(model, str(out_file))
    onnx.checker.check_model(str(out_file), full_check=True)
    return out_file


def export_checkpoint(config: str,
                      checkpoint: str,
                      out_file: Union[str, Path],
                      input_shape: Optional[Sequence[int]] = None,
                      opset: int = MIN_OPSET,
                      dynamic: bool = False) -> Path:
    """Export a config + checkpoint with its preprocessing and class names.

    Args:
        config (str): model config file.
        checkpoint (str): checkpoint file.
        out_file (str | Path): the ``.onnx`` file written.
        input_shape (Sequence[int], optional): ``(H, W)`` pixels of the
            traced input; default: the test ``Resize`` scale, padded to the
            data preprocessor's ``pad_size_divisor`` (512x384 BCCD images:
            ``(384, 512)``).
        opset (int): ONNX opset, >= :data:`MIN_OPSET`.
        dynamic (bool): free height and width.

    Returns:
        Path: ``out_file``.

    Raises:
        ImportError: onnx, onnxscript or onnxruntime is missing.
        FileNotFoundError: a missing config or checkpoint.
        ValueError: see :func:`export_onnx`.
    """
    from mmdet.apis import init_detector
    require_onnx_packages()
    for path in (config, checkpoint):
        if not Path(path).is_file():
            raise FileNotFoundError(f'model file not found: {path}')
    model = init_detector(config, checkpoint, device='cpu')
    preprocessing = preprocessing_from_config(model.cfg)
    if input_shape is None:
        width, height = preprocessing['resize']['scale']
        divisor = preprocessing['data_preprocessor'].get(
            'pad_size_divisor', 1)
        input_shape = [-(-size // divisor) * divisor
                       for size in (height, width)]
    return export_onnx(
        model,
        out_file,
        input_shape,
        metadata=dict(
            classes=list(detector_classes(model)),
            preprocessing=preprocessing),
        opset=opset,
        dynamic=dynamic)
