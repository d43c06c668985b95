# DINO, 4 feature levels, ResNet-50, 12 epochs on COCO (Zhang et al., arXiv
# 2203.03605; the model and schedule of mmdet 3.3's
# configs/dino/dino-4scale_r50_8xb2-12e_coco.py, whose converted weights load
# here): two-stage Deformable DETR with box refinement, 900 queries chosen by
# mixed query selection, look-forward-twice refinement, contrastive
# denoising queries in training, no dropout, 2048-wide FFNs.
_base_ = [
    '../_base_/models/deformable-detr_r50.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]
deformable_attn_cfg = dict(  # MultiScaleDeformableAttention
    embed_dims=256, num_heads=8, num_levels=4, num_points=4, dropout=0.0)
ffn_cfg = dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0)
model = dict(
    type='DINO',
    with_box_refine=True,
    as_two_stage=True,
    transformer=dict(
        type='DINOTransformer',
        num_queries=900,  # matching queries
        # positions normalised to [0, 2 pi] from the pixel's far edge
        positional_encoding=dict(temperature=20, offset=0.0),
        encoder=dict(
            layer_cfg=dict(
                self_attn_cfg=deformable_attn_cfg, ffn_cfg=ffn_cfg)),
        decoder=dict(
            type='DINOTransformerDecoder',
            layer_cfg=dict(
                self_attn_cfg=dict(  # mmcv MultiheadAttention
                    embed_dims=256,
                    num_heads=8,
                    attn_drop=0.0,
                    dropout_layer=dict(type='Dropout', drop_prob=0.0)),
                cross_attn_cfg=deformable_attn_cfg,
                ffn_cfg=ffn_cfg))),
    bbox_head=dict(type='DINOHead', loss_cls=dict(loss_weight=1.0)),
    # contrastive denoising: labels redrawn with probability 0.25, box
    # corners moved by up to half (positives) or 1-2x half (negatives) the
    # box size, about 100 denoising queries per image in as many groups as
    # fit
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_dn_queries=100)),
    test_cfg=dict(max_per_img=300))

# the base schedule with lr 1e-4, lr x0.1 for the backbone only, 12 epochs,
# lr x0.1 after epoch 11, total batch 16 (8 GPUs x 2 images)
optim_wrapper = dict(
    optimizer=dict(lr=0.0001),
    paramwise_cfg=dict(
        _delete_=True, custom_keys=dict(backbone=dict(lr_mult=0.1))))
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[11],
        gamma=0.1)
]
# used by `--auto-scale-lr` only
auto_scale_lr = dict(base_batch_size=16)
