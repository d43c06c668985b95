"""Classification and box prediction on the decoded queries, the set
prediction loss and the inference post-processing of Deformable DETR (Zhu et
al., arXiv 2010.04159, Sec. 3 "DETR", Sec. 4.2, Sec. 5, Appendix A.3-A.4).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import Linear
from mmdet.models.utils import multi_apply
from mmdet.structures import SampleList
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule, bias_init_with_prob, constant_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ddetr_plugin.registry import MODELS, TASK_UTILS
from ..layers.decoder import refine_boxes


@MODELS.register_module()
class DeformableDETRHead(BaseModule):
    """Per-layer class and box branches with Hungarian-matched losses.

    There is one prediction layer per decoder layer, plus one for the
    encoder proposals with ``as_two_stage``. The branches of all layers are
    one shared module unless each decoder layer refines boxes
    (``with_box_refine``), as in the paper's reference code; the state_dict
    then repeats the shared weights under every index, like mmdet's.

    Losses (Sec. 3 and Sec. 5): sigmoid focal classification, L1 on
    normalised ``(cx, cy, w, h)`` and GIoU on pixel boxes, for the last
    decoder layer (``loss_cls``, ``loss_bbox``, ``loss_iou``), every other
    decoder layer (``d0.loss_cls`` ...) and, two-stage, the encoder proposals
    with class 0 as foreground (``enc_loss_cls`` ...); all averaged over the
    number of matched ground truths across GPUs.

    Args:
        num_classes (int): object classes, without background.
        embed_dims (int): width of the decoder queries. Default 256.
        num_reg_fcs (int): hidden Linear+ReLU layers of a box branch.
        num_pred_layer (int): prediction layers (decoder layers, +1 if
            two-stage). Set by the detector.
        share_pred_layer (bool): one module for all prediction layers (not
            ``with_box_refine``). Set by the detector.
        as_two_stage (bool): two-stage variant. Set by the detector.
        sync_cls_avg_factor (bool): average the classification loss over
            the matched ground truths of all GPUs. Default False.
        loss_cls (dict): classification loss, a sigmoid loss
            (``use_sigmoid=True``).
        loss_bbox (dict): regression loss on normalised boxes.
        loss_iou (dict): IoU loss on pixel boxes.
        bbox_coder (dict): box coder, ``NormalizedCXCYWHBBoxCoder``.
        train_cfg (dict, optional): ``assigner`` config; needed for
            :meth:`loss`.
        test_cfg (dict, optional): ``max_per_img`` detections per image.
        init_cfg (dict, optional): mmengine initialisation config.

    Raises:
        ValueError: a classification loss without ``use_sigmoid``.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_reg_fcs: int = 2,
                 num_pred_layer: int = 6,
                 share_pred_layer: bool = True,
                 as_two_stage: bool = False,
                 sync_cls_avg_factor: bool = False,
                 loss_cls: dict = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
                     loss_weight=2.0),
                 loss_bbox: dict = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: dict = dict(type='GIoULoss', loss_weight=2.0),
                 bbox_coder: dict = dict(type='NormalizedCXCYWHBBoxCoder'),
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = dict(max_per_img=100),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_reg_fcs = num_reg_fcs
        self.num_pred_layer = num_pred_layer
        self.share_pred_layer = share_pred_layer
        self.as_two_stage = as_two_stage
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.loss_cls = MODELS.build(loss_cls)
        if not self.loss_cls.use_sigmoid:
            raise ValueError('DeformableDETRHead needs a sigmoid '
                             'classification loss (use_sigmoid=True)')
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.assigner = TASK_UTILS.build(
            train_cfg['assigner']) if train_cfg else None
        self._init_layers()

    def _init_layers(self) -> None:
        """Build ``cls_branches`` and ``reg_branches`` (``num_pred_layer``
        each; copies of one initial module, or that module repeated)."""
        cls_branch = Linear(self.embed_dims, self.num_classes)
        reg_layers = []
        for _ in range(self.num_reg_fcs):
            reg_layers += [Linear(self.embed_dims, self.embed_dims), nn.ReLU()]
        reg_branch = nn.Sequential(*reg_layers, Linear(self.embed_dims, 4))

        def per_layer(branch: nn.Module) -> nn.ModuleList:
            if self.share_pred_layer:
                return nn.ModuleList([branch] * self.num_pred_layer)
            return nn.ModuleList(
                copy.deepcopy(branch) for _ in range(self.num_pred_layer))

        self.cls_branches = per_layer(cls_branch)
        self.reg_branches = per_layer(reg_branch)

    def init_weights(self) -> None:
        """Prior probability 0.01 for the class biases (focal loss); zero
        last box layers, with ``(w, h)`` bias -2 on the first one
        (single stage), as mmdet."""
        bias_init = bias_init_with_prob(0.01)
        for m in self.cls_branches:
            nn.init.constant_(m.bias, bias_init)
        for m in self.reg_branches:
            constant_init(m[-1], 0, bias=0)
        if not self.as_two_stage:
            nn.init.constant_(self.reg_branches[0][-1].bias.data[2:], -2.0)

    @property
    def proposal_branches(self) -> Tuple[nn.Module, nn.Module]:
        """``(cls_branch, reg_branch)`` of the two-stage encoder proposals
        (the last prediction layer)."""
        return self.cls_branches[-1], self.reg_branches[-1]

    def forward(self, hidden_states: Tensor,
                references: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        """Predict classes and boxes with every decoder layer.

        Args:
            hidden_states (Tensor): (num_decoder_layers, B, Q, C).
            references (Sequence[Tensor]): at least ``num_decoder_layers``
                normalised references (B, Q, 2 or 4); layer ``d`` refines
                ``references[d]``.

        Returns:
            tuple: ``all_layers_cls_scores`` (num_decoder_layers, B, Q,
            num_classes) logits and ``all_layers_bbox_preds``
            (num_decoder_layers, B, Q, 4) normalised ``(cx, cy, w, h)``.
        """
        all_layers_cls_scores, all_layers_bbox_preds = [], []
        for layer_id, hidden_state in enumerate(hidden_states):
            all_layers_cls_scores.append(
                self.cls_branches[layer_id](hidden_state))
            all_layers_bbox_preds.append(
                refine_boxes(self.reg_branches[layer_id](hidden_state),
                             references[layer_id]))
        return torch.stack(all_layers_cls_scores), torch.stack(
            all_layers_bbox_preds)

    def loss(self, hidden_states: Tensor, references: Sequence[Tensor],
             enc_outputs_class: Optional[Tensor],
             enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Forward and compute the losses.

        Args:
            hidden_states (Tensor): (num_decoder_layers, B, Q, C).
            references (Sequence[Tensor]): decoder references, see
                :meth:`forward`.
            enc_outputs_class (Tensor, optional): (B, S, num_classes)
                encoder proposal logits, two-stage only.
            enc_outputs_coord (Tensor, optional): (B, S, 4) normalised
                encoder proposal boxes, two-stage only.
            batch_data_samples (list[DetDataSample]): with
                ``gt_instances`` (pixel xyxy ``bboxes``, ``labels``) and
                ``img_shape`` metainfo.

        Returns:
            dict[str, Tensor]: the losses, named as mmdet's.

        Raises:
            RuntimeError: the head was built without ``train_cfg``.
        """
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        all_layers_cls_scores, all_layers_bbox_preds = self(
            hidden_states, references)
        return self.loss_by_feat(all_layers_cls_scores, all_layers_bbox_preds,
                                 enc_outputs_class, enc_outputs_coord,
                                 batch_gt_instances, batch_img_metas)

    def loss_by_feat(self, all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: List[InstanceData],
                     batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Losses of every decoder layer and of the encoder proposals.

        Args:
            all_layers_cls_scores (Tensor): (num_decoder_layers, B, Q,
                num_classes) logits.
            all_layers_bbox_preds (Tensor): (num_decoder_layers, B, Q, 4)
                normalised ``(cx, cy, w, h)``.
            enc_cls_scores (Tensor, optional): (B, S, num_classes).
            enc_bbox_preds (Tensor, optional): (B, S, 4).
            batch_gt_instances (list[InstanceData]): per image ``bboxes``
                (pixel xyxy) and ``labels``.
            batch_img_metas (list[dict]): per image, with ``img_shape``.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` (last
            layer), ``d{i}.loss_*`` (other layers) and ``enc_loss_*``
            (two-stage).
        """
        losses_cls, losses_bbox, losses_iou = multi_apply(
            self.loss_by_feat_single,
            all_layers_cls_scores,
            all_layers_bbox_preds,
            batch_gt_instances=batch_gt_instances,
            batch_img_metas=batch_img_metas)
        loss_dict = dict(
            loss_cls=losses_cls[-1],
            loss_bbox=losses_bbox[-1],
            loss_iou=losses_iou[-1])
        for i, (loss_cls, loss_bbox, loss_iou) in enumerate(
                zip(losses_cls[:-1], losses_bbox[:-1], losses_iou[:-1])):
            loss_dict[f'd{i}.loss_cls'] = loss_cls
            loss_dict[f'd{i}.loss_bbox'] = loss_bbox
            loss_dict[f'd{i}.loss_iou'] = loss_iou

        if enc_cls_scores is not None:
            # class-agnostic proposals: every object is class 0
            proposal_gt_instances = copy.deepcopy(batch_gt_instances)
            for gt_instances in proposal_gt_instances:
                gt_instances.labels = torch.zeros_like(gt_instances.labels)
            (loss_dict['enc_loss_cls'], loss_dict['enc_loss_bbox'],
             loss_dict['enc_loss_iou']) = self.loss_by_feat_single(
                 enc_cls_scores,
                 enc_bbox_preds,
                 batch_gt_instances=proposal_gt_instances,
                 batch_img_metas=batch_img_metas)
        return loss_dict

    def loss_by_feat_single(self, cls_scores: Tensor, bbox_preds: Tensor,
                            batch_gt_instances: List[InstanceData],
                            batch_img_metas: List[dict]) -> Tuple[Tensor]:
        """Losses of one prediction layer.

        Args:
            cls_scores (Tensor): (B, Q, num_classes) logits.
            bbox_preds (Tensor): (B, Q, 4) normalised ``(cx, cy, w, h)``.
            batch_gt_instances (list[InstanceData]): ground truth per image.
            batch_img_metas (list[dict]): per image, with ``img_shape``.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``.
        """
        (labels_list, label_weights_list, bbox_targets_list,
         bbox_weights_list, num_total_pos) = self.get_targets(
             list(cls_scores), list(bbox_preds), batch_gt_instances,
             batch_img_metas)
        return self.losses_from_targets(cls_scores, bbox_preds, labels_list,
                                        label_weights_list,
                                        bbox_targets_list, bbox_weights_list,
                                        num_total_pos, batch_img_metas)

    def losses_from_targets(self, cls_scores: Tensor, bbox_preds: Tensor,
                            labels_list: List[Tensor],
                            label_weights_list: List[Tensor],
                            bbox_targets_list: List[Tensor],
                            bbox_weights_list: List[Tensor],
                            num_total_pos: int,
                            batch_img_metas: List[dict]) -> Tuple[Tensor]:
        """Focal, L1 and GIoU losses of one prediction layer against given
        per-image targets (matched, or fixed as DINO's denoising ones).

        Args:
            cls_scores (Tensor): (B, Q, num_classes) logits.
            bbox_preds (Tensor): (B, Q, 4) normalised ``(cx, cy, w, h)``.
            labels_list, label_weights_list (list[Tensor]): (Q,) per image;
                label ``num_classes`` is background.
            bbox_targets_list, bbox_weights_list (list[Tensor]): (Q, 4) per
                image, normalised ``(cx, cy, w, h)`` targets.
            num_total_pos (int): positives of this process's batch; the
                losses are averaged over the mean of all processes'.
            batch_img_metas (list[dict]): per image, with ``img_shape``.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``.
        """
        labels = torch.cat(labels_list, 0)
        label_weights = torch.cat(label_weights_list, 0)
        bbox_targets = torch.cat(bbox_targets_list, 0)
        bbox_weights = torch.cat(bbox_weights_list, 0)

        cls_scores = cls_scores.reshape(-1, self.num_classes)
        cls_avg_factor = num_total_pos * 1.0
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(
                cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)
        if len(cls_scores):
            loss_cls = self.loss_cls(
                cls_scores, labels, label_weights, avg_factor=cls_avg_factor)
        else:  # no query (DINO without denoising queries): 0, in the graph
            loss_cls = cls_scores.sum()

        # average number of ground truths over all GPUs
        num_total_pos = torch.clamp(
            reduce_mean(loss_cls.new_tensor([num_total_pos])), min=1).item()

        # GIoU on pixel boxes, L1 on normalised ones
        bboxes = torch.cat([
            self.bbox_coder.decode(pred, meta['img_shape'])
            for pred, meta in zip(bbox_preds, batch_img_metas)
        ])
        bboxes_gt = torch.cat([
            self.bbox_coder.decode(target, meta['img_shape'])
            for target, meta in zip(bbox_targets_list, batch_img_metas)
        ])
        loss_iou = self.loss_iou(
            bboxes, bboxes_gt, bbox_weights, avg_factor=num_total_pos)
        loss_bbox = self.loss_bbox(
            bbox_preds.reshape(-1, 4),
            bbox_targets,
            bbox_weights,
            avg_factor=num_total_pos)
        return loss_cls, loss_bbox, loss_iou

    def get_targets(self, cls_scores_list: List[Tensor],
                    bbox_preds_list: List[Tensor],
                    batch_gt_instances: List[InstanceData],
                    batch_img_metas: List[dict]) -> tuple:
        """Match and build the targets of one prediction layer, per image.

        Args:
            cls_scores_list (list[Tensor]): (Q, num_classes) per image.
            bbox_preds_list (list[Tensor]): (Q, 4) normalised per image.
            batch_gt_instances (list[InstanceData]): ground truth per image.
            batch_img_metas (list[dict]): per image, with ``img_shape``.

        Returns:
            tuple: lists of per-image ``labels`` (Q,) int64
            (``num_classes`` = background), ``label_weights`` (Q,),
            ``bbox_targets`` (Q, 4) normalised ``(cx, cy, w, h)``,
            ``bbox_weights`` (Q, 4), and ``num_total_pos`` (int).
        """
        (labels_list, label_weights_list, bbox_targets_list,
         bbox_weights_list, pos_inds_list) = multi_apply(
             self._get_targets_single, cls_scores_list, bbox_preds_list,
             batch_gt_instances, batch_img_metas)
        num_total_pos = sum(inds.numel() for inds in pos_inds_list)
        return (labels_list, label_weights_list, bbox_targets_list,
                bbox_weights_list, num_total_pos)

    def _get_targets_single(self, cls_score: Tensor, bbox_pred: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict) -> tuple:
        """Hungarian-match one image's predictions and build its targets.

        Args:
            cls_score (Tensor): (Q, num_classes) logits.
            bbox_pred (Tensor): (Q, 4) normalised ``(cx, cy, w, h)``.
            gt_instances (InstanceData): ``bboxes`` (G, 4) pixel xyxy,
                ``labels`` (G,).
            img_meta (dict): with ``img_shape`` ``(h, w)``.

        Returns:
            tuple: ``labels``, ``label_weights``, ``bbox_targets``,
            ``bbox_weights`` and ``pos_inds`` (matched query indices).

        Raises:
            RuntimeError: the head was built without ``train_cfg``.
        """
        if self.assigner is None:
            raise RuntimeError('DeformableDETRHead needs train_cfg with an '
                               'assigner to compute losses')
        img_shape = img_meta['img_shape']
        num_bboxes = bbox_pred.size(0)
        pred_instances = InstanceData(
            scores=cls_score,
            bboxes=self.bbox_coder.decode(bbox_pred, img_shape))
        assign_result = self.assigner.assign(
            pred_instances=pred_instances,
            gt_instances=gt_instances,
            img_meta=img_meta)

        gt_bboxes = gt_instances.bboxes
        pos_inds = torch.nonzero(
            assign_result.gt_inds > 0, as_tuple=False).squeeze(-1).unique()
        pos_assigned_gt_inds = assign_result.gt_inds[pos_inds] - 1

        labels = gt_bboxes.new_full((num_bboxes, ),
                                    self.num_classes,
                                    dtype=torch.long)
        labels[pos_inds] = gt_instances.labels[pos_assigned_gt_inds]
        label_weights = gt_bboxes.new_ones(num_bboxes)
        bbox_targets = torch.zeros_like(bbox_pred, dtype=gt_bboxes.dtype)
        bbox_weights = torch.zeros_like(bbox_pred, dtype=gt_bboxes.dtype)
        bbox_weights[pos_inds] = 1.0
        bbox_targets[pos_inds] = self.bbox_coder.encode(
            gt_bboxes[pos_assigned_gt_inds.long(), :], img_shape)
        return (labels, label_weights, bbox_targets, bbox_weights, pos_inds)

    def predict(self,
                hidden_states: Tensor,
                references: Sequence[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = True) -> List[InstanceData]:
        """Forward and post-process the last decoder layer.

        Args:
            hidden_states (Tensor): (num_decoder_layers, B, Q, C).
            references (Sequence[Tensor]): decoder references.
            batch_data_samples (list[DetDataSample]): with ``img_shape``
                and, to rescale, ``scale_factor`` metainfo.
            rescale (bool): boxes in the original image instead of the
                resized input.

        Returns:
            list[InstanceData]: per image ``scores`` (K,), ``labels`` (K,)
            int64 and ``bboxes`` (K, 4) pixel xyxy, ``K = max_per_img``.
        """
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        all_layers_cls_scores, all_layers_bbox_preds = self(
            hidden_states, references)
        return self.predict_by_feat(all_layers_cls_scores,
                                    all_layers_bbox_preds, batch_img_metas,
                                    rescale)

    def predict_by_feat(self,
                        all_layers_cls_scores: Tensor,
                        all_layers_bbox_preds: Tensor,
                        batch_img_metas: List[dict],
                        rescale: bool = False) -> List[InstanceData]:
        """Detections from the last decoder layer's outputs.

        Args:
            all_layers_cls_scores (Tensor): (num_decoder_layers, B, Q,
                num_classes) logits.
            all_layers_bbox_preds (Tensor): (num_decoder_layers, B, Q, 4)
                normalised ``(cx, cy, w, h)``.
            batch_img_metas (list[dict]): per image, with ``img_shape`` and
                ``scale_factor``.
            rescale (bool): boxes in the original image.

        Returns:
            list[InstanceData]: see :meth:`predict`.
        """
        return [
            self._predict_by_feat_single(cls_score, bbox_pred, img_meta,
                                         rescale)
            for cls_score, bbox_pred, img_meta in zip(
                all_layers_cls_scores[-1], all_layers_bbox_preds[-1],
                batch_img_metas)
        ]

    def _predict_by_feat_single(self,
                                cls_score: Tensor,
                                bbox_pred: Tensor,
                                img_meta: dict,
                                rescale: bool = True) -> InstanceData:
        """Top ``max_per_img`` (query, class) pairs of one image (no NMS).

        Args:
            cls_score (Tensor): (Q, num_classes) logits.
            bbox_pred (Tensor): (Q, 4) normalised ``(cx, cy, w, h)``.
            img_meta (dict): ``img_shape`` ``(h, w)`` and ``scale_factor``
                ``(w_scale, h_scale)`` of the resize from the original image.
            rescale (bool): divide the boxes by ``scale_factor``.

        Returns:
            InstanceData: ``scores`` (K,) sigmoid probabilities, ``labels``
            (K,) int64, ``bboxes`` (K, 4) pixel xyxy clipped to the image;
            ``K = min(max_per_img, Q * num_classes)``.
        """
        # fewer (query, class) pairs than max_per_img only when two-stage
        # had fewer tokens than queries (DeformableDETRTransformer)
        max_per_img = min(self.test_cfg.get('max_per_img', len(cls_score)),
                          cls_score.numel())
        scores, indexes = cls_score.sigmoid().view(-1).topk(max_per_img)
        det_labels = indexes % self.num_classes
        bbox_index = indexes // self.num_classes
        det_bboxes = self.bbox_coder.decode(
            bbox_pred[bbox_index], img_meta['img_shape'], clamp=True)
        if rescale:
            det_bboxes /= det_bboxes.new_tensor(
                img_meta['scale_factor']).repeat((1, 2))
        results = InstanceData()
        results.bboxes = det_bboxes
        results.scores = scores
        results.labels = det_labels
        return results
