"""Optimal one-to-one matching of predictions and ground truth (Deformable
DETR, Zhu et al., arXiv 2010.04159, Sec. 3 "DETR"; DETR,
Carion et al. 2020, Sec. 3.1, Eq. 1)."""
from typing import List, Optional, Union

import torch
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment

from ddetr_plugin.registry import TASK_UTILS


@TASK_UTILS.register_module()
class HungarianAssigner(BaseAssigner):
    """Assign each prediction at most one ground-truth box by minimising the
    summed matching cost with ``scipy.optimize.linear_sum_assignment``.

    The costs are built through ``TASK_UTILS``, so mmdet's ``FocalLossCost``,
    ``BBoxL1Cost`` and ``IoUCost`` are used as they are (Deformable DETR:
    focal 2, L1 5 on normalised ``(cx, cy, w, h)``, GIoU 2).

    Args:
        match_costs (dict | list[dict]): configs of the match costs; each is
            called with ``pred_instances``, ``gt_instances``, ``img_meta``
            and returns a (num_preds, num_gts) cost.

    Raises:
        ValueError: an empty ``match_costs`` list.
    """

    def __init__(self, match_costs: Union[dict, List[dict]]) -> None:
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not match_costs:
            raise ValueError('match_costs must not be empty')
        self.match_costs = [TASK_UTILS.build(cost) for cost in match_costs]

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: Optional[dict] = None,
               **kwargs) -> AssignResult:
        """Match the predictions of one image to its ground truth.

        Args:
            pred_instances (InstanceData): ``scores`` (num_preds,
                num_classes) logits and ``bboxes`` (num_preds, 4) pixel
                ``(x1, y1, x2, y2)`` (what the costs read).
            gt_instances (InstanceData): ``labels`` (num_gts,) int64 and
                ``bboxes`` (num_gts, 4) pixel ``(x1, y1, x2, y2)``.
            img_meta (dict, optional): image meta, ``img_shape`` ``(h, w)``
                normalises the L1 cost.

        Returns:
            AssignResult: ``gt_inds`` (num_preds,) int64, 0 for background,
            ``i + 1`` for ground truth ``i``; ``labels`` (num_preds,) the
            matched labels, -1 for background. With more ground truths than
            predictions, every prediction is matched and the rest of the
            ground truths stay unmatched; with none, all are background.

        Raises:
            ValueError: the summed cost has NaN or infinite entries.
        """
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        gt_labels = gt_instances.labels
        device = gt_labels.device
        assigned_gt_inds = torch.zeros(
            num_preds, dtype=torch.long, device=device)
        assigned_labels = torch.full((num_preds, ),
                                     -1,
                                     dtype=torch.long,
                                     device=device)
        if num_gts == 0 or num_preds == 0:
            return AssignResult(
                num_gts=num_gts,
                gt_inds=assigned_gt_inds,
                max_overlaps=None,
                labels=assigned_labels)

        cost = torch.stack([
            match_cost(
                pred_instances=pred_instances,
                gt_instances=gt_instances,
                img_meta=img_meta) for match_cost in self.match_costs
        ]).sum(dim=0).detach().cpu()
        if not torch.isfinite(cost).all():
            raise ValueError('matching cost has NaN or infinite entries; '
                             'check the predicted boxes and scores')
        matched_row_inds, matched_col_inds = linear_sum_assignment(cost)
        matched_row_inds = torch.from_numpy(matched_row_inds).to(device)
        matched_col_inds = torch.from_numpy(matched_col_inds).to(device)
        assigned_gt_inds[matched_row_inds] = matched_col_inds + 1
        assigned_labels[matched_row_inds] = gt_labels[matched_col_inds]
        return AssignResult(
            num_gts=num_gts,
            gt_inds=assigned_gt_inds,
            max_overlaps=None,
            labels=assigned_labels)
