"""The Deformable DETR encoder: multi-scale deformable self-attention over the
pixels of all feature levels (Zhu et al., arXiv 2010.04159, Sec. 4.1,
"Deformable Transformer Encoder")."""
import torch
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor, nn

from ddetr_plugin.registry import MODELS
from .layer_stack import DeformableDETRLayerStack
from .msda_attention import MultiScaleDeformableAttention


class DeformableDETRTransformerEncoderLayer(BaseModule):
    """One encoder layer: deformable self-attention, then an FFN, each
    followed by LayerNorm (post-norm, as the paper's reference code).

    Args:
        self_attn_cfg (dict): kwargs of :class:`MultiScaleDeformableAttention`
            (``embed_dims``, ``num_heads``, ``num_levels``, ``num_points``,
            ``dropout``); ``batch_first`` is always True and must not be set.
        ffn_cfg (dict): kwargs of mmcv's ``FFN`` (``embed_dims``,
            ``feedforward_channels``, ``ffn_drop``); it adds its residual.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, self_attn_cfg: dict, ffn_cfg: dict,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn = MultiScaleDeformableAttention(
            **self_attn_cfg, batch_first=True)
        self.embed_dims = self.self_attn.embed_dims
        self.self_attn_norm = nn.LayerNorm(self.embed_dims)
        self.ffn = FFN(**ffn_cfg)
        self.ffn_norm = nn.LayerNorm(self.embed_dims)

    def forward(self, query: Tensor, query_pos: Tensor,
                key_padding_mask: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor) -> Tensor:
        """Update the pixel tokens of all levels.

        Args:
            query (Tensor): (B, S, C) tokens, ``S = sum_l H_l * W_l``.
            query_pos (Tensor): (B, S, C) positional + level embedding.
            key_padding_mask (Tensor): (B, S) bool, True at padded pixels.
            reference_points (Tensor): (B, S, num_levels, 2) normalised
                ``(x, y)`` of each token's pixel centre on every level.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            level_start_index (Tensor): (num_levels,) int64.

        Returns:
            Tensor: (B, S, C).
        """
        query = self.self_attn(
            query=query,
            value=query,
            query_pos=query_pos,
            key_padding_mask=key_padding_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index)
        query = self.self_attn_norm(query)
        return self.ffn_norm(self.ffn(query))


@MODELS.register_module()
class DeformableDETRTransformerEncoder(DeformableDETRLayerStack):
    """A stack of :class:`DeformableDETRTransformerEncoderLayer` (6 in the
    paper); every layer gets the same reference points, the pixel centres.

    Args:
        num_layers (int): number of layers.
        layer_cfg (dict): kwargs of
            :class:`DeformableDETRTransformerEncoderLayer`.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    layer_class = DeformableDETRTransformerEncoderLayer

    def forward(self, query: Tensor, query_pos: Tensor,
                key_padding_mask: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, valid_ratios: Tensor) -> Tensor:
        """Encode the flattened multi-scale feature maps.

        Args:
            query (Tensor): (B, S, C) flattened features of all levels.
            query_pos (Tensor): (B, S, C) positional + level embedding.
            key_padding_mask (Tensor): (B, S) bool, True at padded pixels.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            level_start_index (Tensor): (num_levels,) int64.
            valid_ratios (Tensor): (B, num_levels, 2) float32 unpadded
                fraction ``(w, h)`` of each level.

        Returns:
            Tensor: (B, S, C), the encoder output ("memory").
        """
        reference_points = self.get_reference_points(spatial_shapes,
                                                     valid_ratios)
        for layer in self.layers:
            query = layer(
                query=query,
                query_pos=query_pos,
                key_padding_mask=key_padding_mask,
                reference_points=reference_points,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index)
        return query

    @staticmethod
    def get_reference_points(spatial_shapes: Tensor,
                             valid_ratios: Tensor) -> Tensor:
        """Reference point of every pixel token on every level (Sec. 4.1).

        A pixel's centre is normalised by its level's valid (unpadded) size,
        then mapped onto each level's padded map via ``valid_ratios``.

        Args:
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            valid_ratios (Tensor): (B, num_levels, 2) float32 ``(w, h)``.

        Returns:
            Tensor: (B, S, num_levels, 2) float32 normalised ``(x, y)``.
        """
        reference_points_list = []
        for lvl, (H, W) in enumerate(spatial_shapes.tolist()):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(
                    0.5, H - 0.5, H, dtype=torch.float32,
                    device=valid_ratios.device),
                torch.linspace(
                    0.5, W - 0.5, W, dtype=torch.float32,
                    device=valid_ratios.device),
                indexing='ij')
            ref_y = ref_y.reshape(-1)[None] / (
                valid_ratios[:, None, lvl, 1] * H)
            ref_x = ref_x.reshape(-1)[None] / (
                valid_ratios[:, None, lvl, 0] * W)
            reference_points_list.append(torch.stack((ref_x, ref_y), -1))
        reference_points = torch.cat(reference_points_list, 1)
        return reference_points[:, :, None] * valid_ratios[:, None]
