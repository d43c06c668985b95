"""Where the deformable attention looks: the paper's Figure 6 (Zhu et al.,
arXiv 2010.04159, Sec. 5.3, "visualization of multi-scale deformable
attention").

:func:`capture_sampling_points` runs a detector once with forward hooks on
its :class:`MultiScaleDeformableAttention` modules, which recompute each
module's ``sampling_locations`` and ``attention_weights`` with the module's
own :meth:`~MultiScaleDeformableAttention.sampling_points` (the outputs are
unchanged). :func:`level_points_to_image` maps those normalised level-map
locations to pixels of the original image, undoing padding (the model's
``valid_ratios``) and resizing (``scale_factor``), the inverse of what the
encoder and decoder do to their reference points. :func:`draw_sampling_points`
draws one panel per feature level plus one with all levels, with mmengine's
``Visualizer``: each point's colour (jet colour map) and area show its
attention weight.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from mmengine.visualization import Visualizer
from torch import Tensor, nn

from ddetr_plugin.datasets.preprocessing import rescale_boxes
from ddetr_plugin.models.layers import MultiScaleDeformableAttention


def level_points_to_image(locations: Tensor, valid_ratios: Tensor,
                          img_shape: Sequence[int],
                          scale_factor: Sequence[float]) -> Tensor:
    """Normalised sampling locations on level maps to original-image pixels.

    A location ``u`` on level ``l`` (0..1 spans the padded map) is
    ``u / valid_ratios[l]`` of the unpadded image (the decoder multiplies
    image-normalised references by ``valid_ratios``), times the resized
    image size ``img_shape``, divided by the resize's ``scale_factor``.

    Args:
        locations (Tensor): (..., L, P, 2) normalised ``(x, y)`` per level.
        valid_ratios (Tensor): (L, 2) unpadded fraction ``(w, h)`` of each
            level map.
        img_shape (Sequence[int]): ``(h, w)`` of the resized image, pixels.
        scale_factor (Sequence[float]): ``(w_scale, h_scale)`` of the resize
            from the original image.

    Returns:
        Tensor: (..., L, P, 2) ``(x, y)`` in pixels of the original image.
    """
    img_h, img_w = img_shape[:2]
    size = locations.new_tensor([img_w / scale_factor[0],
                                 img_h / scale_factor[1]])
    return locations / valid_ratios[:, None, :] * size


class SamplingPointsCapture:
    """The sampling points of every deformable attention module of a
    detector in one forward pass (forward hooks; the outputs are unchanged).

    Use as a context manager around ``model.forward_transformer``; then
    ``records[name]`` holds, for the module called ``name`` (e.g.
    ``transformer.decoder.layers.2.cross_attn``), ``sampling_locations``
    (B, Q, M, L, P, 2) normalised on the padded level maps and
    ``attention_weights`` (B, Q, M, L, P).

    Args:
        model (nn.Module): a ``DeformableDETR``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.records: Dict[str, Dict[str, Tensor]] = {}
        self._handles = []

    def _hook(self, name: str):

        def hook(module, args, kwargs, output):
            query = kwargs['query'] if 'query' in kwargs else args[0]
            if kwargs.get('query_pos') is not None:
                query = query + kwargs['query_pos']
            if not module.batch_first:
                query = query.transpose(0, 1)
            locations, weights = module.sampling_points(
                query, kwargs['reference_points'], kwargs['spatial_shapes'])
            self.records[name] = dict(
                sampling_locations=locations.detach(),
                attention_weights=weights.detach())

        return hook

    def __enter__(self) -> 'SamplingPointsCapture':
        for name, module in self.model.named_modules():
            if isinstance(module, MultiScaleDeformableAttention):
                self._handles.append(
                    module.register_forward_hook(
                        self._hook(name), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def capture_sampling_points(model: nn.Module, inputs: Tensor,
                            sample, topk: int = 5) -> dict:
    """Run the detector on one image and keep what the pictures need.

    Args:
        model (nn.Module): a ``DeformableDETR`` in eval mode.
        inputs (Tensor): (1, 3, H, W) preprocessed (normalised, padded).
        sample (DetDataSample): its sample with ``img_shape``,
            ``batch_input_shape`` and ``scale_factor``.
        topk (int): detections kept (highest scores; (query, class) pairs
            as the head's top-k, no NMS).

    Returns:
        dict: ``sample``, ``records`` (see :class:`SamplingPointsCapture`,
        batch of one), ``valid_ratios`` (L, 2), ``references`` (list of
        ``num_decoder_layers + 1`` image-normalised (Q, 2 or 4)),
        ``spatial_shapes`` (L, 2) int64, and the detections: ``scores``
        (K,), ``labels`` (K,), ``queries`` (K,) query indices, ``boxes``
        (K, 4) xyxy original-image pixels.
    """
    samples = [sample]
    with torch.no_grad(), SamplingPointsCapture(model) as capture:
        feats = model.extract_feat(inputs)
        masks = model.get_mlvl_masks(samples, feats)
        valid_ratios = torch.stack(
            [model.transformer.get_valid_ratio(mask) for mask in masks], 1)
        outputs = model.forward_transformer(feats, samples)
        cls_scores, bbox_preds = model.bbox_head(outputs['hidden_states'],
                                                 outputs['references'])
    # the head's top-k over (query, class) pairs of the last layer
    num_classes = cls_scores.shape[-1]
    scores, indexes = cls_scores[-1, 0].sigmoid().view(-1).topk(topk)
    queries = indexes // num_classes
    boxes = model.bbox_head.bbox_coder.decode(
        bbox_preds[-1, 0, queries], sample.img_shape, clamp=True)
    return dict(
        sample=sample,
        records=capture.records,
        valid_ratios=valid_ratios[0],
        references=[ref[0] for ref in outputs['references']],
        spatial_shapes=torch.as_tensor([f.shape[-2:] for f in feats]),
        scores=scores,
        labels=indexes % num_classes,
        queries=queries,
        boxes=rescale_boxes(boxes, sample))


def draw_sampling_points(image: np.ndarray, points: Tensor, weights: Tensor,
                         marker: Optional[Tuple[float, float]] = None,
                         box: Optional[Tensor] = None,
                         title: str = '') -> np.ndarray:
    """One panel per feature level plus one with all levels, side by side.

    Args:
        image (np.ndarray): (h, w, 3) uint8 RGB, the original image.
        points (Tensor): (M, L, P, 2) ``(x, y)`` pixels of ``image``.
        weights (Tensor): (M, L, P) attention weights (sum to 1 over L, P
            for each head).
        marker (tuple, optional): ``(x, y)`` pixels of the reference point
            (or query pixel), drawn as a white cross.
        box (Tensor, optional): (4,) xyxy pixels, drawn in green.
        title (str): written on every panel, with the level.

    Returns:
        np.ndarray: (h, (L + 1) * w, 3) uint8 RGB.
    """
    num_levels = points.shape[1]
    colormap = colormaps['jet']
    # weights of one head sum to 1 over L * P points: scale to [0, 1]
    strength = weights / weights.max().clamp(min=1e-12)
    panels = []
    visualizer = Visualizer(name=f'sampling_points_{id(image)}')
    for level in [*range(num_levels), None]:
        levels = range(num_levels) if level is None else [level]
        visualizer.set_image(image)
        if box is not None:
            visualizer.draw_bboxes(box[None], edge_colors='lime',
                                   line_widths=2)
        xy = torch.cat([points[:, lvl].reshape(-1, 2) for lvl in levels])
        value = torch.cat([strength[:, lvl].reshape(-1) for lvl in levels])
        order = value.argsort()  # strongest drawn last, on top
        colors = [tuple(int(255 * c) for c in colormap(float(v))[:3])
                  for v in value[order]]
        visualizer.draw_points(
            xy[order].numpy(), colors=colors,
            sizes=(4 + 60 * value[order]).numpy())
        if marker is not None:
            visualizer.draw_points(
                np.array([marker]), colors='white', marker='x', sizes=80)
        name = 'all levels' if level is None else f'level {level}'
        visualizer.draw_texts(f'{title} {name}'.strip(), np.array([4, 4]),
                              colors='white', font_sizes=10,
                              bboxes=dict(facecolor='black', alpha=0.6))
        panels.append(visualizer.get_image())
    return np.concatenate(panels, axis=1)


def _layer_record(captured: dict, stack: str, layer: int
                  ) -> Tuple[int, Dict[str, Tensor]]:
    """``(index, record)`` of layer ``layer`` of ``stack`` ('encoder' or
    'decoder'); raises IndexError naming the number of layers."""
    names = sorted((n for n in captured['records'] if f'.{stack}.' in n),
                   key=lambda n: int(n.split('.')[-2]))
    if not -len(names) <= layer < len(names):
        raise IndexError(f'{stack} layer {layer} does not exist: the '
                         f'{stack} has {len(names)} layers')
    index = range(len(names))[layer]
    return index, captured['records'][names[index]]


def _original_size(sample) -> Tensor:
    """``(w, h)`` of the original image in units of resized pixels."""
    img_h, img_w = sample.img_shape[:2]
    return torch.tensor([img_w / sample.scale_factor[0],
                         img_h / sample.scale_factor[1]])


def decoder_points(captured: dict, layer: int = -1) -> dict:
    """Pixels of decoder layer ``layer``'s cross-attention sampling points.

    Args:
        captured (dict): from :func:`capture_sampling_points`.
        layer (int): decoder layer (Python index, -1 = last).

    Returns:
        dict: ``layer`` (non-negative index), ``points`` (Q, M, L, P, 2)
        and ``reference_points`` (Q, 2) ``(x, y)`` pixels of the original
        image (the reference is the layer's input box centre), and
        ``attention_weights`` (Q, M, L, P).

    Raises:
        IndexError: no decoder layer ``layer``.
    """
    index, record = _layer_record(captured, 'decoder', layer)
    sample = captured['sample']
    points = level_points_to_image(record['sampling_locations'][0],
                                   captured['valid_ratios'],
                                   sample.img_shape, sample.scale_factor)
    reference = captured['references'][index][:, :2] * _original_size(
        sample)
    return dict(layer=index, points=points, reference_points=reference,
                attention_weights=record['attention_weights'][0])


def encoder_points(captured: dict, pixel: Sequence[float],
                   layer: int = -1) -> dict:
    """Pixels of encoder layer ``layer``'s sampling points for the query at
    ``pixel`` (the level-0 feature cell holding it).

    Args:
        captured (dict): from :func:`capture_sampling_points`.
        pixel (Sequence[float]): ``(x, y)`` in pixels of the original image.
        layer (int): encoder layer (Python index, -1 = last).

    Returns:
        dict: ``layer``, ``query`` (token index), ``points`` (M, L, P, 2)
        and ``reference_point`` (2,) original-image pixels (the cell
        centre), ``attention_weights`` (M, L, P).

    Raises:
        IndexError: no encoder layer ``layer``.
        ValueError: ``pixel`` outside the image.
    """
    index, record = _layer_record(captured, 'encoder', layer)
    sample = captured['sample']
    size = _original_size(sample)
    x, y = pixel
    if not (0 <= x < size[0] and 0 <= y < size[1]):
        raise ValueError(f'pixel ({x}, {y}) is outside the image '
                         f'({size[0]:.0f} x {size[1]:.0f})')
    height, width = captured['spatial_shapes'][0].tolist()
    # the unpadded cells of level 0 cover the image
    valid_w, valid_h = (captured['valid_ratios'][0] *
                        torch.tensor([width, height])).round().long().tolist()
    col = min(int(x / size[0] * valid_w), valid_w - 1)
    row = min(int(y / size[1] * valid_h), valid_h - 1)
    query = row * width + col
    points = level_points_to_image(record['sampling_locations'][0, query],
                                   captured['valid_ratios'],
                                   sample.img_shape, sample.scale_factor)
    reference = torch.tensor([(col + 0.5) / valid_w,
                              (row + 0.5) / valid_h]) * size
    return dict(layer=index, query=query, points=points,
                reference_point=reference,
                attention_weights=record['attention_weights'][0, query])


def sampling_point_figures(image: np.ndarray, captured: dict,
                           classes: Sequence[str], layer: int = -1,
                           pixel: Optional[Sequence[float]] = None
                           ) -> Dict[str, np.ndarray]:
    """The pictures of paper Figure 6 for one image.

    Args:
        image (np.ndarray): (h, w, 3) uint8 RGB original image.
        captured (dict): from :func:`capture_sampling_points`.
        classes (Sequence[str]): class names.
        layer (int): decoder (and encoder) layer, Python index.
        pixel (Sequence[float], optional): ``(x, y)`` original-image pixel
            whose encoder query is drawn too.

    Returns:
        dict[str, np.ndarray]: ``det<k>_<class>`` per detection (its box,
        reference point and the decoder layer's cross-attention points of
        every head and level) and, with ``pixel``, ``encoder_x<x>_y<y>``;
        each (h, (L + 1) * w, 3) uint8 RGB, see
        :func:`draw_sampling_points`.

    Raises:
        IndexError: no such layer. ValueError: ``pixel`` outside the image.
    """
    decoder = decoder_points(captured, layer)
    figures = {}
    for k, (query, label, score, box) in enumerate(
            zip(captured['queries'].tolist(), captured['labels'].tolist(),
                captured['scores'].tolist(), captured['boxes'])):
        figures[f'det{k}_{classes[label]}'] = draw_sampling_points(
            image, decoder['points'][query],
            decoder['attention_weights'][query],
            marker=tuple(decoder['reference_points'][query].tolist()),
            box=box,
            title=f'{classes[label]} {score:.2f}, decoder layer '
            f'{decoder["layer"]}')
    if pixel is not None:
        encoder = encoder_points(captured, pixel, layer)
        x, y = (int(v) for v in pixel)
        figures[f'encoder_x{x}_y{y}'] = draw_sampling_points(
            image, encoder['points'], encoder['attention_weights'],
            marker=tuple(encoder['reference_point'].tolist()),
            title=f'pixel ({x}, {y}), encoder layer {encoder["layer"]}')
    return figures
