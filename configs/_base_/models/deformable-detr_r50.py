# Deformable DETR, ResNet-50 (Zhu et al., arXiv 2010.04159, Sec. 4-5 and
# Appendix A.2): C3-C5 + one extra level, 6 encoder + 6 decoder layers,
# M=8 heads, K=4 sampling points, 300 queries, focal 2 / L1 5 / GIoU 2.
deformable_attn_cfg = dict(  # MultiScaleDeformableAttention
    embed_dims=256, num_heads=8, num_levels=4, num_points=4, dropout=0.1)
ffn_cfg = dict(
    embed_dims=256,
    feedforward_channels=1024,
    ffn_drop=0.1,
    # mmcv's default ReLU is in place: on the output of a linear layer
    # (a view of its matrix product) autograd then clones, zero-fills and
    # copies the whole hidden activation per layer; the same function
    act_cfg=dict(type='ReLU', inplace=False))
model = dict(
    type='DeformableDETR',
    with_box_refine=False,
    as_two_stage=False,
    # channels-last images into the backbone: oneDNN's CPU convolutions run
    # without reordering; the same function to float rounding
    # (docs/benchmarks.md, "Channels-last backbone")
    channels_last=True,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),  # C3, C4, C5
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        # No weights are loaded (nothing is downloaded) by default. To train
        # from ImageNet as in the paper, set init_cfg=dict(type='Pretrained',
        #     checkpoint='torchvision://resnet50')  # downloads torchvision's
        # or, offline, checkpoint='/path/to/resnet50.pth'.
        init_cfg=None),
    neck=dict(
        type='DeformableDETRNeck',
        in_channels=[512, 1024, 2048],
        out_channels=256,
        num_outs=4),
    transformer=dict(
        type='DeformableDETRTransformer',
        num_queries=300,
        # dropout masks from a hash of (seed, step, element index) instead
        # of torch's serial Bernoulli draws, same p and expectation: a
        # faster step, reproducible across thread counts
        # (docs/operator.md, "Counter-based dropout"); False gives
        # torch's nn.Dropout
        counter_dropout=True,
        num_feature_levels=4,
        positional_encoding=dict(
            type='SinePositionalEncoding',
            num_feats=128,
            normalize=True,
            offset=-0.5),
        encoder=dict(
            type='DeformableDETRTransformerEncoder',
            num_layers=6,
            layer_cfg=dict(
                self_attn_cfg=deformable_attn_cfg, ffn_cfg=ffn_cfg)),
        decoder=dict(
            type='DeformableDETRTransformerDecoder',
            num_layers=6,
            layer_cfg=dict(
                self_attn_cfg=dict(  # mmcv MultiheadAttention
                    embed_dims=256,
                    num_heads=8,
                    attn_drop=0.1,
                    dropout_layer=dict(type='Dropout', drop_prob=0.1)),
                cross_attn_cfg=deformable_attn_cfg,
                ffn_cfg=ffn_cfg))),
    bbox_head=dict(
        type='DeformableDETRHead',
        num_classes=80,
        embed_dims=256,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))
