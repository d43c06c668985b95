"""Build-time checks that the parts of a Deformable DETR config fit
together, so that a config mistake is named by its keys when the detector is
built, not met as a shape error deep in the first forward pass.

The transformer itself checks its attention layers' ``num_levels`` against
``num_feature_levels`` (``DeformableDETRTransformer``); these checks need
several parts at once and run in ``DeformableDETR.__init__``. The neck
checks apply to our ``DeformableDETRNeck`` (another neck is not checked).
"""
import warnings
from typing import List, Optional

import torch
from torch import nn

# side of the blank image pushed through the backbone to read its output
# channels: small enough to cost milliseconds, big enough for stride 32
PROBE_SIZE = 64


def neck_levels(neck: nn.Module) -> int:
    """Output levels of a ``DeformableDETRNeck`` (``num_outs``)."""
    return len(neck.input_projs) + len(neck.extra_projs)


def backbone_channels(backbone: nn.Module) -> Optional[List[int]]:
    """Channels of each backbone output, read from one forward pass of a
    blank (1, 3, 64, 64) image in eval mode without gradients (batch-norm
    statistics untouched, the mode restored).

    Returns:
        list[int] | None: channels per output map; None when the backbone
        cannot run on that image (e.g. a fixed input size).
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            outputs = backbone(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
    except Exception:  # a backbone that needs another input size: skip
        return None
    finally:
        backbone.train(was_training)
    return [int(x.shape[1]) for x in outputs]


def check_backbone_neck(backbone_cfg: dict, backbone: nn.Module,
                        neck: nn.Module) -> None:
    """The neck takes exactly the backbone's outputs.

    Args:
        backbone_cfg (dict): the backbone config (named in the message).
        backbone (nn.Module): the built backbone.
        neck (nn.Module): the built ``DeformableDETRNeck``.

    Raises:
        ValueError: the number or the channels of the backbone outputs
            (``backbone.out_indices``) differ from ``neck.in_channels``.
    """
    if not hasattr(neck, 'input_projs'):
        return
    in_channels = [proj.conv.in_channels for proj in neck.input_projs]
    out_indices = backbone_cfg.get('out_indices',
                                   getattr(backbone, 'out_indices', None))
    if out_indices is not None and len(out_indices) != len(in_channels):
        raise ValueError(
            f'backbone.out_indices={tuple(out_indices)} gives '
            f'{len(out_indices)} maps but neck.in_channels={in_channels} '
            f'expects {len(in_channels)}')
    channels = backbone_channels(backbone)
    if channels is not None and channels != in_channels:
        raise ValueError(
            f'backbone ({backbone_cfg.get("type")}, out_indices='
            f'{out_indices}) outputs channels {channels} but '
            f'neck.in_channels={in_channels}')


def check_neck_transformer(neck: nn.Module, transformer: nn.Module) -> None:
    """The neck makes as many levels as the transformer attends to.

    Raises:
        ValueError: ``neck.num_outs`` differs from
            ``transformer.num_feature_levels``.
    """
    if hasattr(neck, 'input_projs') and \
            neck_levels(neck) != transformer.num_feature_levels:
        raise ValueError(
            f'neck.num_outs={neck_levels(neck)} but '
            f'transformer.num_feature_levels='
            f'{transformer.num_feature_levels} (and every attention '
            "layer's num_levels) must be equal")


def check_detections_per_image(num_queries: int, num_classes: int,
                               test_cfg: Optional[dict]) -> None:
    """``test_cfg.max_per_img`` against what the queries can give.

    The head keeps the top ``max_per_img`` (query, class) pairs, so up to
    ``num_queries * num_classes`` detections exist; more fail at the first
    prediction. Fewer queries than ``max_per_img`` works (one query then
    gives several classes, as in mmdet) but is most likely a mistake: a
    warning.

    Raises:
        ValueError: ``max_per_img > num_queries * num_classes``.
    """
    max_per_img = (test_cfg or {}).get('max_per_img')
    if max_per_img is None:
        return
    if max_per_img > num_queries * num_classes:
        raise ValueError(
            f'test_cfg.max_per_img={max_per_img} exceeds '
            f'transformer.num_queries={num_queries} x '
            f'bbox_head.num_classes={num_classes} (query, class) pairs')
    if max_per_img > num_queries:
        warnings.warn(
            f'transformer.num_queries={num_queries} < test_cfg.max_per_img='
            f'{max_per_img}: some queries will each give several classes')
