"""The multi-scale deformable attention module (Deformable DETR, Sec. 4.1)."""
import math
from typing import Optional, Tuple

import torch
from mmengine.model import BaseModule, constant_init, xavier_init
from torch import nn

from ddetr_plugin.ops import multi_scale_deformable_attn
from ddetr_plugin.registry import MODELS


def has_padding(key_padding_mask: torch.Tensor) -> bool:
    """Whether zeroing the values at ``key_padding_mask`` can change them.

    In eager mode on the CPU, True only where some token is padded: a
    batch of one image, or of images of one size (BCCD's, any resized to a
    fixed size), has none, and ``masked_fill`` with an all-False mask is an
    identity that costs a copy of ``value`` forward and of its gradient
    backward (12 copies of (B, S, C) per Deformable DETR step). Always True
    when the graph is traced or compiled (``torch.jit.trace``,
    ``torch.export`` and the ONNX export, ``torch.compile``), which must
    hold for any mask, and on other devices, where reading the mask back
    would stall the device.

    Args:
        key_padding_mask (Tensor): (B, S) bool, True at padded tokens.

    Returns:
        bool
    """
    if (key_padding_mask.device.type != 'cpu' or torch.jit.is_tracing()
            or torch.jit.is_scripting() or torch.compiler.is_compiling()):
        return True
    return bool(key_padding_mask.any())


@MODELS.register_module()
class MultiScaleDeformableAttention(BaseModule):
    """Multi-scale deformable attention, Zhu et al., arXiv 2010.04159, Eq. (3).

    A drop-in for ``mmcv.ops.MultiScaleDeformableAttention``: the same
    constructor arguments, initialisation (zero offsets weights, sampling
    offsets biased to a grid of ``num_heads`` directions scaled by
    ``1..num_points``, zero attention weights, Xavier-uniform projections)
    and state_dict keys (``sampling_offsets``, ``attention_weights``,
    ``value_proj``, ``output_proj``), so mmcv/mmdet weights load unchanged.
    The sampling runs on :func:`ddetr_plugin.ops.multi_scale_deformable_attn`
    on every device that has a compiled kernel (CPU included), with no
    batch-divisibility rule.

    Args:
        embed_dims (int): channels C of query and value. Default 256.
        num_heads (int): heads M; ``embed_dims`` must be divisible by it.
        num_levels (int): feature levels L. Default 4.
        num_points (int): sampling points P per head and level. Default 4.
        im2col_step (int): accepted for config compatibility with mmcv; our
            kernels have no im2col step, so it has no effect.
        dropout (float): dropout on the output before the residual add.
        batch_first (bool): ``(B, N, C)`` inputs if True, else ``(N, B, C)``.
        norm_cfg (dict, optional): accepted for compatibility with mmcv,
            unused there and here.
        init_cfg (dict, optional): mmengine initialisation config.
        value_proj_ratio (float): width of the value projection relative to
            ``embed_dims``. Default 1.0.

    Raises:
        ValueError: ``embed_dims`` not divisible by ``num_heads``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 4,
                 num_points: int = 4,
                 im2col_step: int = 64,
                 dropout: float = 0.1,
                 batch_first: bool = False,
                 norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 value_proj_ratio: float = 1.0):
        super().__init__(init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims must be divisible by num_heads, '
                             f'got {embed_dims} and {num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.im2col_step = im2col_step
        self.batch_first = batch_first
        self.norm_cfg = norm_cfg
        self.dropout = nn.Dropout(dropout)
        self.sampling_offsets = nn.Linear(
            embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims,
                                           num_heads * num_levels * num_points)
        value_proj_size = int(embed_dims * value_proj_ratio)
        self.value_proj = nn.Linear(embed_dims, value_proj_size)
        self.output_proj = nn.Linear(value_proj_size, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """Initialise as Deformable DETR's reference code (and mmcv) do."""
        constant_init(self.sampling_offsets, 0.)
        thetas = torch.arange(
            self.num_heads,
            dtype=torch.float32,
            device=self.sampling_offsets.weight.device) * (
                2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(
            self.num_heads, 1, 1, 2).repeat(1, self.num_levels,
                                            self.num_points, 1)
        grid *= torch.arange(
            1, self.num_points + 1, dtype=grid.dtype,
            device=grid.device).view(1, 1, -1, 1)
        self.sampling_offsets.bias.data = grid.view(-1)
        constant_init(self.attention_weights, val=0., bias=0.)
        xavier_init(self.value_proj, distribution='uniform', bias=0.)
        xavier_init(self.output_proj, distribution='uniform', bias=0.)
        self._is_init = True

    def forward(self,
                query: torch.Tensor,
                key: Optional[torch.Tensor] = None,
                value: Optional[torch.Tensor] = None,
                identity: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None,
                key_padding_mask: Optional[torch.Tensor] = None,
                reference_points: Optional[torch.Tensor] = None,
                spatial_shapes: Optional[torch.Tensor] = None,
                level_start_index: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        """Attend from ``query`` to the multi-scale ``value`` (Eq. 3).

        Shapes below are batch-first; with ``batch_first=False`` the first
        two dims of ``query``, ``value``, ``identity``, ``query_pos`` and the
        output are swapped.

        Args:
            query (Tensor): (B, Q, C).
            key (Tensor, optional): unused (deformable attention has no
                keys); accepted for the common attention interface.
            value (Tensor, optional): (B, S, C) tokens of all levels;
                defaults to ``query`` (encoder self-attention).
            identity (Tensor, optional): (B, Q, C) residual; defaults to
                ``query`` before ``query_pos`` is added.
            query_pos (Tensor, optional): (B, Q, C) added to ``query``.
            key_padding_mask (Tensor, optional): (B, S) bool, True for
                padded tokens, whose values are zeroed.
            reference_points (Tensor): (B, Q, L, 2) normalised ``(x, y)``
                points, or (B, Q, L, 4) normalised ``(cx, cy, w, h)`` boxes
                (offsets then scale with the box, as with box refinement).
            spatial_shapes (Tensor): (L, 2) int64 ``(H, W)`` per level.
            level_start_index (Tensor): (L,) int64 first token of each level.

        Returns:
            Tensor: (B, Q, C), ``identity + dropout(output_proj(attn))``.

        Raises:
            ValueError: ``reference_points`` whose last dim is not 2 or 4,
                or shapes the op rejects.
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.transpose(0, 1)
            value = value.transpose(0, 1)
        batch, num_value = value.shape[:2]

        value = self.value_proj(value)
        if key_padding_mask is not None and has_padding(key_padding_mask):
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, num_value, self.num_heads, -1)
        sampling_locations, attention_weights = self.sampling_points(
            query, reference_points, spatial_shapes)

        output = multi_scale_deformable_attn(value, spatial_shapes,
                                             level_start_index,
                                             sampling_locations,
                                             attention_weights)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return self.dropout(output) + identity

    def sampling_points(self, query: torch.Tensor,
                        reference_points: torch.Tensor,
                        spatial_shapes: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Where each query samples, and with which weights (Eq. 3).

        The ``sampling_offsets`` and ``attention_weights`` projections
        (separate parameters, mmcv's keys) run as one matrix product.

        Args:
            query (Tensor): (B, Q, C) batch-first, ``query_pos`` included.
            reference_points (Tensor): (B, Q, L, 2) normalised ``(x, y)``
                or (B, Q, L, 4) normalised ``(cx, cy, w, h)``, relative to
                each (padded) level map.
            spatial_shapes (Tensor): (L, 2) int64 ``(H, W)`` per level.

        Returns:
            tuple: ``sampling_locations`` (B, Q, num_heads, L, num_points,
            2) normalised ``(x, y)`` on each level map (0..1 spans the
            padded map, as the op takes them) and ``attention_weights``
            (B, Q, num_heads, L, num_points), softmax-normalised over levels
            and points, dtype of ``query``.

        Raises:
            ValueError: ``reference_points`` whose last dim is not 2 or 4.
        """
        batch, num_queries, _ = query.shape
        heads, levels, points = (self.num_heads, self.num_levels,
                                 self.num_points)
        if reference_points.shape[-1] not in (2, 4):
            raise ValueError('reference_points must end in 2 (x, y) or 4 '
                             '(cx, cy, w, h), got shape '
                             f'{tuple(reference_points.shape)}')
        # both projections read the query: one matrix product,
        # (B, Q, C) -> (B, Q, M*L*P*2 + M*L*P), split along the last dim
        num_offsets = self.sampling_offsets.out_features
        projected = nn.functional.linear(
            query,
            torch.cat((self.sampling_offsets.weight,
                       self.attention_weights.weight)),
            torch.cat((self.sampling_offsets.bias,
                       self.attention_weights.bias)))
        sampling_offsets, attention_logits = projected.split(
            (num_offsets, projected.shape[-1] - num_offsets), -1)
        # (B, Q, M*L*P) -> (B, Q, M, L*P), softmax, -> (B, Q, M, L, P)
        attention_weights = attention_logits.reshape(
            batch, num_queries, heads, levels * points).softmax(-1).view(
                batch, num_queries, heads, levels, points)
        # (B, Q, M*L*P*2) -> (B, Q, M, L, P*2): P (x, y) pairs per level;
        # every broadcast below has a contiguous innermost dim of P*2
        # (vectorised), and the arithmetic is mmcv's, in its order
        sampling_offsets = sampling_offsets.view(
            batch, num_queries, heads, levels, points * 2)
        # (B, Q, L, 2) -> (B, Q, 1, L, P*2): where each point starts
        start = reference_points[..., :2].repeat(1, 1, 1, points)[:, :, None]
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: normalise by (W, H);
            # (L, 2) -> (L, P*2)
            offset_normalizer = spatial_shapes.flip(-1).to(
                query.dtype).repeat(1, points)
            sampling_locations = start + sampling_offsets / offset_normalizer
        else:
            # offsets are relative to the box size (box refinement, Sec.
            # 4.2); (B, Q, L, 2) -> (B, Q, 1, L, P*2)
            size = reference_points[..., 2:].repeat(1, 1, 1,
                                                    points)[:, :, None]
            sampling_locations = (
                start + sampling_offsets / points * size * 0.5)
        # (B, Q, M, L, P*2) -> (B, Q, M, L, P, 2)
        sampling_locations = sampling_locations.view(
            batch, num_queries, heads, levels, points, 2)
        return sampling_locations, attention_weights
