"""Deformable DETR trained with contrastive denoising queries: noised copies
of the ground-truth boxes and labels fed to the decoder beside the matching
queries, masked from them, that learn to reconstruct the boxes (positives)
or reject them (negatives) (denoising: Li et al., "DN-DETR", CVPR 2022,
arXiv 2203.01305, with DN-Deformable-DETR; contrastive groups: Zhang et al.,
"DINO", arXiv 2203.03605, Sec. 3.3). Training only: at inference the model
is exactly :class:`DeformableDETR`."""
from typing import Dict, Optional, Tuple

from mmdet.structures import SampleList
from torch import Tensor

from ddetr_plugin.registry import MODELS
from ..dense_heads import DNDeformableDETRHead
from .deformable_detr import DeformableDETR, _with_detector_args


@MODELS.register_module()
class DNDeformableDETR(DeformableDETR):
    """Two-stage :class:`DeformableDETR` with training-only contrastive
    denoising.

    In training mode ``dn_query_generator`` (a ``CdnQueryGenerator`` built
    from ``dn_cfg``) makes the batch's denoising queries; the transformer
    puts them before the matching queries (content: the embedded noised
    label; reference box and positional query: the noised box, embedded
    as the proposals are) with a self-attention mask that hides them from
    the matching queries and from each other's groups, and the head (a
    ``DNDeformableDETRHead``) adds their losses (``dn_loss_cls``, ...) to
    Deformable DETR's. In eval mode (``predict``, ``tools/test.py``, ONNX
    export) none are built and the outputs are exactly
    :class:`DeformableDETR`'s; a checkpoint loads into the plain config
    (``dn_query_generator.label_embedding.weight`` is dropped on load, with
    a log line).

    Args:
        *args: see :class:`DeformableDETR`.
        dn_cfg (dict, optional): kwargs of ``CdnQueryGenerator``
            (``label_noise_scale``, ``box_noise_scale``, ``group_cfg``);
            ``num_classes``, ``embed_dims`` and ``num_matching_queries`` are
            set here from the head and the transformer. Default: its
            defaults with 100 denoising queries.
        as_two_stage (bool): must be True: the denoising queries are boxes
            (the single-stage queries are 2D points).
        **kwargs: see :class:`DeformableDETR`; ``bbox_head`` must be a
            ``DNDeformableDETRHead`` (or a subclass).

    Raises:
        ValueError: ``as_two_stage`` False; a head without the denoising
            loss; ``dn_cfg`` setting a key the detector sets; those of
            :class:`DeformableDETR` and ``CdnQueryGenerator``.
    """

    def __init__(self,
                 *args,
                 dn_cfg: Optional[dict] = None,
                 as_two_stage: bool = False,
                 **kwargs) -> None:
        if not as_two_stage:
            raise ValueError(
                f'{type(self).__name__} needs as_two_stage=True: its '
                'denoising queries are boxes, and single-stage Deformable '
                'DETR has 2D reference points')
        super().__init__(*args, as_two_stage=True, **kwargs)
        if not isinstance(self.bbox_head, DNDeformableDETRHead):
            raise ValueError(
                f'{type(self).__name__} needs a bbox_head with the '
                'denoising loss (DNDeformableDETRHead or a subclass), got '
                f'{type(self.bbox_head).__name__}')
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
            dict: see ``DeformableDETRTransformer.forward`` (the denoising
            queries first), plus ``dn_meta`` (see
            ``CdnQueryGenerator.forward``) in training, None otherwise.
        """
        dn_label_query = dn_bbox_query = dn_mask = dn_meta = None
        if self.training:
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = \
                self.dn_query_generator(batch_data_samples)
        outputs = self.transformer(
            mlvl_feats,
            self.get_mlvl_masks(batch_data_samples, mlvl_feats),
            reg_branches=self.bbox_head.reg_branches
            if self.with_box_refine else None,
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
