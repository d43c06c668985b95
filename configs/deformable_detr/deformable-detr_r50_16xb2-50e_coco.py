_base_ = [
    '../_base_/models/deformable-detr_r50.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]
