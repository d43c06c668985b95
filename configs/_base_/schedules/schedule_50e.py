# Deformable DETR schedule (paper Sec. 5 and its reference code): AdamW, lr
# 2e-4, weight decay 1e-4, lr x0.1 for the backbone and the layers predicting
# sampling offsets and reference points, 50 epochs, lr x0.1 after epoch 40,
# total batch 32 (16 GPUs x 2 images).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            # substrings of our parameter names: backbone.*,
            # transformer.{encoder,decoder}.layers.*.
            # {self_attn,cross_attn}.sampling_offsets.*,
            # transformer.reference_points_fc.* (single stage)
            'backbone': dict(lr_mult=0.1),
            'sampling_offsets': dict(lr_mult=0.1),
            'reference_points_fc': dict(lr_mult=0.1)
        }))

max_epochs = 50
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[40],
        gamma=0.1)
]

# base_batch_size = (16 GPUs) x (2 samples per GPU); used by
# `--auto-scale-lr` only.
auto_scale_lr = dict(base_batch_size=32)
