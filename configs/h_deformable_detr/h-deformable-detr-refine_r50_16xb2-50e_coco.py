# + iterative bounding box refinement (Deformable DETR paper Sec. 4.2)
_base_ = 'h-deformable-detr_r50_16xb2-50e_coco.py'
model = dict(with_box_refine=True)
