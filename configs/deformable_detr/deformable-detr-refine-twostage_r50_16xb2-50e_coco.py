# + two-stage Deformable DETR (paper Sec. 4.2, Appendix A.4)
_base_ = 'deformable-detr-refine_r50_16xb2-50e_coco.py'
model = dict(as_two_stage=True)
