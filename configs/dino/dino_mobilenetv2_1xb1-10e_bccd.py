# DINO on the BCCD demo's data, backbone, sizes and optimiser: the model of
# configs/deformable_detr/deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py
# made two-stage with DINO's mixed query selection, look-forward-twice
# refinement and contrastive denoising (DINO's own settings: no dropout,
# classification loss weight 1, positional temperature 20), trained in the
# demo's time. One image per step at the demo's lr: more updates per epoch
# learn faster (val mAP after the first epoch 0.04 with batches of 4, 0.28
# with 2), at 1.18x the time per image of batches of 2, so 10 epochs fit;
# validating only from epoch 8 on (each validation costs about an eighth of
# an epoch) pays for the tenth. Test mAP 0.548 and 0.539 (two runs) against
# 0.542 for 12 epochs of batches of 2 and 0.513 for 11 of 4
# (docs/benchmarks.md, "BCCD recipe variants").
_base_ = [
    '../deformable_detr/deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py'
]
max_epochs = 10
no_dropout = dict(dropout=0.0)
model = dict(
    type='DINO',
    as_two_stage=True,
    transformer=dict(
        type='DINOTransformer',
        positional_encoding=dict(temperature=20, offset=0.0),
        encoder=dict(
            layer_cfg=dict(
                self_attn_cfg=no_dropout, ffn_cfg=dict(ffn_drop=0.0))),
        decoder=dict(
            type='DINOTransformerDecoder',
            layer_cfg=dict(
                self_attn_cfg=dict(
                    attn_drop=0.0,
                    dropout_layer=dict(type='Dropout', drop_prob=0.0)),
                cross_attn_cfg=no_dropout,
                ffn_cfg=dict(ffn_drop=0.0)))),
    bbox_head=dict(type='DINOHead', loss_cls=dict(loss_weight=1.0)),
    # BCCD has at most 28 cells per training image: at least 3 denoising
    # groups (positive + negative copy of every cell) of up to 56 queries
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_dn_queries=100)))
# the best checkpoint is chosen among epochs 8-10
train_cfg = dict(max_epochs=max_epochs, val_begin=8)
train_dataloader = dict(batch_size=1)
auto_scale_lr = dict(base_batch_size=1)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[max_epochs - 2],
        gamma=0.1)
]
