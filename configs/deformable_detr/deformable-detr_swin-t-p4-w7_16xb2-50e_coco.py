# Backbone swap: Swin-T (mmdet's SwinTransformer) instead of ResNet-50;
# stages 2-4 (strides 8, 16, 32) feed the neck.
_base_ = 'deformable-detr_r50_16xb2-50e_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(1, 2, 3),
        # from ImageNet: init_cfg=dict(type='Pretrained', checkpoint=
        #     'https://github.com/SwinTransformer/storage/releases/download/'
        #     'v1.0.0/swin_tiny_patch4_window7_224.pth') or a local path
        init_cfg=None),
    neck=dict(in_channels=[192, 384, 768]))
