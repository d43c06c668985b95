# Backbone swap: ResNet-101 (same C3-C5 channels as ResNet-50).
_base_ = 'deformable-detr_r50_16xb2-50e_coco.py'
model = dict(
    backbone=dict(
        depth=101,
        # from ImageNet: init_cfg=dict(type='Pretrained',
        #     checkpoint='torchvision://resnet101') or a local .pth path
        init_cfg=None))
