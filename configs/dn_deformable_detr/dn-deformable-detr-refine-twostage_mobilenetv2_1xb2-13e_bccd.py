# The BCCD demo model (configs/deformable_detr/
# deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py) made two-stage, with
# three training-only changes: contrastive denoising (DINO's settings), look
# forward twice and no dropout (DINO's). At inference it is a two-stage
# Deformable DETR with box refinement. Its step costs about what the demo's
# did before the folded batch norms, so the demo's 13 epochs fit: test mAP
# 0.510, mAP_50 0.770, against the demo's 0.494, 0.810 (docs/benchmarks.md,
# "BCCD recipe variants").
_base_ = [
    '../deformable_detr/deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py'
]
no_dropout = dict(dropout=0.0)
model = dict(
    type='DNDeformableDETR',
    as_two_stage=True,
    transformer=dict(
        encoder=dict(
            layer_cfg=dict(
                self_attn_cfg=no_dropout, ffn_cfg=dict(ffn_drop=0.0))),
        decoder=dict(
            look_forward_twice=True,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    attn_drop=0.0,
                    dropout_layer=dict(type='Dropout', drop_prob=0.0)),
                cross_attn_cfg=no_dropout,
                ffn_cfg=dict(ffn_drop=0.0)))),
    bbox_head=dict(type='DNDeformableDETRHead'),
    # BCCD has at most 28 cells per training image: at least 3 denoising
    # groups (positive + negative copy of every cell) of up to 56 queries
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_dn_queries=100)))
