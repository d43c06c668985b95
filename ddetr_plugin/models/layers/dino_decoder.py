"""The DINO decoder: Deformable DETR's decoder layers on 4D anchor boxes whose
positional queries are re-embedded at every layer, with "look forward twice"
box refinement (Zhang et al., "DINO: DETR with Improved DeNoising Anchor
Boxes for End-to-End Object Detection", arXiv 2203.03605, Sec. 3.5; the
anchor-box queries are DAB-DETR's, Liu et al., arXiv 2201.12329). As mmdet
3.3's ``DinoTransformerDecoder``."""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import MLP, inverse_sigmoid
from torch import Tensor, nn

from ddetr_plugin.registry import MODELS
from .decoder import DeformableDETRTransformerDecoder
from .positional_encoding import sine_embedding


@MODELS.register_module()
class DINOTransformerDecoder(DeformableDETRTransformerDecoder):
    """A stack of Deformable DETR decoder layers for DINO.

    Differences from :class:`DeformableDETRTransformerDecoder`:

    * the positional query of every layer is ``ref_point_head`` (a 2-layer
      MLP, 2C -> C -> C) of the sine embedding of the layer's reference box
      (``(cy, cx, w, h)`` order, 128 features each, relative to the padded
      first level);
    * every layer's output, normalised by a shared final ``norm``
      (LayerNorm), is what the head predicts from;
    * look forward twice (Sec. 3.5) by default: layer ``d``'s refined boxes
      are the next layer's references detached, but the references returned
      for the head are not detached, so the loss of layer ``d + 1`` also
      trains layer ``d``'s box prediction.

    Args:
        num_layers (int): number of layers.
        layer_cfg (dict): kwargs of
            :class:`~.decoder.DeformableDETRTransformerDecoderLayer`.
        look_forward_twice (bool): as in
            :class:`~.decoder.DeformableDETRTransformerDecoder`; default
            True (DINO's, and mmdet 3.3's only behaviour).
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 look_forward_twice: bool = True,
                 init_cfg=None) -> None:
        super().__init__(
            num_layers,
            layer_cfg,
            look_forward_twice=look_forward_twice,
            init_cfg=init_cfg)
        self.ref_point_head = MLP(self.embed_dims * 2, self.embed_dims,
                                  self.embed_dims, 2)
        self.norm = nn.LayerNorm(self.embed_dims)

    def forward(self,
                query: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: Sequence[nn.Module],
                self_attn_mask: Optional[Tensor] = None
                ) -> Tuple[Tensor, List[Tensor]]:
        """Decode the queries and refine their boxes layer by layer.

        Args:
            query (Tensor): (B, Q, C) content queries.
            value (Tensor): (B, S, C) encoder memory.
            key_padding_mask (Tensor): (B, S) bool, True at padded pixels.
            reference_points (Tensor): (B, Q, 4) normalised
                ``(cx, cy, w, h)`` anchor boxes, relative to the unpadded
                image.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            level_start_index (Tensor): (num_levels,) int64.
            valid_ratios (Tensor): (B, num_levels, 2) float32 ``(w, h)``.
            reg_branches (Sequence[nn.Module]): at least ``num_layers``
                modules mapping (B, Q, C) to (B, Q, 4) box deltas.
            self_attn_mask (Tensor, optional): (Q, Q) bool, True where a
                query must not attend to another (the denoising groups).

        Returns:
            tuple: ``hidden_states`` (num_layers, B, Q, C), each layer's
            output after ``norm``, and ``references``, a list of
            ``num_layers + 1`` (B, Q, 4) normalised boxes: the initial ones,
            then each layer's refined boxes (not detached with
            ``look_forward_twice``).

        Raises:
            ValueError: ``reference_points`` that are not boxes.
        """
        if reference_points.shape[-1] != 4:
            raise ValueError('DINOTransformerDecoder needs (cx, cy, w, h) '
                             'reference boxes, got shape '
                             f'{tuple(reference_points.shape)}')
        hidden_states = []
        references = [reference_points]
        for layer_id, layer in enumerate(self.layers):
            # relative to the unpadded image -> relative to each padded
            # level: (B, Q, 1, 4) * (B, 1, num_levels, 4)
            reference_points_input = reference_points[:, :, None] * \
                valid_ratios.repeat(1, 1, 2)[:, None]
            # (B, Q, 4) -> (B, Q, 4 * C / 2), coordinates as (cy, cx, w, h)
            query_sine_embed = sine_embedding(
                reference_points_input[:, :, 0, [1, 0, 2, 3]] *
                (2 * math.pi), self.embed_dims // 2)
            query = layer(
                query=query,
                query_pos=self.ref_point_head(query_sine_embed),
                value=value,
                key_padding_mask=key_padding_mask,
                reference_points=reference_points_input,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                self_attn_mask=self_attn_mask)
            new_reference_points = (reg_branches[layer_id](query) +
                                    inverse_sigmoid(reference_points,
                                                    eps=1e-3)).sigmoid()
            reference_points = new_reference_points.detach()
            hidden_states.append(self.norm(query))
            references.append(new_reference_points if self.look_forward_twice
                              else reference_points)
        return torch.stack(hidden_states), references
