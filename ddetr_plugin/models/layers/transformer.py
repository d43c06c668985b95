"""The deformable transformer: multi-scale feature maps in, decoded object
queries out (Zhu et al., arXiv 2010.04159, Sec. 4.1, and Sec. 4.2 /
Appendix A.4 for the two-stage variant)."""
import math
import warnings
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import inverse_sigmoid
from mmengine.logging import print_log
from mmengine.model import BaseModule, xavier_init
from torch import Tensor, nn

from ddetr_plugin import ops
from ddetr_plugin.registry import MODELS
from .counter_dropout import use_counter_dropout
from .hybrid_matching import hybrid_self_attn_mask
from .msda_attention import MultiScaleDeformableAttention
from .positional_encoding import sine_embedding


def valid_sizes(mask: Tensor) -> Tensor:
    """Unpadded width and height of each image of a padding mask.

    Args:
        mask (Tensor): (B, H, W) bool, True where padded; the valid region
            is the top-left ``valid_H x valid_W`` rectangle (mmdet's
            batch padding pads right and bottom).

    Returns:
        Tensor: (B, 2) int64 ``(valid_W, valid_H)`` in feature-map pixels.
    """
    valid_H = torch.sum(~mask[:, :, 0], 1)
    valid_W = torch.sum(~mask[:, 0, :], 1)
    return torch.stack([valid_W, valid_H], -1)


def _drop_one2many_weights(module: nn.Module, state_dict: dict, prefix: str,
                           *args) -> None:
    """``load_state_dict`` pre-hook of the transformer: a hybrid-trained
    checkpoint loads into a model without one-to-many queries; their
    training-only embedding is dropped, with a log line."""
    key = prefix + 'query_embedding_one2many.weight'
    if key in state_dict and not hasattr(module, 'query_embedding_one2many'):
        del state_dict[key]
        print_log(
            f'{key} (training-only one-to-many queries of hybrid matching) '
            'dropped: this model has none',
            logger='current')


@MODELS.register_module()
class DeformableDETRTransformer(BaseModule):
    """Encoder, query generation and decoder of Deformable DETR.

    Owns the positional encoding, the learned ``level_embed`` (Sec. 4.1,
    "scale-level embedding"), the encoder and the decoder, and the query
    generation:

    * single stage: learned ``query_embedding`` (split into positional and
      content queries) and ``reference_points_fc`` predicting each query's
      reference point;
    * ``as_two_stage``: every unpadded pixel of the encoder memory is a
      proposal (``memory_trans_fc``/``memory_trans_norm``), scored and
      regressed by the encoder branches of the head; the ``num_queries``
      highest-scoring ones (no NMS) become the decoder's reference boxes,
      and their sine embeddings (``pos_trans_fc``/``pos_trans_norm``) the
      queries.

    With ``num_queries_one2many`` (hybrid matching, arXiv 2207.13080), the
    decoder also gets, in training mode only, that many one-to-many queries
    after the ``num_queries`` one-to-one ones (their own learned
    ``query_embedding_one2many``; two-stage: the next-best proposals),
    masked from them in self-attention. In eval mode they are not built:
    the outputs are exactly those of the model without them.

    Args:
        encoder (dict): config of ``DeformableDETRTransformerEncoder``.
        decoder (dict): config of ``DeformableDETRTransformerDecoder``.
        positional_encoding (dict): config of ``SinePositionalEncoding``
            with ``2 * num_feats == embed_dims``.
        num_queries (int): object queries. Default 300.
        num_feature_levels (int): feature levels; must equal the
            ``num_levels`` of the attention modules. Default 4.
        num_queries_one2many (int): training-only one-to-many queries of
            hybrid matching; 0 (default) for none. Normally set by
            ``HybridDeformableDETR``.
        as_two_stage (bool): two-stage Deformable DETR. Normally set by the
            detector.
        counter_dropout (bool): every dropout layer of the encoder and
            decoder draws its masks with :class:`CounterDropout` (a hash of
            seed and element index, one vectorised pass on the CPU) instead
            of torch's Bernoulli sampling: same keep probability and
            scaling, different draws, so off by default (torch's, as mmdet
            3.3). The dropout inside the decoder's ``nn.MultiheadAttention``
            stays torch's.
        init_cfg (dict, optional): mmengine initialisation config.

    Raises:
        ValueError: ``num_feature_levels`` differs from an attention
            module's ``num_levels``, or the positional encoding size differs
            from ``embed_dims``.
    """

    #: the two-stage proposal layer scores objectness with class 0 (its
    #: loss treats every object as class 0), not every class
    proposals_score_every_class = False

    def __init__(self,
                 encoder: dict,
                 decoder: dict,
                 positional_encoding: dict,
                 num_queries: int = 300,
                 num_feature_levels: int = 4,
                 num_queries_one2many: int = 0,
                 as_two_stage: bool = False,
                 counter_dropout: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_queries_one2many < 0:
            raise ValueError('num_queries_one2many must be >= 0, got '
                             f'{num_queries_one2many}')
        self.num_queries = num_queries
        self.num_queries_one2many = num_queries_one2many
        self.num_feature_levels = num_feature_levels
        self.as_two_stage = as_two_stage
        self.positional_encoding = MODELS.build(positional_encoding)
        self.encoder = MODELS.build(encoder)
        self.decoder = MODELS.build(decoder)
        if counter_dropout:
            use_counter_dropout(self.encoder)
            use_counter_dropout(self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self._check_dims()

        self.level_embed = nn.Parameter(
            torch.zeros(num_feature_levels, self.embed_dims))
        self._init_query_layers()
        self.register_load_state_dict_pre_hook(_drop_one2many_weights)

    def _init_query_layers(self) -> None:
        """The layers that make the decoder's queries: the two-stage
        proposal layers, or the learned queries and their reference points
        (single stage)."""
        if self.as_two_stage:
            self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
            self.memory_trans_norm = nn.LayerNorm(self.embed_dims)
            self.pos_trans_fc = nn.Linear(self.embed_dims * 2,
                                          self.embed_dims * 2)
            self.pos_trans_norm = nn.LayerNorm(self.embed_dims * 2)
        else:
            # positional and content query, hence 2 * embed_dims
            self.query_embedding = nn.Embedding(self.num_queries,
                                                self.embed_dims * 2)
            if self.num_queries_one2many:
                self.query_embedding_one2many = nn.Embedding(
                    self.num_queries_one2many, self.embed_dims * 2)
            self.reference_points_fc = nn.Linear(self.embed_dims, 2)

    def _check_dims(self) -> None:
        if 2 * self.positional_encoding.num_feats != self.embed_dims:
            raise ValueError(
                'positional_encoding.num_feats must be embed_dims / 2, got '
                f'{self.positional_encoding.num_feats} and {self.embed_dims}')
        for name, module in self.named_modules():
            if isinstance(module, MultiScaleDeformableAttention) and \
                    module.num_levels != self.num_feature_levels:
                raise ValueError(
                    f'{name}.num_levels={module.num_levels} differs from '
                    f'num_feature_levels={self.num_feature_levels}')

    def init_weights(self) -> None:
        """Xavier-uniform for every matrix of encoder and decoder, then each
        deformable attention's own init (as the reference code and mmdet)."""
        super().init_weights()
        for coder in self.encoder, self.decoder:
            for p in coder.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        self._init_query_weights()
        nn.init.normal_(self.level_embed)

    def _init_query_weights(self) -> None:
        """Xavier-uniform weights for the layers of
        :meth:`_init_query_layers`, as mmdet (the learned queries keep
        ``nn.Embedding``'s N(0, 1))."""
        if self.as_two_stage:
            nn.init.xavier_uniform_(self.memory_trans_fc.weight)
            nn.init.xavier_uniform_(self.pos_trans_fc.weight)
        else:
            xavier_init(
                self.reference_points_fc, distribution='uniform', bias=0.)

    def forward(
        self,
        mlvl_feats: Sequence[Tensor],
        mlvl_masks: Sequence[Tensor],
        reg_branches: Optional[Sequence[nn.Module]] = None,
        proposal_branches: Optional[Tuple[nn.Module, nn.Module]] = None,
        dn_label_query: Optional[Tensor] = None,
        dn_bbox_query: Optional[Tensor] = None,
        dn_mask: Optional[Tensor] = None
    ) -> Dict[str, Optional[Tensor]]:
        """Encode the feature maps and decode the object queries.

        Args:
            mlvl_feats (Sequence[Tensor]): ``num_feature_levels`` maps
                (B, C, H_l, W_l), float32.
            mlvl_masks (Sequence[Tensor]): matching (B, H_l, W_l) bool
                padding masks, True where padded.
            reg_branches (Sequence[nn.Module], optional): per decoder layer
                box-delta branches for iterative box refinement
                (``with_box_refine``); None disables refinement.
            proposal_branches (tuple, optional): ``(cls_branch,
                reg_branch)`` scoring and regressing the encoder proposals;
                required with ``as_two_stage``.
            dn_label_query (Tensor, optional): (B, D, C) denoising content
                queries (training, two-stage only; see
                :meth:`denoising_queries`).
            dn_bbox_query (Tensor, optional): (B, D, 4) their unactivated
                normalised ``(cx, cy, w, h)`` boxes.
            dn_mask (Tensor, optional): (D + num_queries, same) bool
                self-attention mask (see
                :func:`~.denoising.denoising_self_attn_mask`).

        Returns:
            dict: ``hidden_states`` (num_decoder_layers, B, D + Q, C), the
            denoising queries first, then the one-to-one queries
            (``Q = num_queries``, plus ``num_queries_one2many`` in training
            mode);
            ``references``, list of ``num_decoder_layers + 1`` normalised
            (B, Q, 2 or 4) references (see the decoder);
            ``enc_outputs_class`` (B, S, num_classes) logits and
            ``enc_outputs_coord`` (B, S, 4) normalised ``(cx, cy, w, h)``
            of the encoder proposals, None unless ``as_two_stage``.

        Raises:
            ValueError: a number of levels other than
                ``num_feature_levels``; ``as_two_stage`` without
                ``proposal_branches``; denoising queries without
                ``as_two_stage`` or with one-to-many queries.
        """
        encoded = self.encode(mlvl_feats, mlvl_masks)
        memory, mask_flatten = encoded['memory'], encoded['memory_mask']
        spatial_shapes = encoded['spatial_shapes']
        enc_outputs_class = enc_outputs_coord = None
        if self.as_two_stage:
            if proposal_branches is None:
                raise ValueError('as_two_stage needs proposal_branches')
            (query, query_pos, reference_points, enc_outputs_class,
             enc_outputs_coord) = self.two_stage_queries(
                 memory, mask_flatten, spatial_shapes, *proposal_branches)
        else:
            query, query_pos, reference_points = self.learned_queries(
                memory.size(0))

        num_queries = query.shape[1]
        num_queries_one2one = min(self.num_queries, num_queries)
        self_attn_mask = None
        if num_queries > num_queries_one2one:  # hybrid matching, training
            self_attn_mask = hybrid_self_attn_mask(num_queries_one2one,
                                                   num_queries, query.device)
        if dn_label_query is not None:  # denoising, training
            if self_attn_mask is not None:
                raise ValueError('denoising queries and one-to-many queries '
                                 'cannot be combined')
            dn_query, dn_query_pos, dn_reference_points = \
                self.denoising_queries(dn_label_query, dn_bbox_query)
            query = torch.cat([dn_query, query], 1)
            query_pos = torch.cat([dn_query_pos, query_pos], 1)
            reference_points = torch.cat(
                [dn_reference_points, reference_points], 1)
            # fewer matching queries than the mask's only for tiny images
            self_attn_mask = dn_mask[:query.shape[1], :query.shape[1]]
        hidden_states, references = self.decoder(
            query=query,
            query_pos=query_pos,
            value=memory,
            key_padding_mask=mask_flatten,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=encoded['level_start_index'],
            valid_ratios=encoded['valid_ratios'],
            reg_branches=reg_branches,
            self_attn_mask=self_attn_mask)
        return dict(
            hidden_states=hidden_states,
            references=references,
            enc_outputs_class=enc_outputs_class,
            enc_outputs_coord=enc_outputs_coord)

    def encode(self, mlvl_feats: Sequence[Tensor],
               mlvl_masks: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Flatten the levels and run the encoder (Sec. 4.1).

        Args:
            mlvl_feats (Sequence[Tensor]): ``num_feature_levels`` maps
                (B, C, H_l, W_l), float32.
            mlvl_masks (Sequence[Tensor]): matching (B, H_l, W_l) bool
                padding masks, True where padded.

        Returns:
            dict: ``memory`` (B, S, C) encoder output, ``memory_mask``
            (B, S) bool (True at padded pixels), ``spatial_shapes``
            (num_levels, 2) int64 ``(H, W)``, ``level_start_index``
            (num_levels,) int64 and ``valid_ratios`` (B, num_levels, 2)
            float32 ``(w, h)``; ``S = sum_l H_l * W_l``.

        Raises:
            ValueError: a number of levels other than
                ``num_feature_levels``.
        """
        if len(mlvl_feats) != self.num_feature_levels:
            raise ValueError(f'expected {self.num_feature_levels} feature '
                             f'levels, got {len(mlvl_feats)}')
        (feat_flatten, mask_flatten, lvl_pos_embed_flatten, spatial_shapes,
         level_start_index, valid_ratios) = self.flatten_levels(
             mlvl_feats, mlvl_masks)
        memory = self.encoder(
            query=feat_flatten,
            query_pos=lvl_pos_embed_flatten,
            key_padding_mask=mask_flatten,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios)
        return dict(
            memory=memory,
            memory_mask=mask_flatten,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios)

    def flatten_levels(self, mlvl_feats: Sequence[Tensor],
                       mlvl_masks: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Flatten all levels into one token sequence (Sec. 4.1).

        Args:
            mlvl_feats (Sequence[Tensor]): (B, C, H_l, W_l) per level.
            mlvl_masks (Sequence[Tensor]): (B, H_l, W_l) bool per level.

        Returns:
            tuple: ``feat_flatten`` (B, S, C), ``mask_flatten`` (B, S) bool,
            ``lvl_pos_embed_flatten`` (B, S, C) positional + level
            embedding, ``spatial_shapes`` (num_levels, 2) int64 ``(H, W)``,
            ``level_start_index`` (num_levels,) int64 and ``valid_ratios``
            (B, num_levels, 2) float32 ``(w, h)``.
        """
        feat_flatten, mask_flatten, lvl_pos_embed_flatten = [], [], []
        for lvl, (feat, mask) in enumerate(zip(mlvl_feats, mlvl_masks)):
            pos_embed = self.positional_encoding(mask)
            # (B, C, H, W) -> (B, H*W, C)
            feat_flatten.append(feat.flatten(2).transpose(1, 2))
            lvl_pos_embed_flatten.append(
                pos_embed.flatten(2).transpose(1, 2) +
                self.level_embed[lvl].view(1, 1, -1))
            mask_flatten.append(mask.flatten(1))
        spatial_shapes = torch.as_tensor(
            [feat.shape[-2:] for feat in mlvl_feats],
            dtype=torch.long,
            device=mlvl_feats[0].device)
        level_start_index = ops.level_start_index(spatial_shapes)
        valid_ratios = torch.stack(
            [self.get_valid_ratio(mask) for mask in mlvl_masks], 1)
        return (torch.cat(feat_flatten, 1), torch.cat(mask_flatten, 1),
                torch.cat(lvl_pos_embed_flatten, 1), spatial_shapes,
                level_start_index, valid_ratios)

    @staticmethod
    def get_valid_ratio(mask: Tensor) -> Tensor:
        """Unpadded fraction of a padding mask along each axis.

        Args:
            mask (Tensor): (B, H, W) bool, True where padded; the valid
                region is the top-left ``valid_H x valid_W`` rectangle.

        Returns:
            Tensor: (B, 2) float32 ``(valid_W / W, valid_H / H)``.
        """
        _, H, W = mask.shape
        valid_size = valid_sizes(mask).float()
        return valid_size / valid_size.new_tensor([W, H])

    def learned_queries(self, batch_size: int) -> Tuple[Tensor, ...]:
        """Queries of single-stage Deformable DETR.

        Args:
            batch_size (int): B.

        Returns:
            tuple: ``query`` and ``query_pos`` (B, Q, C) and
            ``reference_points`` (B, Q, 2) normalised ``(cx, cy)``;
            ``Q = num_queries``, plus ``num_queries_one2many`` after them
            in training mode.
        """
        weight = self.query_embedding.weight
        if self.training and self.num_queries_one2many:
            # (num_queries + num_queries_one2many, 2C)
            weight = torch.cat(
                [weight, self.query_embedding_one2many.weight])
        query_pos, query = torch.split(weight, self.embed_dims, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(batch_size, -1, -1)
        query = query.unsqueeze(0).expand(batch_size, -1, -1)
        reference_points = self.reference_points_fc(query_pos).sigmoid()
        return query, query_pos, reference_points

    def two_stage_queries(self, memory: Tensor, memory_mask: Tensor,
                          spatial_shapes: Tensor, cls_branch: nn.Module,
                          reg_branch: nn.Module) -> Tuple[Tensor, ...]:
        """Queries of two-stage Deformable DETR (Sec. 4.2, Appendix A.4).

        Every pixel proposes a box, scored with channel 0 of
        ``cls_branch`` (the proposal loss uses class 0 as foreground) and
        refined by ``reg_branch``; the top ``num_queries`` (no NMS) become
        the detached reference boxes, and their sine embeddings the
        positional and content queries. A batch with fewer encoder tokens
        than ``num_queries`` (images too small for the feature levels)
        gives one query per token instead, with a warning
        (:meth:`num_proposals`).

        Args:
            memory (Tensor): (B, S, C) encoder memory.
            memory_mask (Tensor): (B, S) bool, True at padded pixels.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            cls_branch (nn.Module): (B, S, C) -> (B, S, num_classes) logits.
            reg_branch (nn.Module): (B, S, C) -> (B, S, 4) box deltas.

        Returns:
            tuple: ``query``, ``query_pos`` (B, Q, C), ``reference_points``
            (B, Q, 4) normalised ``(cx, cy, w, h)`` (``Q = num_queries``, or
            S where S is smaller), ``enc_outputs_class``
            (B, S, num_classes) and ``enc_outputs_coord`` (B, S, 4)
            normalised ``(cx, cy, w, h)``.
        """
        enc_outputs_class, enc_outputs_coord_unact = self.score_proposals(
            memory, memory_mask, spatial_shapes, cls_branch, reg_branch)
        scores = enc_outputs_class[..., 0]
        topk_proposals = torch.topk(
            scores, self.num_proposals(scores.shape[1]), dim=1)[1]
        topk_coords_unact = torch.gather(
            enc_outputs_coord_unact, 1,
            topk_proposals.unsqueeze(-1).repeat(1, 1, 4)).detach()
        reference_points = topk_coords_unact.sigmoid()
        pos_trans_out = self.pos_trans_norm(
            self.pos_trans_fc(
                sine_embedding(reference_points * (2 * math.pi),
                               self.embed_dims // 2)))
        query_pos, query = torch.split(pos_trans_out, self.embed_dims, dim=2)
        return (query, query_pos, reference_points, enc_outputs_class,
                enc_outputs_coord_unact.sigmoid())

    def denoising_queries(self, dn_label_query: Tensor,
                          dn_bbox_query: Tensor) -> Tuple[Tensor, ...]:
        """Decoder inputs of the denoising queries of two-stage Deformable
        DETR (denoising as a training-only addition, as DN-Deformable-DETR:
        Li et al., arXiv 2203.01305, Sec. 3-4).

        Like the matching queries, each noised box is the query's reference
        box and its positional query is the first half of ``pos_trans_fc``
        of the box's sine embedding (:meth:`two_stage_queries`); the content
        query is the embedded noised label (DN-DETR, DINO). No layer is
        added but the label embedding, which inference does not use.

        Args:
            dn_label_query (Tensor): (B, D, C) embedded noised labels.
            dn_bbox_query (Tensor): (B, D, 4) unactivated normalised
                ``(cx, cy, w, h)`` noised boxes.

        Returns:
            tuple: ``query``, ``query_pos`` (B, D, C) and
            ``reference_points`` (B, D, 4) normalised ``(cx, cy, w, h)``.

        Raises:
            ValueError: a single-stage transformer (its learned queries have
                2D reference points and no box embedding).
        """
        if not self.as_two_stage:
            raise ValueError('denoising queries need as_two_stage=True: they '
                             'are boxes, embedded as the two-stage '
                             'proposals are')
        reference_points = dn_bbox_query.sigmoid()
        query_pos = self.pos_trans_norm(
            self.pos_trans_fc(
                sine_embedding(reference_points * (2 * math.pi),
                               self.embed_dims // 2)))[..., :self.embed_dims]
        return dn_label_query, query_pos, reference_points

    def score_proposals(self, memory: Tensor, memory_mask: Tensor,
                        spatial_shapes: Tensor, cls_branch: nn.Module,
                        reg_branch: nn.Module) -> Tuple[Tensor, Tensor]:
        """Score and regress the per-pixel proposals of
        :meth:`gen_encoder_output_proposals`.

        Args:
            memory (Tensor): (B, S, C) encoder memory.
            memory_mask (Tensor): (B, S) bool, True at padded pixels.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.
            cls_branch (nn.Module): (B, S, C) -> (B, S, num_classes) logits.
            reg_branch (nn.Module): (B, S, C) -> (B, S, 4) box deltas.

        Returns:
            tuple: ``enc_outputs_class`` (B, S, num_classes) logits and
            ``enc_outputs_coord_unact`` (B, S, 4) unactivated normalised
            ``(cx, cy, w, h)`` (``+inf`` at invalid proposals).
        """
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, memory_mask, spatial_shapes)
        return (cls_branch(output_memory),
                reg_branch(output_memory) + output_proposals)

    def num_proposals(self, num_tokens) -> int:
        """How many proposals two-stage selects from ``num_tokens``.

        ``num_queries`` (plus ``num_queries_one2many`` in training mode);
        or ``num_tokens`` when the batch's feature maps hold fewer tokens
        (e.g. a 64x64 image with strides 8-64 gives 85), where
        ``torch.topk`` would fail mid-training: the decoder then runs on
        fewer queries (the one-to-many group loses them first), the
        matching and the losses take them as they are, and a warning names
        the sizes. A symbolic ``num_tokens`` (ONNX export,
        ``torch.compile``) is not compared.

        Args:
            num_tokens (int | torch.SymInt): S, tokens per image (padded).

        Returns:
            int | torch.SymInt: the number of proposals.
        """
        wanted, queries = self.num_queries, f'num_queries={self.num_queries}'
        if self.training and self.num_queries_one2many:
            wanted += self.num_queries_one2many
            queries += f' + num_queries_one2many={self.num_queries_one2many}'
        if isinstance(num_tokens, int) and num_tokens < wanted:
            warnings.warn(
                f'two-stage: the batch\'s feature maps have {num_tokens} '
                f'tokens, fewer than {queries}: {num_tokens} proposals are '
                'used for this batch; use larger images or fewer queries')
            return num_tokens
        return wanted

    def gen_encoder_output_proposals(
            self, memory: Tensor, memory_mask: Tensor,
            spatial_shapes: Tensor) -> Tuple[Tensor, Tensor]:
        """One proposal per pixel (Appendix A.4, "Two-Stage Deformable DETR").

        The proposal of the pixel at ``(x, y)`` of level ``l`` is centred on
        it, relative to the level's unpadded size, with width and height
        ``0.05 * 2**l``. Proposals at padded pixels or with a coordinate
        outside (0.01, 0.99) are invalid: their unactivated coordinates are
        ``+inf`` and their memory is zeroed.

        Args:
            memory (Tensor): (B, S, C) encoder memory.
            memory_mask (Tensor): (B, S) bool, True at padded pixels.
            spatial_shapes (Tensor): (num_levels, 2) int64 ``(H, W)``.

        Returns:
            tuple: ``output_memory`` (B, S, C), the transformed memory, and
            ``output_proposals`` (B, S, 4) unactivated (inverse-sigmoid)
            normalised ``(cx, cy, w, h)``, ``+inf`` where invalid.
        """
        bs = memory.size(0)
        proposals = []
        start = 0  # index of the level's first token
        for lvl, (H, W) in enumerate(spatial_shapes.tolist()):
            # (B, H*W) -> (B, H, W)
            mask = memory_mask[:, start:start + H * W].view(bs, H, W)
            # (B, 2) valid (W, H) -> (B, 1, 1, 2), broadcast over the grid
            scale = valid_sizes(mask).view(bs, 1, 1, 2)
            grid_y, grid_x = torch.meshgrid(
                torch.linspace(
                    0, H - 1, H, dtype=torch.float32, device=memory.device),
                torch.linspace(
                    0, W - 1, W, dtype=torch.float32, device=memory.device),
                indexing='ij')
            grid = torch.cat([grid_x.unsqueeze(-1), grid_y.unsqueeze(-1)], -1)
            grid = (grid.unsqueeze(0).expand(bs, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0**lvl)
            proposals.append(torch.cat((grid, wh), -1).view(bs, -1, 4))
            start += H * W
        output_proposals = torch.cat(proposals, 1)
        valid = ((output_proposals > 0.01) &
                 (output_proposals < 0.99)).all(-1, keepdim=True)
        invalid = memory_mask.unsqueeze(-1) | ~valid
        output_proposals = inverse_sigmoid(output_proposals).masked_fill(
            invalid, float('inf'))
        output_memory = memory.masked_fill(invalid, float(0))
        output_memory = self.memory_trans_norm(
            self.memory_trans_fc(output_memory))
        return output_memory, output_proposals
