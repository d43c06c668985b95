"""One epoch of a shipped config on a few real BCCD images, then its test:
what the tests of each new detector's configs share (small images, no
workers, no validation, no drawing hooks)."""
from pathlib import Path

from mmengine.config import Config

from .paths import BCCD_CLASSES, shared_data_dir

# small images: a training step in a fraction of a second
SMALL_SCALE = (160, 120)


def shrink_coco_r50(model: Config) -> None:
    """Shrink a COCO ResNet-50 model config in place (ResNet-18, one
    encoder and decoder layer, 20 queries, BCCD's classes)."""
    model.backbone.depth = 18
    model.neck.in_channels = [128, 256, 512]
    model.transformer.encoder.num_layers = 1
    model.transformer.decoder.num_layers = 1
    model.transformer.num_queries = 20
    model.bbox_head.num_classes = len(BCCD_CLASSES)
    model.test_cfg.max_per_img = 20


def train_and_test_on_bccd(cfg: Config, ann_file: Path, work_dir: Path):
    """Train ``cfg`` (backbone weights not loaded) one epoch on the images
    of ``ann_file`` (a BCCD COCO json, batch 2), then test it on them.

    Returns:
        tuple: ``(runner, test metrics)``; ``runner.message_hub`` holds
        the logged training scalars.
    """
    from ddetr_plugin.engine import DeformableDETRRunner
    cfg.model.backbone.init_cfg = None
    images = str(shared_data_dir('bccd', 'BCCD', 'JPEGImages')) + '/'
    pipelines = dict(
        train=[dict(type='LoadImageFromFile'),
               dict(type='LoadAnnotations', with_bbox=True),
               dict(type='Resize', keep_ratio=True, scale=SMALL_SCALE),
               dict(type='PackDetInputs')],
        test=[dict(type='LoadImageFromFile'),
              dict(type='Resize', keep_ratio=True, scale=SMALL_SCALE),
              dict(type='LoadAnnotations', with_bbox=True),
              dict(type='PackDetInputs',
                   meta_keys=('img_id', 'img_path', 'ori_shape',
                              'img_shape', 'scale_factor'))])
    for split in ('train', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.update(
            type='CocoDataset', data_root='', ann_file=str(ann_file),
            data_prefix=dict(img=images),
            metainfo=dict(classes=BCCD_CLASSES), pipeline=pipelines[split])
        loader.dataset.pop('filter_cfg', None)
    cfg.test_evaluator = dict(type='CocoMetric', ann_file=str(ann_file),
                              metric='bbox')
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook')
    cfg.custom_hooks = []
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = str(work_dir)
    runner = DeformableDETRRunner.from_cfg(cfg)
    runner.train()
    return runner, runner.test()
