# + contrastive denoising in training (DN-DETR, arXiv 2203.01305; DINO's
# positive and negative groups, arXiv 2203.03605 Sec. 3.3): noised copies
# of the ground truth as extra decoder queries, masked from the matching
# queries. The model at inference is the two-stage refine Deformable DETR
# of configs/deformable_detr/, whose config loads its checkpoints.
_base_ = ('../deformable_detr/'
          'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py')
model = dict(
    type='DNDeformableDETR',
    bbox_head=dict(type='DNDeformableDETRHead'),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        # DINO's: 100 // (most boxes in one image of the batch) groups
        group_cfg=dict(dynamic=True, num_dn_queries=100)))
