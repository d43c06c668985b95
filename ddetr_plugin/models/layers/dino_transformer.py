"""The DINO transformer: Deformable DETR's encoder and two-stage proposals,
mixed query selection, and the denoising queries prepended in training
(Zhang et al., "DINO: DETR with Improved DeNoising Anchor Boxes for
End-to-End Object Detection", ICLR 2023, arXiv 2203.03605, Sec. 3.4 "mixed
query selection"; as mmdet 3.3's ``DINO.pre_decoder``)."""
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ddetr_plugin.registry import MODELS
from .transformer import DeformableDETRTransformer


@MODELS.register_module()
class DINOTransformer(DeformableDETRTransformer):
    """Encoder, mixed query selection and :class:`DINOTransformerDecoder`.

    Mixed query selection (Sec. 3.4): every unpadded encoder pixel proposes
    a box (as two-stage Deformable DETR); the ``num_queries`` proposals
    with the highest score over all classes (Deformable DETR: class 0 only)
    give the decoder's initial anchor boxes, detached, while the content
    queries are learned (``query_embedding``, (num_queries, C); no
    ``pos_trans_fc``: the decoder embeds the boxes itself). In training, the
    denoising queries of :class:`~.denoising.CdnQueryGenerator` come first,
    masked from the matching queries.

    Args:
        encoder (dict): config of ``DeformableDETRTransformerEncoder``.
        decoder (dict): config of ``DINOTransformerDecoder``.
        positional_encoding (dict): config of ``SinePositionalEncoding``
            (DINO: ``temperature=20, offset=0.0``).
        num_queries (int): matching queries. Default 900 (DINO's).
        num_feature_levels (int): feature levels. Default 4.
        as_two_stage (bool): must be True (set by the ``DINO`` detector).
        counter_dropout (bool): see :class:`DeformableDETRTransformer`.
        init_cfg (dict, optional): mmengine initialisation config.

    Raises:
        ValueError: ``as_two_stage`` False, or the checks of
            :class:`DeformableDETRTransformer`.
    """

    #: the proposals are scored and trained with their classes
    proposals_score_every_class = True

    def __init__(self,
                 encoder: dict,
                 decoder: dict,
                 positional_encoding: dict,
                 num_queries: int = 900,
                 num_feature_levels: int = 4,
                 as_two_stage: bool = True,
                 counter_dropout: bool = False,
                 init_cfg=None) -> None:
        if not as_two_stage:
            raise ValueError('DINOTransformer selects its queries from the '
                             'encoder proposals: as_two_stage must be True')
        super().__init__(
            encoder=encoder,
            decoder=decoder,
            positional_encoding=positional_encoding,
            num_queries=num_queries,
            num_feature_levels=num_feature_levels,
            as_two_stage=True,
            counter_dropout=counter_dropout,
            init_cfg=init_cfg)

    def _init_query_layers(self) -> None:
        """The proposal layers and the learned content queries."""
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)
        self.query_embedding = nn.Embedding(self.num_queries,
                                            self.embed_dims)

    def _init_query_weights(self) -> None:
        """Xavier-uniform ``memory_trans_fc`` weights and content queries,
        as mmdet's DINO."""
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)
        nn.init.xavier_uniform_(self.query_embedding.weight)

    def forward(self,
                mlvl_feats: Sequence[Tensor],
                mlvl_masks: Sequence[Tensor],
                reg_branches: Sequence[nn.Module],
                proposal_branches: Tuple[nn.Module, nn.Module],
                dn_label_query: Optional[Tensor] = None,
                dn_bbox_query: Optional[Tensor] = None,
                dn_mask: Optional[Tensor] = None
                ) -> Dict[str, Tensor]:
        """Encode, select the queries and decode them.

        Args:
            mlvl_feats (Sequence[Tensor]): ``num_feature_levels`` maps
                (B, C, H_l, W_l), float32.
            mlvl_masks (Sequence[Tensor]): matching (B, H_l, W_l) bool
                padding masks, True where padded.
            reg_branches (Sequence[nn.Module]): the head's per-layer box
                branches (DINO always refines).
            proposal_branches (tuple): ``(cls_branch, reg_branch)`` scoring
                (all classes) and regressing the encoder proposals.
            dn_label_query (Tensor, optional): (B, D, C) denoising content
                queries (training).
            dn_bbox_query (Tensor, optional): (B, D, 4) their unactivated
                normalised ``(cx, cy, w, h)`` boxes.
            dn_mask (Tensor, optional): (D + num_queries, same) bool
                self-attention mask (see
                :func:`~.denoising.denoising_self_attn_mask`).

        Returns:
            dict: ``hidden_states`` (num_decoder_layers, B, D + Q, C), the
            denoising queries first; ``references``, list of
            ``num_decoder_layers + 1`` (B, D + Q, 4) normalised boxes (see
            the decoder); ``enc_outputs_class`` (B, Q, num_classes) logits
            and ``enc_outputs_coord`` (B, Q, 4) normalised ``(cx, cy, w,
            h)`` of the selected proposals (DINO's encoder loss is on
            these, not on every pixel). ``Q = num_queries``, or the number
            of encoder tokens where there are fewer (with a warning).
        """
        encoded = self.encode(mlvl_feats, mlvl_masks)
        query, reference_unact, enc_outputs_class, enc_outputs_coord = \
            self.mixed_queries(encoded['memory'], encoded['memory_mask'],
                               encoded['spatial_shapes'], *proposal_branches)
        self_attn_mask = None
        if dn_label_query is not None:
            query = torch.cat([dn_label_query, query], 1)
            reference_unact = torch.cat([dn_bbox_query, reference_unact], 1)
            # fewer matching queries than the mask's only for tiny images
            self_attn_mask = dn_mask[:query.shape[1], :query.shape[1]]
        hidden_states, references = self.decoder(
            query=query,
            value=encoded['memory'],
            key_padding_mask=encoded['memory_mask'],
            reference_points=reference_unact.sigmoid(),
            spatial_shapes=encoded['spatial_shapes'],
            level_start_index=encoded['level_start_index'],
            valid_ratios=encoded['valid_ratios'],
            reg_branches=reg_branches,
            self_attn_mask=self_attn_mask)
        return dict(
            hidden_states=hidden_states,
            references=references,
            enc_outputs_class=enc_outputs_class,
            enc_outputs_coord=enc_outputs_coord)

    def mixed_queries(self, memory: Tensor, memory_mask: Tensor,
                      spatial_shapes: Tensor, cls_branch: nn.Module,
                      reg_branch: nn.Module) -> Tuple[Tensor, ...]:
        """Mixed query selection (Sec. 3.4).

        Args:
            memory (Tensor): (B, S, C) encoder memory.
            memory_mask (Tensor): (B, S) bool, True at padded pixels.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            cls_branch (nn.Module): (B, S, C) -> (B, S, num_classes) logits.
            reg_branch (nn.Module): (B, S, C) -> (B, S, 4) box deltas.

        Returns:
            tuple: ``query`` (B, Q, C) learned content queries,
            ``reference_unact`` (B, Q, 4) the selected proposals'
            unactivated boxes (detached), and the selected proposals'
            ``enc_outputs_class`` (B, Q, num_classes) logits and
            ``enc_outputs_coord`` (B, Q, 4) normalised boxes (not
            detached).
        """
        enc_outputs_class, enc_outputs_coord_unact = self.score_proposals(
            memory, memory_mask, spatial_shapes, cls_branch, reg_branch)
        num_proposals = self.num_proposals(enc_outputs_class.shape[1])
        # (B, Q) indices of the proposals with the best score of any class
        topk_indices = torch.topk(
            enc_outputs_class.max(-1)[0], k=num_proposals, dim=1)[1]
        topk_score = torch.gather(
            enc_outputs_class, 1,
            topk_indices.unsqueeze(-1).expand(-1, -1,
                                              enc_outputs_class.shape[-1]))
        topk_coords_unact = torch.gather(
            enc_outputs_coord_unact, 1,
            topk_indices.unsqueeze(-1).expand(-1, -1, 4))
        # (Q, C) -> (B, Q, C)
        query = self.query_embedding.weight[:num_proposals].unsqueeze(
            0).expand(memory.shape[0], -1, -1)
        return (query, topk_coords_unact.detach(), topk_score,
                topk_coords_unact.sigmoid())
