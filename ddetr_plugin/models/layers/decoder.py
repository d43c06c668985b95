"""The Deformable DETR decoder: query self-attention and multi-scale
deformable cross-attention to the encoder memory, with optional iterative
bounding box refinement (Zhu et al., arXiv 2010.04159, Sec. 4.1
"Deformable Transformer Decoder", Sec. 4.2 and Appendix A.4)."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn.bricks.transformer import FFN, MultiheadAttention
from mmdet.models.layers import inverse_sigmoid
from mmengine.model import BaseModule
from torch import Tensor, nn

from ddetr_plugin.registry import MODELS
from .layer_stack import DeformableDETRLayerStack
from .msda_attention import MultiScaleDeformableAttention


def refine_boxes(deltas: Tensor, reference: Tensor) -> Tensor:
    """Apply predicted deltas to reference points or boxes (Appendix A.3).

    ``sigmoid(deltas + inverse_sigmoid(reference))``; a 2D reference point
    only shifts the centre, the predicted ``(w, h)`` are then absolute.

    Args:
        deltas (Tensor): (..., 4) unactivated ``(cx, cy, w, h)`` deltas.
        reference (Tensor): (..., 2) normalised ``(cx, cy)`` or (..., 4)
            normalised ``(cx, cy, w, h)``, in [0, 1].

    Returns:
        Tensor: (..., 4) normalised ``(cx, cy, w, h)`` boxes in (0, 1).

    Raises:
        ValueError: ``reference`` whose last dim is not 2 or 4.
    """
    if reference.shape[-1] == 4:
        return (deltas + inverse_sigmoid(reference)).sigmoid()
    if reference.shape[-1] == 2:
        return torch.cat((deltas[..., :2] + inverse_sigmoid(reference),
                          deltas[..., 2:]), -1).sigmoid()
    raise ValueError('reference must end in 2 (cx, cy) or 4 (cx, cy, w, h), '
                     f'got shape {tuple(reference.shape)}')


class DeformableDETRTransformerDecoderLayer(BaseModule):
    """One decoder layer: query self-attention, deformable cross-attention to
    the memory, FFN, each followed by LayerNorm (post-norm).

    Args:
        self_attn_cfg (dict): kwargs of mmcv's ``MultiheadAttention``
            (``embed_dims``, ``num_heads``, ``attn_drop``,
            ``dropout_layer``); ``batch_first`` is always True.
        cross_attn_cfg (dict): kwargs of
            :class:`MultiScaleDeformableAttention`; ``batch_first`` is always
            True and must not be set.
        ffn_cfg (dict): kwargs of mmcv's ``FFN``.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, self_attn_cfg: dict, cross_attn_cfg: dict,
                 ffn_cfg: dict, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn = MultiheadAttention(**self_attn_cfg, batch_first=True)
        self.embed_dims = self.self_attn.embed_dims
        self.self_attn_norm = nn.LayerNorm(self.embed_dims)
        self.cross_attn = MultiScaleDeformableAttention(
            **cross_attn_cfg, batch_first=True)
        self.cross_attn_norm = nn.LayerNorm(self.embed_dims)
        self.ffn = FFN(**ffn_cfg)
        self.ffn_norm = nn.LayerNorm(self.embed_dims)

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                self_attn_mask: Optional[Tensor] = None) -> Tensor:
        """Update the object queries.

        Args:
            query (Tensor): (B, Q, C) content queries.
            query_pos (Tensor): (B, Q, C) positional queries.
            value (Tensor): (B, S, C) encoder memory.
            key_padding_mask (Tensor): (B, S) bool, True at padded pixels.
            reference_points (Tensor): (B, Q, num_levels, 2 or 4) normalised
                points ``(x, y)`` or boxes ``(cx, cy, w, h)`` per level.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            level_start_index (Tensor): (num_levels,) int64.
            self_attn_mask (Tensor, optional): (Q, Q) bool, True where query
                ``i`` must not attend to query ``j`` (hybrid matching's
                separate query groups); None lets every query see every
                other.

        Returns:
            Tensor: (B, Q, C).
        """
        query = self.self_attn(
            query=query,
            key=query,
            value=query,
            query_pos=query_pos,
            key_pos=query_pos,
            attn_mask=self_attn_mask)
        query = self.self_attn_norm(query)
        query = self.cross_attn(
            query=query,
            value=value,
            query_pos=query_pos,
            key_padding_mask=key_padding_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index)
        query = self.cross_attn_norm(query)
        return self.ffn_norm(self.ffn(query))


@MODELS.register_module()
class DeformableDETRTransformerDecoder(DeformableDETRLayerStack):
    """A stack of :class:`DeformableDETRTransformerDecoderLayer` (6 in the
    paper) that returns every layer's output, for the auxiliary losses; each
    layer's reference points are the previous layer's refined boxes
    (``with_box_refine``) or the initial ones.

    Args:
        num_layers (int): number of layers.
        layer_cfg (dict): kwargs of
            :class:`DeformableDETRTransformerDecoderLayer`.
        look_forward_twice (bool): with box refinement, return each layer's
            refined boxes *not* detached (DINO's "look forward twice",
            Zhang et al., arXiv 2203.03605, Sec. 3.5): the next layer still
            starts from them detached, but the head's box of layer
            ``d + 1``, predicted relative to them, trains layer ``d``'s box
            prediction too. Training only: every output value is the same.
            Default False (the paper's detached refinement).
        init_cfg (dict, optional): mmengine initialisation config.
    """

    layer_class = DeformableDETRTransformerDecoderLayer

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 look_forward_twice: bool = False,
                 init_cfg=None) -> None:
        super().__init__(num_layers, layer_cfg, init_cfg=init_cfg)
        self.look_forward_twice = look_forward_twice

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: Optional[Sequence[nn.Module]] = None,
                self_attn_mask: Optional[Tensor] = None
                ) -> Tuple[Tensor, List[Tensor]]:
        """Decode the queries; refine their references with ``reg_branches``.

        With ``reg_branches`` (``with_box_refine``), layer ``d`` predicts
        box deltas with ``reg_branches[d]`` and the refined boxes,
        detached, are the next layer's references (Appendix A.4; returned
        not detached with ``look_forward_twice``). Otherwise every layer
        uses the initial references.

        Args:
            query (Tensor): (B, Q, C) content queries.
            query_pos (Tensor): (B, Q, C) positional queries.
            value (Tensor): (B, S, C) encoder memory.
            key_padding_mask (Tensor): (B, S) bool, True at padded pixels.
            reference_points (Tensor): (B, Q, 2) normalised ``(cx, cy)``
                (single stage) or (B, Q, 4) ``(cx, cy, w, h)`` (two-stage),
                relative to the unpadded image.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            level_start_index (Tensor): (num_levels,) int64.
            valid_ratios (Tensor): (B, num_levels, 2) float32 ``(w, h)``.
            reg_branches (Sequence[nn.Module], optional): at least
                ``num_layers`` modules mapping (B, Q, C) to (B, Q, 4) deltas.
            self_attn_mask (Tensor, optional): (Q, Q) bool, True where a
                query must not attend to another, for every layer; see
                :meth:`DeformableDETRTransformerDecoderLayer.forward`.

        Returns:
            tuple: ``hidden_states`` (num_layers, B, Q, C) and
            ``references``, a list of ``num_layers + 1`` tensors: the initial
            references, then those after each layer.
        """
        hidden_states = []
        references = [reference_points]
        for layer_id, layer in enumerate(self.layers):
            # relative to the unpadded image -> relative to each padded level
            level_ratios = valid_ratios.repeat(
                1, 1, reference_points.shape[-1] // 2)
            query = layer(
                query=query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                reference_points=reference_points[:, :, None] *
                level_ratios[:, None],
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                self_attn_mask=self_attn_mask)
            if reg_branches is not None:
                refined = refine_boxes(reg_branches[layer_id](query),
                                       reference_points)
                reference_points = refined.detach()
                references.append(
                    refined if self.look_forward_twice else reference_points)
            else:
                references.append(reference_points)
            hidden_states.append(query)
        return torch.stack(hidden_states), references
