# BCCD blood-cell detection (MIT, github.com/Shenggan/BCCD_Dataset), 640x480
# images, 3 classes: the COCO dataset config with BCCD's files, classes and
# pipelines. `make data` (tools/dataset_converters/voc_to_coco.py) writes the
# COCO json files below from the VOC layout; the images stay in the VOC
# folder. Paths are relative to the repository root.
_base_ = 'coco_detection.py'

data_root = ''
bccd_images = '../shared/data/bccd/BCCD/JPEGImages/'
ann_dir = 'data/bccd/annotations/'
# The order of the categories in the json files (ids 1, 2, 3).
metainfo = dict(
    classes=('RBC', 'WBC', 'Platelets'),
    palette=[(220, 20, 60), (0, 82, 255), (0, 170, 30)])
img_scale = (512, 384)  # (w, h): the 640x480 images at 0.8x

train_pipeline = [
    # an unreadable image skips its sample (stops above 1% of the images)
    dict(
        type='LoadImageFromFile',
        skip_unreadable=True,
        backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    # cells have no up or left: flip both ways
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25],
        direction=['horizontal', 'vertical']),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='ClipAndDropBoxes'),  # boxes < 1 px or non-finite, counted
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# what every split shares
bccd_dataset = dict(
    data_root=data_root,
    metainfo=metainfo,
    data_prefix=dict(img=bccd_images))
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        bccd_dataset,
        ann_file=ann_dir + 'train.json',
        filter_cfg=dict(filter_empty_gt=False, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    dataset=dict(
        bccd_dataset, ann_file=ann_dir + 'val.json', pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=4,
    dataset=dict(
        bccd_dataset, ann_file=ann_dir + 'test.json', pipeline=test_pipeline))

val_evaluator = dict(ann_file=ann_dir + 'val.json', classwise=True)
test_evaluator = dict(ann_file=ann_dir + 'test.json', classwise=True)
