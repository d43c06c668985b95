"""DINO: Deformable DETR with contrastive denoising, mixed query selection and
look-forward-twice box refinement (Zhang et al., "DINO: DETR with Improved
DeNoising Anchor Boxes for End-to-End Object Detection", ICLR 2023, arXiv
2203.03605), on this package's components (MSDA op, neck, encoder, coder,
assigner); as mmdet 3.3's ``DINO``, whose converted weights give the same
detections."""
from typing import Dict, Optional, Tuple

from mmdet.structures import SampleList
from torch import Tensor

from ddetr_plugin.registry import MODELS
from .deformable_detr import DeformableDETR, _with_detector_args


@MODELS.register_module()
class DINO(DeformableDETR):
    """DINO: a two-stage Deformable DETR with box refinement, a
    ``DINOTransformer`` (mixed query selection, ``DINOTransformerDecoder``)
    and a ``DINOHead``, trained with the contrastive denoising queries of
    ``dn_query_generator`` (a ``CdnQueryGenerator`` built from ``dn_cfg``).

    In training the denoising queries go before the matching queries in
    the decoder, masked from them; at inference they are not built, and
    the model is its matching queries only (``predict``, ``tools/test.py``,
    ONNX export as any Deformable DETR here).

    Args:
        *args: see :class:`DeformableDETR`.
        dn_cfg (dict, optional): kwargs of ``CdnQueryGenerator``
            (``label_noise_scale``, ``box_noise_scale``, ``group_cfg``);
            ``num_classes``, ``embed_dims`` and ``num_matching_queries`` are
            set here from the head and the transformer. Default: its
            defaults with 100 denoising queries.
        with_box_refine (bool): must be True (DINO refines).
        as_two_stage (bool): must be True (DINO selects queries from the
            encoder proposals).
        **kwargs: see :class:`DeformableDETR`.

    Raises:
        ValueError: ``with_box_refine`` or ``as_two_stage`` False;
            ``dn_cfg`` setting a key the detector sets; those of
            :class:`DeformableDETR` and ``CdnQueryGenerator``.
    """

    def __init__(self,
                 *args,
                 dn_cfg: Optional[dict] = None,
                 with_box_refine: bool = True,
                 as_two_stage: bool = True,
                 **kwargs) -> None:
        if not (with_box_refine and as_two_stage):
            raise ValueError('DINO needs with_box_refine=True and '
                             'as_two_stage=True (its decoder refines boxes '
                             'selected from the encoder proposals), got '
                             f'with_box_refine={with_box_refine}, '
                             f'as_two_stage={as_two_stage}')
        super().__init__(
            *args, with_box_refine=True, as_two_stage=True, **kwargs)
        dn_cfg = dict(type='CdnQueryGenerator') if dn_cfg is None else dict(
            dn_cfg)
        dn_cfg.setdefault('type', 'CdnQueryGenerator')
        if 'group_cfg' not in dn_cfg:
            dn_cfg['group_cfg'] = dict(dynamic=True, num_dn_queries=100)
        self.dn_query_generator = MODELS.build(
            _with_detector_args(
                dn_cfg,
                'dn_cfg',
                num_classes=self.bbox_head.num_classes,
                embed_dims=self.transformer.embed_dims,
                num_matching_queries=self.transformer.num_queries))

    def forward_transformer(self, mlvl_feats: Tuple[Tensor, ...],
                            batch_data_samples: SampleList
                            ) -> Dict[str, Optional[Tensor]]:
        """Run the transformer; in training with the denoising queries.

        Args:
            mlvl_feats (tuple[Tensor]): (B, C, H_l, W_l) per level.
            batch_data_samples (list[DetDataSample]): with ``img_shape``
                and ``batch_input_shape`` metainfo, and in training
                ``gt_instances``.

        Returns:
            dict: see ``DINOTransformer.forward``, plus ``dn_meta`` (see
            ``CdnQueryGenerator.forward``) in training, None otherwise.
        """
        dn_label_query = dn_bbox_query = dn_mask = dn_meta = None
        if self.training:
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = \
                self.dn_query_generator(batch_data_samples)
        outputs = self.transformer(
            mlvl_feats,
            self.get_mlvl_masks(batch_data_samples, mlvl_feats),
            reg_branches=self.bbox_head.reg_branches,
            proposal_branches=self.bbox_head.proposal_branches,
            dn_label_query=dn_label_query,
            dn_bbox_query=dn_bbox_query,
            dn_mask=dn_mask)
        if self.training and dn_meta['num_denoising_queries'] == 0:
            # no ground truth in this batch: keep label_embedding in the
            # graph, or DDP waits for its gradient forever
            outputs['hidden_states'] = outputs['hidden_states'] + \
                self.dn_query_generator.label_embedding.weight[0, 0] * 0.0
        outputs['dn_meta'] = dn_meta
        return outputs
