"""Deformable DETR's losses plus the denoising loss on the noised ground-truth
queries prepended in training (contrastive denoising: Zhang et al., "DINO",
arXiv 2203.03605, Sec. 3.3; denoising: Li et al., "DN-DETR", CVPR 2022,
arXiv 2203.01305; the denoising targets and loss as mmdet 3.3's
``DINOHead``)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.utils import multi_apply
from mmdet.structures import SampleList
from mmengine.structures import InstanceData
from torch import Tensor

from ddetr_plugin.registry import MODELS
from .deformable_detr_head import DeformableDETRHead


@MODELS.register_module()
class DNDeformableDETRHead(DeformableDETRHead):
    """:class:`DeformableDETRHead` with the denoising loss.

    The decoder's queries are ``num_denoising_queries`` denoising queries
    (``dn_meta``, from :class:`~..layers.denoising.CdnQueryGenerator`)
    then the matching queries. Losses, named as mmdet's:

    * matching queries and encoder proposals: Deformable DETR's
      (:meth:`loss_matching`: ``loss_cls``, ``d0.loss_cls``, ...,
      ``enc_loss_*`` two-stage);
    * ``dn_loss_*`` and ``d{i}.dn_loss_*``: each denoising query's target
      is fixed, no matching: a positive reconstructs its ground-truth box
      and class, a negative is background (classification only); padding
      queries are background too. With no denoising query in the batch
      (no ground truth at all) they are zeros that keep the graph.

    At inference there are no denoising queries and the head is
    :class:`DeformableDETRHead`.

    Args:
        *args, **kwargs: see :class:`DeformableDETRHead`.
    """

    def loss(self, hidden_states: Tensor, references: Sequence[Tensor],
             enc_outputs_class: Tensor, enc_outputs_coord: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Dict[str, int]) -> Dict[str, Tensor]:
        """Forward and compute the losses.

        Args:
            hidden_states (Tensor): (num_decoder_layers, B, D + Q, C), the
                denoising queries first.
            references (Sequence[Tensor]): decoder references, see
                :meth:`forward`.
            enc_outputs_class (Tensor, optional): encoder proposal logits,
                (B, S, num_classes) for every pixel (two-stage Deformable
                DETR) or (B, Q, num_classes) for the selected ones (DINO);
                None single stage.
            enc_outputs_coord (Tensor, optional): their (B, S or Q, 4)
                normalised boxes.
            batch_data_samples (list[DetDataSample]): with
                ``gt_instances`` and ``img_shape`` metainfo.
            dn_meta (dict): ``num_denoising_queries`` (D) and
                ``num_denoising_groups``.

        Returns:
            dict[str, Tensor]: see :meth:`loss_by_feat`.
        """
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        all_layers_cls_scores, all_layers_bbox_preds = self(
            hidden_states, references)
        return self.loss_by_feat(all_layers_cls_scores, all_layers_bbox_preds,
                                 enc_outputs_class, enc_outputs_coord,
                                 batch_gt_instances, batch_img_metas, dn_meta)

    def loss_by_feat(self, all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: List[InstanceData],
                     batch_img_metas: List[dict],
                     dn_meta: Optional[Dict[str, int]] = None
                     ) -> Dict[str, Tensor]:
        """Losses of the matching queries, the encoder proposals
        (:meth:`loss_matching`) and the denoising queries.

        Args:
            all_layers_cls_scores (Tensor): (num_decoder_layers, B, D + Q,
                num_classes) logits.
            all_layers_bbox_preds (Tensor): (num_decoder_layers, B, D + Q,
                4) normalised ``(cx, cy, w, h)``.
            enc_cls_scores (Tensor, optional): (B, S or Q, num_classes),
                see :meth:`loss`.
            enc_bbox_preds (Tensor, optional): (B, S or Q, 4).
            batch_gt_instances (list[InstanceData]): per image ``bboxes``
                (pixel xyxy) and ``labels``.
            batch_img_metas (list[dict]): per image, with ``img_shape``.
            dn_meta (dict, optional): see :meth:`loss`; None: no denoising
                queries (D = 0).

        Returns:
            dict[str, Tensor]: ``loss_*`` / ``d{i}.loss_*``,
            ``enc_loss_*`` and ``dn_loss_*`` / ``d{i}.dn_loss_*``.
        """
        num_denoising_queries = dn_meta['num_denoising_queries'] \
            if dn_meta is not None else 0
        loss_dict = self.loss_matching(
            all_layers_cls_scores[:, :, num_denoising_queries:],
            all_layers_bbox_preds[:, :, num_denoising_queries:],
            enc_cls_scores, enc_bbox_preds, batch_gt_instances,
            batch_img_metas)
        if dn_meta is not None:
            dn_losses_cls, dn_losses_bbox, dn_losses_iou = multi_apply(
                self._loss_dn_single,
                all_layers_cls_scores[:, :, :num_denoising_queries],
                all_layers_bbox_preds[:, :, :num_denoising_queries],
                batch_gt_instances=batch_gt_instances,
                batch_img_metas=batch_img_metas,
                dn_meta=dn_meta)
            loss_dict['dn_loss_cls'] = dn_losses_cls[-1]
            loss_dict['dn_loss_bbox'] = dn_losses_bbox[-1]
            loss_dict['dn_loss_iou'] = dn_losses_iou[-1]
            for i, (loss_cls, loss_bbox, loss_iou) in enumerate(
                    zip(dn_losses_cls[:-1], dn_losses_bbox[:-1],
                        dn_losses_iou[:-1])):
                loss_dict[f'd{i}.dn_loss_cls'] = loss_cls
                loss_dict[f'd{i}.dn_loss_bbox'] = loss_bbox
                loss_dict[f'd{i}.dn_loss_iou'] = loss_iou
        return loss_dict

    def loss_matching(self, all_layers_cls_scores: Tensor,
                      all_layers_bbox_preds: Tensor,
                      enc_cls_scores: Optional[Tensor],
                      enc_bbox_preds: Optional[Tensor],
                      batch_gt_instances: List[InstanceData],
                      batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Losses of the matching queries and of the encoder proposals:
        :meth:`DeformableDETRHead.loss_by_feat` (two-stage: every pixel's
        proposal, class-agnostic).

        Args:
            all_layers_cls_scores (Tensor): (num_decoder_layers, B, Q,
                num_classes) logits of the matching queries.
            all_layers_bbox_preds (Tensor): (num_decoder_layers, B, Q, 4).
            enc_cls_scores, enc_bbox_preds, batch_gt_instances,
            batch_img_metas: see :meth:`loss_by_feat`.

        Returns:
            dict[str, Tensor]: ``loss_*``, ``d{i}.loss_*``, ``enc_loss_*``.
        """
        return super().loss_by_feat(all_layers_cls_scores,
                                    all_layers_bbox_preds, enc_cls_scores,
                                    enc_bbox_preds, batch_gt_instances,
                                    batch_img_metas)

    def _loss_dn_single(self, dn_cls_scores: Tensor, dn_bbox_preds: Tensor,
                        batch_gt_instances: List[InstanceData],
                        batch_img_metas: List[dict],
                        dn_meta: Dict[str, int]) -> Tuple[Tensor, ...]:
        """Denoising losses of one decoder layer.

        Args:
            dn_cls_scores (Tensor): (B, D, num_classes) logits.
            dn_bbox_preds (Tensor): (B, D, 4) normalised boxes.
            batch_gt_instances (list[InstanceData]): ground truth per image.
            batch_img_metas (list[dict]): per image, with ``img_shape``.
            dn_meta (dict): see :meth:`loss`.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``,
            averaged over the positive queries of all GPUs; zeros (in the
            graph) where the batch has no denoising query (D = 0; the
            averaging still joins the other processes).
        """
        (labels_list, label_weights_list, bbox_targets_list,
         bbox_weights_list, num_total_pos) = multi_apply(
             self._get_dn_targets_single,
             batch_gt_instances,
             batch_img_metas,
             dn_meta=dn_meta)
        return self.losses_from_targets(dn_cls_scores, dn_bbox_preds,
                                        labels_list, label_weights_list,
                                        bbox_targets_list, bbox_weights_list,
                                        sum(num_total_pos), batch_img_metas)

    def _get_dn_targets_single(self, gt_instances: InstanceData,
                               img_meta: dict,
                               dn_meta: Dict[str, int]) -> tuple:
        """Fixed targets of one image's denoising queries.

        Group ``g``'s positive for box ``t`` is query ``g * 2M + t``, its
        negative ``g * 2M + M + t`` (``M = D / (2 * num_groups)``, the
        batch's most boxes in an image; see ``CdnQueryGenerator``).

        Args:
            gt_instances (InstanceData): ``bboxes`` (G, 4) pixel xyxy,
                ``labels`` (G,).
            img_meta (dict): with ``img_shape`` ``(h, w)``.
            dn_meta (dict): see :meth:`loss`.

        Returns:
            tuple: ``labels`` (D,) int64 (``num_classes`` = background),
            ``label_weights`` (D,), ``bbox_targets`` (D, 4) normalised
            ``(cx, cy, w, h)``, ``bbox_weights`` (D, 4) and the number of
            positives (``G * num_groups``).
        """
        gt_bboxes = gt_instances.bboxes
        num_groups = dn_meta['num_denoising_groups']
        num_denoising_queries = dn_meta['num_denoising_queries']
        group_size = num_denoising_queries // num_groups
        num_gts = len(gt_bboxes)
        # (num_groups, G) -> (num_groups * G,)
        pos_inds = (torch.arange(num_groups, device=gt_bboxes.device)[:, None]
                    * group_size + torch.arange(
                        num_gts, device=gt_bboxes.device)).flatten()
        labels = gt_bboxes.new_full((num_denoising_queries, ),
                                    self.num_classes,
                                    dtype=torch.long)
        labels[pos_inds] = gt_instances.labels.repeat(num_groups)
        label_weights = gt_bboxes.new_ones(num_denoising_queries)
        bbox_targets = gt_bboxes.new_zeros(num_denoising_queries, 4)
        bbox_weights = gt_bboxes.new_zeros(num_denoising_queries, 4)
        bbox_weights[pos_inds] = 1.0
        bbox_targets[pos_inds] = self.bbox_coder.encode(
            gt_bboxes, img_meta['img_shape']).repeat(num_groups, 1)
        return (labels, label_weights, bbox_targets, bbox_weights,
                len(pos_inds))
