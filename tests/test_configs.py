"""Every config builds its model; one trains and tests through mmengine's
Runner on a tiny synthetic COCO dataset."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import Runner

from ddetr_plugin.registry import DATASETS, MODELS

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
CONFIGS = [
    path for folder in ('deformable_detr', 'dn_deformable_detr', 'dino')
    for path in sorted((CONFIG_DIR / folder).glob('*.py'))
]
CLASSES = ('cube', 'ball')


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_builds_model(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'ddetr_plugin'
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    assert type(model).__module__.startswith('ddetr_plugin.')
    assert type(model.bbox_head).__module__.startswith('ddetr_plugin.')
    levels = cfg.model.transformer.num_feature_levels
    assert model.transformer.level_embed.shape[0] == levels


def test_paper_settings():
    cfg = Config.fromfile(CONFIG_DIR / 'deformable_detr' /
                          'deformable-detr_r50_16xb2-50e_coco.py')
    transformer, head = cfg.model.transformer, cfg.model.bbox_head
    assert transformer.num_queries == 300
    assert transformer.encoder.num_layers == transformer.decoder.num_layers \
        == 6
    assert transformer.encoder.layer_cfg.self_attn_cfg.num_points == 4
    assert (head.loss_cls.loss_weight, head.loss_bbox.loss_weight,
            head.loss_iou.loss_weight) == (2.0, 5.0, 2.0)
    assert [c.weight for c in cfg.model.train_cfg.assigner.match_costs] == \
        [2.0, 5.0, 2.0]
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.param_scheduler[0].milestones == [40]


def test_lr_multipliers_hit_our_parameter_names():
    cfg = Config.fromfile(CONFIG_DIR / 'deformable_detr' /
                          'deformable-detr_r50_16xb2-50e_coco.py')
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        model = MODELS.build(cfg.model)
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {
        id(p): group['lr']
        for group in optim_wrapper.optimizer.param_groups
        for p in group['params']
    }
    slow = ('backbone.', '.sampling_offsets.', 'transformer.reference_points')
    for name, p in model.named_parameters():
        if p.requires_grad:
            expected = 2e-5 if any(k in name for k in slow) else 2e-4
            assert lr[id(p)] == pytest.approx(expected), name
    assert lr[id(model.transformer.reference_points_fc.weight)] == \
        pytest.approx(2e-5)


def test_variants_change_one_key():
    base, refine, two_stage = (Config.fromfile(
        CONFIG_DIR / 'deformable_detr' / f'deformable-detr{v}_r50_16xb2-50e'
        '_coco.py').model for v in ('', '-refine', '-refine-twostage'))
    assert base.with_box_refine is False and base.as_two_stage is False
    assert refine.with_box_refine is True and refine.as_two_stage is False
    assert two_stage.with_box_refine is True and two_stage.as_two_stage


def _write_coco(root: Path, num_images: int = 4) -> str:
    """Synthetic images with one coloured rectangle each, COCO json."""
    rng = np.random.default_rng(0)
    (root / 'images').mkdir()
    images, annotations = [], []
    for i in range(num_images):
        h, w = 90, 120
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        x, y, bw, bh = 10 + 5 * i, 15, 40, 30
        img[y:y + bh, x:x + bw] = (200, 40 * i, 90)
        cv2.imwrite(str(root / 'images' / f'{i}.png'), img)
        images.append(dict(id=i, file_name=f'{i}.png', height=h, width=w))
        annotations.append(
            dict(
                id=i, image_id=i, category_id=1 + i % 2,
                bbox=[x, y, bw, bh], area=bw * bh, iscrowd=0))
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
    ann_file = root / 'annotations.json'
    ann_file.write_text(
        json.dumps(
            dict(images=images, annotations=annotations,
                 categories=categories)))
    return str(ann_file)


def _tiny_dataset(cfg, root, ann_file, pipeline):
    cfg.dataset.update(
        data_root=str(root),
        ann_file=ann_file,
        data_prefix=dict(img='images/'),
        metainfo=dict(classes=CLASSES),
        pipeline=pipeline)
    cfg.update(num_workers=0, persistent_workers=False)


def test_detr_train_pipeline(tmp_path):
    cfg = Config.fromfile(CONFIG_DIR / 'deformable_detr' /
                          'deformable-detr_r50_16xb2-50e_coco.py')
    ann_file = _write_coco(tmp_path)
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(
        data_root=str(tmp_path), ann_file=ann_file,
        data_prefix=dict(img='images/'), metainfo=dict(classes=CLASSES))
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        dataset = DATASETS.build(dataset_cfg)
    for i in range(len(dataset)):
        sample = dataset[i]['data_samples']
        h, w = sample.img_shape
        assert min(h, w) >= 384 and max(h, w) <= 1333  # resized up


@pytest.mark.slow
def test_runner_trains_and_tests(tmp_path):
    cfg = Config.fromfile(CONFIG_DIR / 'deformable_detr' /
                          'deformable-detr-refine-twostage_r50_16xb2-50e_'
                          'coco.py')
    ann_file = _write_coco(tmp_path)
    small = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(96, 72), keep_ratio=True),
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor'))
    ]
    for split in ('train', 'test'):
        _tiny_dataset(cfg[f'{split}_dataloader'], tmp_path, ann_file, small)
    cfg.test_evaluator.ann_file = ann_file
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    model = cfg.model
    model.backbone.depth = 18
    model.neck.in_channels = [128, 256, 512]
    model.transformer.encoder.num_layers = 1
    model.transformer.decoder.num_layers = 1
    model.transformer.num_queries = 10
    model.bbox_head.num_classes = len(CLASSES)
    model.test_cfg.max_per_img = 10
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler[0].update(end=1, milestones=[1])
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / 'work_dir')

    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2  # 4 images, batch 2
    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics
