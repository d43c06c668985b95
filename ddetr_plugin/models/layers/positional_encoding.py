"""Sine positional encodings of pixels and of boxes (Deformable DETR, Sec. 4.1
and Appendix A.4; the sine form is DETR's, Carion et al. 2020, Sec. 3.2)."""
import math

import torch
from mmengine.model import BaseModule
from torch import Tensor

from ddetr_plugin.registry import MODELS


def sine_embedding(coords: Tensor,
                   num_feats: int = 128,
                   temperature: int = 10000) -> Tensor:
    """Embed each scalar coordinate with ``num_feats`` sines and cosines.

    Coordinate ``c`` becomes ``[sin(c / t_0), cos(c / t_1), sin(c / t_2),
    ...]`` with ``t_i = temperature ** (2 * (i // 2) / num_feats)``; the
    embeddings of the coordinates are concatenated in their order.

    Args:
        coords (Tensor): (..., n) float32 coordinates, already scaled (e.g.
            normalised to [0, 1] and multiplied by ``2 * pi``).
        num_feats (int): embedding size per coordinate, even.
        temperature (int): frequency base.

    Returns:
        Tensor: (..., n * num_feats), float32.
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature**(2 * (dim_t // 2) / num_feats)
    pos = coords[..., None] / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()),
                       dim=-1).flatten(-3)


@MODELS.register_module()
class SinePositionalEncoding(BaseModule):
    """2D sine positional encoding of the valid pixels of a feature map.

    Each pixel's 1-based row and column index within the valid (unpadded)
    region, optionally normalised as ``(index + offset) / (valid_size + eps)
    * scale``, is embedded with :func:`sine_embedding`; the output stacks the
    y embedding then the x embedding. Deformable DETR uses
    ``normalize=True, offset=-0.5`` (pixel centres, as in mmdet's
    ``SinePositionalEncoding``, with identical numbers).

    Args:
        num_feats (int): channels per axis; the output has ``2 * num_feats``.
        temperature (int): frequency base. Default 10000.
        normalize (bool): normalise indices by the valid size. Default True.
        scale (float): scale of normalised positions. Default ``2 * pi``.
        eps (float): added to the valid size when normalising.
        offset (float): added to the 1-based indices when normalising.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 num_feats: int = 128,
                 temperature: int = 10000,
                 normalize: bool = True,
                 scale: float = 2 * math.pi,
                 eps: float = 1e-6,
                 offset: float = 0.,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask: Tensor) -> Tensor:
        """Encode the positions of one feature level.

        Args:
            mask (Tensor): (B, H, W) bool padding mask, True where padded.

        Returns:
            Tensor: (B, 2 * num_feats, H, W) float32.
        """
        not_mask = 1 - mask.to(torch.int)
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y_embed = (y_embed + self.offset) / \
                (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / \
                (x_embed[:, :, -1:] + self.eps) * self.scale
        pos = sine_embedding(
            torch.stack((y_embed, x_embed), -1), self.num_feats,
            self.temperature)
        return pos.permute(0, 3, 1, 2)
