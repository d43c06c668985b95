"""Deformable DETR trained with hybrid matching: an auxiliary group of
queries matched one-to-many beside the usual one-to-one queries (Jia et al.,
"DETRs with Hybrid Matching", CVPR 2023, arXiv 2207.13080, Sec. 3.2, "hybrid
branch scheme"; as the authors' H-Deformable-DETR). Training only: at
inference the model is exactly :class:`DeformableDETR`."""
from typing import Dict

from mmdet.structures import SampleList
from torch import Tensor

from ddetr_plugin.registry import MODELS
from ..layers.hybrid_matching import repeat_ground_truth
from .deformable_detr import DeformableDETR, _with_detector_args


@MODELS.register_module()
class HybridDeformableDETR(DeformableDETR):
    """:class:`DeformableDETR` with H-DETR's hybrid branch scheme.

    In training mode the decoder runs ``transformer.num_queries``
    one-to-one queries and ``num_queries_one2many`` one-to-many queries
    (single stage: their own learned embedding; two-stage: the next-best
    encoder proposals after the one-to-one ones), the two groups masked
    from each other in self-attention. The one-to-one group gets Deformable
    DETR's losses as they are (``loss_cls``, ``d0.loss_cls``,
    ``enc_loss_cls``, ...); the one-to-many group the same losses with
    every ground-truth box repeated ``k_one2many`` times, weighted by
    ``lambda_one2many`` and named with a ``_one2many`` suffix
    (``loss_cls_one2many``, ``d0.loss_cls_one2many``, and, two-stage, the
    encoder proposals matched to the repeated boxes:
    ``enc_loss_cls_one2many``). With more repeated boxes than one-to-many
    queries, every query is matched and the surplus repeats stay unmatched
    (as with too few queries in DETR).

    In eval mode (``predict``, ``tools/test.py``, ONNX export) the
    one-to-many queries are not built and the outputs are exactly
    :class:`DeformableDETR`'s; a checkpoint loads into the plain config
    (the single-stage ``transformer.query_embedding_one2many`` is dropped
    on load, with a log line).

    Args:
        *args: see :class:`DeformableDETR`.
        num_queries_one2many (int): one-to-many queries, > 0 (1500 in the
            paper, 5x the 300 one-to-one queries).
        k_one2many (int): repeats of each ground-truth box, >= 1 (6 in the
            paper).
        lambda_one2many (float): weight of the one-to-many losses, >= 0 (1
            in the paper).
        **kwargs: see :class:`DeformableDETR`; ``transformer`` must not set
            ``num_queries_one2many`` itself.

    Raises:
        ValueError: an argument out of range, or ``num_queries_one2many`` <
            ``k_one2many`` (no room for the repeats of even one box).
    """

    def __init__(self,
                 *args,
                 transformer: dict,
                 num_queries_one2many: int = 1500,
                 k_one2many: int = 6,
                 lambda_one2many: float = 1.0,
                 **kwargs) -> None:
        if not (isinstance(num_queries_one2many, int)
                and num_queries_one2many > 0):
            raise ValueError('num_queries_one2many must be a positive int, '
                             f'got {num_queries_one2many!r}')
        if not (isinstance(k_one2many, int) and k_one2many >= 1):
            raise ValueError(
                f'k_one2many must be an int >= 1, got {k_one2many!r}')
        if num_queries_one2many < k_one2many:
            raise ValueError(
                f'num_queries_one2many={num_queries_one2many} < '
                f'k_one2many={k_one2many}: the one-to-many queries cannot '
                'hold the repeats of even one box')
        if not lambda_one2many >= 0:
            raise ValueError(
                f'lambda_one2many must be >= 0, got {lambda_one2many!r}')
        super().__init__(
            *args,
            transformer=_with_detector_args(
                transformer,
                'transformer',
                num_queries_one2many=num_queries_one2many),
            **kwargs)
        self.num_queries_one2many = num_queries_one2many
        self.k_one2many = k_one2many
        self.lambda_one2many = lambda_one2many

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of both query groups.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): with ``gt_instances``
                (pixel xyxy ``bboxes`` of the resized image, ``labels``).

        Returns:
            dict[str, Tensor]: Deformable DETR's losses of the one-to-one
            group, and each again with a ``_one2many`` suffix for the
            one-to-many group (times ``lambda_one2many``).
        """
        outputs = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        # (num_decoder_layers, B, Q1 + Q2, num_classes) and (..., 4)
        all_layers_cls_scores, all_layers_bbox_preds = self.bbox_head(
            outputs['hidden_states'], outputs['references'])
        # Q1: fewer only where two-stage had fewer tokens than queries
        num_queries_one2one = min(self.transformer.num_queries,
                                  all_layers_cls_scores.shape[2])
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        losses = self.bbox_head.loss_by_feat(
            all_layers_cls_scores[:, :, :num_queries_one2one],
            all_layers_bbox_preds[:, :, :num_queries_one2one],
            outputs['enc_outputs_class'], outputs['enc_outputs_coord'],
            batch_gt_instances, batch_img_metas)
        if all_layers_cls_scores.shape[2] == num_queries_one2one:
            return losses  # a batch too small for any one-to-many query
        losses_one2many = self.bbox_head.loss_by_feat(
            all_layers_cls_scores[:, :, num_queries_one2one:],
            all_layers_bbox_preds[:, :, num_queries_one2one:],
            outputs['enc_outputs_class'], outputs['enc_outputs_coord'], [
                repeat_ground_truth(gt_instances, self.k_one2many)
                for gt_instances in batch_gt_instances
            ], batch_img_metas)
        for name, value in losses_one2many.items():
            losses[f'{name}_one2many'] = value * self.lambda_one2many
        return losses
