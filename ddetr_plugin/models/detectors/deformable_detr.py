"""Deformable DETR: image -> backbone -> neck -> deformable transformer ->
head -> boxes (Zhu et al., "Deformable DETR: Deformable Transformers for
End-to-End Object Detection", ICLR 2021, arXiv 2010.04159)."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors import BaseDetector
from mmdet.structures import OptSampleList, SampleList
from mmengine.logging import print_log
from torch import Tensor, nn

from ddetr_plugin.converters.load_hook import convert_layout_on_load
from ddetr_plugin.registry import MODELS
from .config_checks import (check_backbone_neck, check_detections_per_image,
                            check_neck_transformer)


def _with_detector_args(cfg: dict, name: str, **detector_args) -> dict:
    """``cfg`` plus the arguments the detector decides for its parts.

    Raises:
        ValueError: ``cfg`` already sets one of them.
    """
    duplicated = sorted(set(cfg) & set(detector_args))
    if duplicated:
        raise ValueError(f'{duplicated} of {name} are set by the detector '
                         '(from its own arguments, e.g. with_box_refine, '
                         'as_two_stage), not in its config')
    return dict(cfg, **detector_args)


def _drop_denoising_weights(module: nn.Module, state_dict: dict, prefix: str,
                            *args) -> None:
    """``load_state_dict`` pre-hook of the detector: a checkpoint trained
    with denoising queries (``DNDeformableDETR``) loads into a model without
    them; their training-only label embedding is dropped, with a log
    line."""
    if hasattr(module, 'dn_query_generator'):
        return
    dropped = [
        key for key in state_dict
        if key.startswith(prefix + 'dn_query_generator.')
    ]
    for key in dropped:
        del state_dict[key]
    if dropped:
        print_log(
            f'{dropped} (training-only denoising queries) dropped: this '
            'model has none',
            logger='current')


@MODELS.register_module()
class DeformableDETR(BaseDetector):
    """Deformable DETR, single stage, with iterative bounding box refinement
    (``with_box_refine``, Sec. 4.2) and two-stage (``as_two_stage``).

    Works with mmdet's data pipeline, ``DetDataPreprocessor``,
    ``DetDataSample``, ``CocoMetric`` and visualiser: ``forward`` modes
    ``loss``, ``predict`` and ``tensor`` from ``BaseDetector``.

    Args:
        backbone (dict): backbone config (e.g. mmdet's ``ResNet``, stages
            C3-C5).
        neck (dict): ``DeformableDETRNeck`` config.
        transformer (dict): ``DeformableDETRTransformer`` config.
        bbox_head (dict): ``DeformableDETRHead`` config.
        with_box_refine (bool): each decoder layer refines the boxes of the
            previous one, with its own prediction branches.
        as_two_stage (bool): queries from the top-scoring encoder
            proposals.
        channels_last (bool): the images go to the backbone in
            channels-last memory format ((B, 3, H, W) stored as (B, H, W,
            3); ``torch.channels_last``), so oneDNN's CPU convolutions run
            without reordering their inputs and outputs. Same values, a
            different summation order (relative differences about 1e-6).
            On the 2-core AVX2 machine: MobileNetV2's forward + backward
            at 4 x 512x384 0.74 s -> 0.51 s; ResNet-50's eval forward at 2
            x 640x480 1.20 s -> 0.94 s, its training forward + backward
            unchanged (``docs/benchmarks.md``). Default: False (as mmdet);
            our configs set True.
        train_cfg (dict, optional): ``assigner`` config, given to the head.
        test_cfg (dict, optional): ``max_per_img``, given to the head.
        data_preprocessor (dict, optional): e.g. ``DetDataPreprocessor``.
        init_cfg (dict, optional): mmengine initialisation config.

    Raises:
        ValueError: ``as_two_stage`` in the transformer config or
            ``num_pred_layer``/``share_pred_layer``/``as_two_stage`` in the
            head config (the detector sets them); parts that do not fit
            (backbone outputs vs ``neck.in_channels``, ``neck.num_outs`` vs
            ``transformer.num_feature_levels``, ``test_cfg.max_per_img`` vs
            queries x classes; see ``config_checks``).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 transformer: dict,
                 bbox_head: dict,
                 with_box_refine: bool = False,
                 as_two_stage: bool = False,
                 channels_last: bool = False,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # mmdet / original / Hugging Face weights load as they are
        self.register_load_state_dict_pre_hook(convert_layout_on_load)
        self.register_load_state_dict_pre_hook(_drop_denoising_weights)
        self.with_box_refine = with_box_refine
        self.as_two_stage = as_two_stage
        self.channels_last = channels_last
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        check_backbone_neck(backbone, self.backbone, self.neck)
        self.transformer = MODELS.build(
            _with_detector_args(
                transformer, 'transformer', as_two_stage=as_two_stage))
        check_neck_transformer(self.neck, self.transformer)
        # one prediction layer per decoder layer, +1 for the proposals
        num_pred_layer = self.transformer.decoder.num_layers + int(
            as_two_stage)
        self.bbox_head = MODELS.build(
            dict(
                _with_detector_args(
                    bbox_head,
                    'bbox_head',
                    num_pred_layer=num_pred_layer,
                    share_pred_layer=not with_box_refine,
                    as_two_stage=as_two_stage),
                train_cfg=train_cfg,
                test_cfg=test_cfg))
        check_detections_per_image(self.transformer.num_queries,
                                   self.bbox_head.num_classes, test_cfg)

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Multi-scale feature maps.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised, padded images.

        Returns:
            tuple[Tensor]: ``num_feature_levels`` maps (B, C, H_l, W_l)
            (channels-last memory with ``channels_last``).
        """
        if self.channels_last:
            batch_inputs = batch_inputs.contiguous(
                memory_format=torch.channels_last)
        return self.neck(self.backbone(batch_inputs))

    @staticmethod
    def get_mlvl_masks(batch_data_samples: SampleList,
                       mlvl_feats: Tuple[Tensor, ...]) -> List[Tensor]:
        """Padding masks of every level from the image sizes.

        Pixels outside each sample's ``img_shape`` within the padded
        ``batch_input_shape`` are padding; the image-level mask is
        nearest-resized to each level.

        Args:
            batch_data_samples (list[DetDataSample]): with ``img_shape`` and
                ``batch_input_shape`` metainfo (set by the preprocessor).
            mlvl_feats (tuple[Tensor]): (B, C, H_l, W_l) per level.

        Returns:
            list[Tensor]: (B, H_l, W_l) bool per level, True where padded.

        Raises:
            ValueError: ``batch_data_samples`` is None.
        """
        if batch_data_samples is None:
            raise ValueError('Deformable DETR needs batch_data_samples with '
                             'img_shape and batch_input_shape')
        input_h, input_w = batch_data_samples[0].batch_input_shape
        masks = mlvl_feats[0].new_ones(
            (len(batch_data_samples), input_h, input_w))
        for mask, sample in zip(masks, batch_data_samples):
            img_h, img_w = sample.img_shape
            mask[:img_h, :img_w] = 0
        return [
            F.interpolate(masks[None], size=feat.shape[-2:]).to(
                torch.bool).squeeze(0) for feat in mlvl_feats
        ]

    def forward_transformer(self, mlvl_feats: Tuple[Tensor, ...],
                            batch_data_samples: SampleList
                            ) -> Dict[str, Optional[Tensor]]:
        """Run the transformer with the head's refinement and proposal
        branches.

        Args:
            mlvl_feats (tuple[Tensor]): (B, C, H_l, W_l) per level.
            batch_data_samples (list[DetDataSample]): see
                :meth:`get_mlvl_masks`.

        Returns:
            dict: see ``DeformableDETRTransformer.forward``.
        """
        return self.transformer(
            mlvl_feats,
            self.get_mlvl_masks(batch_data_samples, mlvl_feats),
            reg_branches=self.bbox_head.reg_branches
            if self.with_box_refine else None,
            proposal_branches=self.bbox_head.proposal_branches
            if self.as_two_stage else None)

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of a batch.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): with ``gt_instances``
                (pixel xyxy ``bboxes`` of the resized image, ``labels``).

        Returns:
            dict[str, Tensor]: see ``DeformableDETRHead.loss_by_feat``.
        """
        outputs = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head.loss(
            **outputs, batch_data_samples=batch_data_samples)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detections of a batch.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): with ``img_shape``,
                ``batch_input_shape`` and ``scale_factor`` metainfo.
            rescale (bool): boxes in the original image.

        Returns:
            list[DetDataSample]: the samples with ``pred_instances``
            (``scores``, ``labels``, ``bboxes`` pixel xyxy).
        """
        outputs = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        results_list = self.bbox_head.predict(
            outputs['hidden_states'],
            outputs['references'],
            batch_data_samples,
            rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_list)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None
                 ) -> Tuple[Tensor, Tensor]:
        """Raw outputs of every decoder layer.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): see
                :meth:`get_mlvl_masks`.

        Returns:
            tuple[Tensor]: (num_decoder_layers, B, Q, num_classes) logits and
            (num_decoder_layers, B, Q, 4) normalised ``(cx, cy, w, h)``.
        """
        outputs = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head(outputs['hidden_states'], outputs['references'])
