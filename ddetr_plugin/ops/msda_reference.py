"""Pure-PyTorch multi-scale deformable attention (the reference and fallback).

Used by the tests as the independent reference of the compiled kernels, and by
:func:`ddetr_plugin.ops.multi_scale_deformable_attn` on devices for which no
compiled kernel is registered.
"""
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F


def multi_scale_deformable_attn_pytorch(
        value: torch.Tensor,
        spatial_shapes: Union[torch.Tensor, Sequence[Tuple[int, int]]],
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention by ``F.grid_sample`` (paper Eq. 2).

    Zhu et al., "Deformable DETR", arXiv 2010.04159, Sec. 4.1 / Eq. (2):
    ``out[b, q, m] = sum_l sum_p A[b, q, m, l, p] * V_l[b, m](loc[b, q, m, l, p])``
    where ``V_l(.)`` samples level ``l`` bilinearly (``align_corners=False``,
    zeros outside the map).

    Args:
        value (Tensor): (B, S, num_heads, head_dim), floating point, with
            ``S = sum_l H_l * W_l`` tokens of all levels, level by level,
            row-major inside a level.
        spatial_shapes (Tensor | sequence): (num_levels, 2) int, ``(H_l, W_l)``
            of each level in pixels of that level.
        sampling_locations (Tensor): (B, num_queries, num_heads, num_levels,
            num_points, 2), normalised ``(x, y)``; 0 and 1 are the outer
            edges of the map, points outside sample zeros.
        attention_weights (Tensor): (B, num_queries, num_heads, num_levels,
            num_points), same dtype as ``value``.

    Returns:
        Tensor: (B, num_queries, num_heads * head_dim), dtype of ``value``.
    """
    batch, _, num_heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    if isinstance(spatial_shapes, torch.Tensor):
        spatial_shapes = spatial_shapes.tolist()
    value_per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for level, (height, width) in enumerate(spatial_shapes):
        # (B, H*W, M, D) -> (B*M, D, H, W)
        value_l = value_per_level[level].permute(0, 2, 3, 1).reshape(
            batch * num_heads, head_dim, height, width)
        # (B, Q, M, P, 2) -> (B*M, Q, P, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(
                value_l,
                grid_l,
                mode='bilinear',
                padding_mode='zeros',
                align_corners=False))  # (B*M, D, Q, P)
    # (B*M, D, Q, L*P) weighted by (B*M, 1, Q, L*P)
    sampled = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(
        batch * num_heads, 1, num_queries, num_levels * num_points)
    output = (sampled * weights).sum(-1)  # (B*M, D, Q)
    return output.view(batch, num_heads * head_dim,
                       num_queries).transpose(1, 2).contiguous()
