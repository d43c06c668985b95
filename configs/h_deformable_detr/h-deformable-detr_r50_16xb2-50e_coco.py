# Deformable DETR trained with hybrid matching (H-DETR, arXiv 2207.13080):
# 1500 one-to-many queries beside the 300 one-to-one ones, each ground-truth
# box repeated 6 times for them, their losses weighted 1 (the paper's
# settings). Training only: the model tests and exports as the base config.
_base_ = '../deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'
model = dict(
    type='HybridDeformableDETR',
    num_queries_one2many=1500,
    k_one2many=6,
    lambda_one2many=1.0)
