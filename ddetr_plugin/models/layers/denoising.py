"""Contrastive denoising (CDN) queries: noised copies of the ground truth fed
to the decoder beside the matching queries, in training only (Zhang et al.,
"DINO: DETR with Improved DeNoising Anchor Boxes for End-to-End Object
Detection", ICLR 2023, arXiv 2203.03605, Sec. 3.3; the denoising idea is
DN-DETR's, Li et al., CVPR 2022, arXiv 2203.01305). The random draws are
those of mmdet 3.3's ``CdnQueryGenerator``, in the same order, so both give
the same queries from the same random state."""
import warnings
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.layers import inverse_sigmoid
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.model import BaseModule
from torch import Tensor, nn

from ddetr_plugin.registry import MODELS


def denoising_self_attn_mask(max_num_target: int, num_groups: int,
                             num_matching_queries: int,
                             device: torch.device) -> Tensor:
    """Decoder self-attention mask of the denoising and matching queries.

    The ``num_groups`` denoising groups (``2 * max_num_target`` queries
    each: positives then negatives) come first, then the matching queries.
    The matching queries must not see any denoising query (they would read
    the ground truth), and no group may see another group; a denoising
    query sees its own group and every matching query.

    Args:
        max_num_target (int): ground-truth boxes of the image that has most.
        num_groups (int): denoising groups.
        num_matching_queries (int): the decoder's matching queries.
        device (torch.device): where the mask is made.

    Returns:
        Tensor: (Q, Q) bool, ``Q = 2 * max_num_target * num_groups +
        num_matching_queries``; True where query ``i`` must not attend to
        query ``j`` (``nn.MultiheadAttention``'s ``attn_mask``).
    """
    group_size = 2 * max_num_target
    num_denoising_queries = group_size * num_groups
    num_queries = num_denoising_queries + num_matching_queries
    mask = torch.zeros(num_queries, num_queries, dtype=torch.bool,
                       device=device)
    mask[num_denoising_queries:, :num_denoising_queries] = True
    for group in range(num_groups):
        rows = slice(group * group_size, (group + 1) * group_size)
        mask[rows, :group * group_size] = True
        mask[rows, (group + 1) * group_size:num_denoising_queries] = True
    return mask


@MODELS.register_module()
class CdnQueryGenerator(BaseModule):
    """Contrastive denoising queries of a batch (DINO, Sec. 3.3).

    Every ground-truth box of the batch is copied into ``num_groups``
    groups, each with a positive and a negative copy. Positives have their
    corners moved by less than half the box size (``box_noise_scale *
    (w, h) / 2`` times a factor in (-1, 1)), negatives by between that and
    twice that, so the decoder learns to reconstruct the first and reject
    the second. Labels are replaced by a random class with probability
    ``label_noise_scale / 2`` and embedded with ``label_embedding``. Images
    with fewer boxes than the batch's maximum get zero queries for the
    missing ones (padding, never matched: the head's denoising targets
    leave them as background).

    Groups: ``group_cfg=dict(dynamic=True, num_dn_queries=N)`` (default,
    N=100) uses ``N // max_num_target`` groups, so a batch never has many
    more than N denoising queries; ``dict(dynamic=False, num_groups=G)``
    always G. Either way at least one group: a batch with more boxes in
    one image than ``num_dn_queries`` gets ``2 * max_num_target`` queries
    (documented fallback, as mmdet's); a batch without any box gets one
    empty group (no denoising queries, and no denoising loss).

    Args:
        num_classes (int): object classes; rows of ``label_embedding``.
        embed_dims (int): width C of the queries.
        num_matching_queries (int): the decoder's matching queries (for the
            attention mask).
        label_noise_scale (float): twice the probability that a label is
            redrawn, in (0, 2]. Default 0.5.
        box_noise_scale (float): scale of the box noise, > 0. Default 1.0.
        group_cfg (dict, optional): see above.

    Raises:
        ValueError: a noise scale out of range, ``group_cfg`` with a
            non-positive or non-int ``num_dn_queries`` / ``num_groups``, or
            static groups without ``num_groups``.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int,
                 num_matching_queries: int,
                 label_noise_scale: float = 0.5,
                 box_noise_scale: float = 1.0,
                 group_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if not 0 < label_noise_scale <= 2:
            raise ValueError('label_noise_scale must be in (0, 2], got '
                             f'{label_noise_scale!r}')
        if not box_noise_scale > 0:
            raise ValueError(
                f'box_noise_scale must be > 0, got {box_noise_scale!r}')
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_matching_queries = num_matching_queries
        self.label_noise_scale = label_noise_scale
        self.box_noise_scale = box_noise_scale
        group_cfg = dict(group_cfg or {})
        self.dynamic_dn_groups = group_cfg.get('dynamic', True)
        if self.dynamic_dn_groups:
            if 'num_dn_queries' not in group_cfg:
                warnings.warn('CdnQueryGenerator: dynamic groups without '
                              'group_cfg.num_dn_queries, using 100')
            key, value = 'num_dn_queries', group_cfg.get('num_dn_queries', 100)
            self.num_dn_queries = value
        else:
            if group_cfg.get('num_groups') is None:
                raise ValueError('CdnQueryGenerator: static groups '
                                 '(group_cfg.dynamic=False) need '
                                 'group_cfg.num_groups')
            key, value = 'num_groups', group_cfg['num_groups']
            self.num_groups = value
        if not (isinstance(value, int) and value > 0):
            raise ValueError(f'group_cfg.{key} must be a positive int, got '
                             f'{value!r}')
        self.label_embedding = nn.Embedding(num_classes, embed_dims)

    def get_num_groups(self, max_num_target: int) -> int:
        """Denoising groups of a batch whose fullest image has
        ``max_num_target`` boxes (at least 1)."""
        if not self.dynamic_dn_groups:
            return self.num_groups
        if max_num_target == 0:
            return 1
        return max(self.num_dn_queries // max_num_target, 1)

    def forward(self, batch_data_samples: SampleList
                ) -> Tuple[Tensor, Tensor, Tensor, Dict[str, int]]:
        """Denoising queries of a batch.

        Args:
            batch_data_samples (list[DetDataSample]): with ``gt_instances``
                (``bboxes`` (G_i, 4) pixel xyxy of the resized image,
                ``labels`` (G_i,) int64) and ``img_shape`` metainfo.

        Returns:
            tuple: ``dn_label_query`` (B, D, C) content queries,
            ``dn_bbox_query`` (B, D, 4) unactivated (inverse-sigmoid)
            normalised ``(cx, cy, w, h)`` reference boxes, ``dn_mask``
            (D + num_matching_queries, same) bool self-attention mask (see
            :func:`denoising_self_attn_mask`), and ``dn_meta``:
            ``num_denoising_queries`` (D = ``2 * max_num_target *
            num_groups``) and ``num_denoising_groups``. In each image, group
            ``g``'s positives are queries ``[2gM, 2gM + G_i)`` and its
            negatives ``[2gM + M, 2gM + M + G_i)`` (``M = max_num_target``).

        Raises:
            ValueError: a ground-truth label outside ``[0, num_classes)``.
        """
        gt_labels_list: List[Tensor] = []
        gt_bboxes_list: List[Tensor] = []
        for sample in batch_data_samples:
            img_h, img_w = sample.img_shape
            bboxes = sample.gt_instances.bboxes
            gt_bboxes_list.append(bboxes / bboxes.new_tensor(
                [img_w, img_h, img_w, img_h]))
            gt_labels_list.append(sample.gt_instances.labels)
        gt_labels = torch.cat(gt_labels_list)  # (T,), all images' boxes
        gt_bboxes = torch.cat(gt_bboxes_list)  # (T, 4) normalised xyxy
        if len(gt_labels) and not (0 <= int(gt_labels.min()) and
                                   int(gt_labels.max()) < self.num_classes):
            raise ValueError(
                'CdnQueryGenerator: ground-truth labels must be in [0, '
                f'{self.num_classes}), got {gt_labels.unique().tolist()}')
        max_num_target = max(len(labels) for labels in gt_labels_list)
        num_groups = self.get_num_groups(max_num_target)

        label_query = self.noisy_label_query(gt_labels, num_groups)
        bbox_query = self.noisy_bbox_query(gt_bboxes, num_groups)
        batch_index = torch.cat([
            torch.full_like(labels, i, dtype=torch.long)
            for i, labels in enumerate(gt_labels_list)
        ])
        dn_label_query, dn_bbox_query = self.collate(
            label_query, bbox_query, batch_index,
            [len(labels) for labels in gt_labels_list], num_groups)
        dn_mask = denoising_self_attn_mask(max_num_target, num_groups,
                                           self.num_matching_queries,
                                           dn_label_query.device)
        dn_meta = dict(
            num_denoising_queries=2 * max_num_target * num_groups,
            num_denoising_groups=num_groups)
        return dn_label_query, dn_bbox_query, dn_mask, dn_meta

    def noisy_label_query(self, gt_labels: Tensor, num_groups: int) -> Tensor:
        """Embedded labels of every copy, a fraction redrawn at random.

        Each of the ``2 * num_groups * T`` copies (group by group, positives
        then negatives, each in the order of ``gt_labels``) is redrawn
        uniformly from the classes with probability ``label_noise_scale /
        2`` (it may redraw its own class).

        Args:
            gt_labels (Tensor): (T,) int64, all images' labels in order.
            num_groups (int): denoising groups.

        Returns:
            Tensor: (2 * num_groups * T, C).
        """
        labels = gt_labels.repeat(2 * num_groups)
        redraw = torch.nonzero(
            torch.rand_like(labels.float()) < self.label_noise_scale * 0.5
        ).view(-1)
        new_labels = torch.randint_like(redraw, 0, self.num_classes)
        return self.label_embedding(labels.scatter(0, redraw, new_labels))

    def noisy_bbox_query(self, gt_bboxes: Tensor, num_groups: int) -> Tensor:
        """Noised boxes of every copy (DINO, Sec. 3.3, Fig. 3).

        Each corner coordinate moves by ``box_noise_scale / 2`` times the
        box's width (x) or height (y) times a random factor: in (-1, 1) for
        positives, in (-2, -1] or [1, 2) for negatives; boxes are then
        clipped to the image.

        Args:
            gt_bboxes (Tensor): (T, 4) normalised xyxy.
            num_groups (int): denoising groups.

        Returns:
            Tensor: (2 * num_groups * T, 4) unactivated normalised
            ``(cx, cy, w, h)`` (``inverse_sigmoid`` with eps 1e-3).
        """
        num_targets = len(gt_bboxes)
        bboxes = gt_bboxes.repeat(2 * num_groups, 1)  # (2GT, 4) xyxy
        # copies [2gT + T, 2gT + 2T) of group g are the negatives
        group_starts = 2 * num_targets * torch.arange(
            num_groups, dtype=torch.long, device=gt_bboxes.device)
        negatives = (group_starts[:, None] + num_targets + torch.arange(
            num_targets, dtype=torch.long, device=gt_bboxes.device)).flatten()
        sign = torch.randint_like(
            bboxes, low=0, high=2, dtype=torch.float32) * 2.0 - 1.0
        factor = torch.rand_like(bboxes)  # positives [0, 1)
        factor[negatives] += 1.0  # negatives [1, 2)
        factor *= sign
        # (w, h, w, h) of each box
        size = bbox_xyxy_to_cxcywh(bboxes)[:, 2:].repeat(1, 2)
        noisy = bboxes + factor * size * self.box_noise_scale / 2
        noisy = bbox_xyxy_to_cxcywh(noisy.clamp(min=0.0, max=1.0))
        return inverse_sigmoid(noisy, eps=1e-3)

    def collate(self, label_query: Tensor, bbox_query: Tensor,
                batch_index: Tensor, num_targets: List[int],
                num_groups: int) -> Tuple[Tensor, Tensor]:
        """Place each copy in its image's query sequence, padded to the
        fullest image.

        Args:
            label_query (Tensor): (2 * num_groups * T, C).
            bbox_query (Tensor): (2 * num_groups * T, 4).
            batch_index (Tensor): (T,) int64 image of each box.
            num_targets (list[int]): G_i, boxes per image (sum T).
            num_groups (int): denoising groups.

        Returns:
            tuple: (B, D, C) and (B, D, 4), zero at padding;
            ``D = 2 * max(G_i) * num_groups``.
        """
        device = label_query.device
        max_num_target = max(num_targets)
        num_denoising_queries = 2 * max_num_target * num_groups
        # position of each box within its image, then of each copy
        index_in_image = torch.cat([
            torch.arange(n, device=device) for n in num_targets
        ]).long()
        query_index = torch.cat([
            index_in_image + max_num_target * copy
            for copy in range(2 * num_groups)
        ])
        image_index = batch_index.repeat(2 * num_groups)
        batch_size = len(num_targets)
        dn_label_query = torch.zeros(
            batch_size, num_denoising_queries, self.embed_dims,
            device=device)
        dn_bbox_query = torch.zeros(
            batch_size, num_denoising_queries, 4, device=device)
        dn_label_query[image_index, query_index] = label_query
        dn_bbox_query[image_index, query_index] = bbox_query
        return dn_label_query, dn_bbox_query
