# + two-stage: the one-to-many queries are the 1500 encoder proposals after
# the 300 best (Deformable DETR paper Sec. 4.2, Appendix A.4)
_base_ = 'h-deformable-detr-refine_r50_16xb2-50e_coco.py'
model = dict(as_two_stage=True)
