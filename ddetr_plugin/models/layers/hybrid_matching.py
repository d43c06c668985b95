"""The two pieces of hybrid matching that are not losses: the decoder
self-attention mask that keeps the one-to-one and one-to-many query groups
apart, and the ground truth repeated for the one-to-many group (Jia et al.,
"DETRs with Hybrid Matching", CVPR 2023, arXiv 2207.13080, Sec. 3.2 "Hybrid
Branch Scheme"; as the authors' H-Deformable-DETR code)."""
import torch
from mmengine.structures import InstanceData
from torch import Tensor


def hybrid_self_attn_mask(num_queries_one2one: int, num_queries: int,
                          device: torch.device) -> Tensor:
    """Decoder self-attention mask of the two query groups.

    The first ``num_queries_one2one`` queries (the one-to-one group, the
    only one at inference) and the remaining ones (the one-to-many group)
    attend within their own group only, so the one-to-one group computes
    exactly what it would without the other.

    Args:
        num_queries_one2one (int): Q1, size of the first group.
        num_queries (int): Q = Q1 + Q2, all queries.
        device (torch.device): device of the mask.

    Returns:
        Tensor: (Q, Q) bool, True where query ``i`` must not attend to query
        ``j`` (``nn.MultiheadAttention``'s ``attn_mask`` convention).

    Raises:
        ValueError: ``num_queries_one2one`` outside ``[0, num_queries]``.
    """
    if not 0 <= num_queries_one2one <= num_queries:
        raise ValueError(f'num_queries_one2one={num_queries_one2one} must '
                         f'be within [0, num_queries={num_queries}]')
    group = torch.arange(num_queries, device=device) >= num_queries_one2one
    # (Q, 1) != (1, Q): True across the groups
    return group[:, None] != group[None, :]


def repeat_ground_truth(gt_instances: InstanceData,
                        k_one2many: int) -> InstanceData:
    """One image's ground truth repeated ``k_one2many`` times, the targets of
    the one-to-many group (each object may then be matched to up to
    ``k_one2many`` queries by the usual Hungarian matching).

    Args:
        gt_instances (InstanceData): ``bboxes`` (G, 4) and ``labels`` (G,),
            and any other per-instance field.
        k_one2many (int): K >= 1.

    Returns:
        InstanceData: every field (K * G, ...), in blocks: rows ``0..G-1``
        are the original, then the same again, K times.

    Raises:
        ValueError: ``k_one2many`` < 1.
    """
    if k_one2many < 1:
        raise ValueError(f'k_one2many must be >= 1, got {k_one2many}')
    return InstanceData.cat([gt_instances] * k_one2many)
