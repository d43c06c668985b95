"""DINO's losses: the denoising head's, with the encoder loss on the selected
proposals and their classes (Zhang et al., arXiv 2203.03605, Sec. 3.3-3.4;
as mmdet 3.3's ``DINOHead``)."""
from typing import Dict, List, Optional

from mmengine.structures import InstanceData
from torch import Tensor

from ddetr_plugin.registry import MODELS
from .deformable_detr_head import DeformableDETRHead
from .dn_deformable_detr_head import DNDeformableDETRHead


@MODELS.register_module()
class DINOHead(DNDeformableDETRHead):
    """:class:`DNDeformableDETRHead` with DINO's encoder loss.

    ``enc_loss_*``: the ``num_queries`` proposals selected by mixed query
    selection, Hungarian-matched with their real classes (two-stage
    Deformable DETR: every pixel, class 0 only). The matching and denoising
    losses are :class:`DNDeformableDETRHead`'s.

    Args:
        *args, **kwargs: see :class:`DeformableDETRHead`.
    """

    def loss_matching(self, all_layers_cls_scores: Tensor,
                      all_layers_bbox_preds: Tensor,
                      enc_cls_scores: Optional[Tensor],
                      enc_bbox_preds: Optional[Tensor],
                      batch_gt_instances: List[InstanceData],
                      batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Losses of the matching queries and of the selected proposals.

        Args:
            all_layers_cls_scores (Tensor): (num_decoder_layers, B, Q,
                num_classes) logits of the matching queries.
            all_layers_bbox_preds (Tensor): (num_decoder_layers, B, Q, 4).
            enc_cls_scores (Tensor, optional): (B, Q, num_classes) logits
                of the selected proposals.
            enc_bbox_preds (Tensor, optional): (B, Q, 4) their normalised
                boxes.
            batch_gt_instances (list[InstanceData]): per image ``bboxes``
                (pixel xyxy) and ``labels``.
            batch_img_metas (list[dict]): per image, with ``img_shape``.

        Returns:
            dict[str, Tensor]: ``loss_*``, ``d{i}.loss_*``, ``enc_loss_*``.
        """
        loss_dict = DeformableDETRHead.loss_by_feat(
            self, all_layers_cls_scores, all_layers_bbox_preds, None, None,
            batch_gt_instances, batch_img_metas)
        if enc_cls_scores is not None:
            (loss_dict['enc_loss_cls'], loss_dict['enc_loss_bbox'],
             loss_dict['enc_loss_iou']) = self.loss_by_feat_single(
                 enc_cls_scores, enc_bbox_preds, batch_gt_instances,
                 batch_img_metas)
        return loss_dict
