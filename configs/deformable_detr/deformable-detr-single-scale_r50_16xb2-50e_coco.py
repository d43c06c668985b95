# Single-scale Deformable DETR (paper Table 2, "single-scale"): C5 only
# (stride 32), one feature level throughout.
_base_ = 'deformable-detr_r50_16xb2-50e_coco.py'
model = dict(
    backbone=dict(out_indices=(3, )),
    neck=dict(in_channels=[2048], num_outs=1),
    transformer=dict(
        num_feature_levels=1,
        encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=1))),
        decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=1)))))
