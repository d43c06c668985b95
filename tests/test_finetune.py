"""Fine-tuning on other classes with the template config: from a fixed
random 80-class COCO checkpoint, ('person', 'car', 'zebra-crossing') keeps
the person and car rows of every classification layer, initialises
zebra-crossing as the head does, and trains on real coco_mini images."""
import json
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import bias_init_with_prob
from mmengine.runner import Runner

from helpers.ddetr_model_utils import build_our_model, perturb_
from helpers.paths import REPO_ROOT, shared_data_dir
from ddetr_plugin.converters.class_rows import remap_class_rows
from ddetr_plugin.converters.coco_classes import (COCO_80_CLASSES,
                                                  COCO_91_CLASSES)

CONFIG = REPO_ROOT / 'configs' / 'deformable_detr' / \
    'deformable-detr-refine_r50_8xb2-12e_custom-finetune.py'
CLASSES = ('person', 'car', 'zebra-crossing')


def custom_coco_annotations(path):
    """coco_mini relabelled to CLASSES: person and car stay, traffic lights
    become 'zebra-crossing', other objects are dropped."""
    source = json.loads(
        (shared_data_dir('coco_mini') / 'instances_mini.json').read_text())
    ids = {'person': 1, 'car': 3, 'traffic light': 10}
    annotations = [dict(a) for a in source['annotations']
                   if a['category_id'] in ids.values()]
    images_with = {a['image_id'] for a in annotations}
    custom = dict(
        images=[i for i in source['images'] if i['id'] in images_with],
        annotations=annotations,
        categories=[dict(id=1, name='person'), dict(id=3, name='car'),
                    dict(id=10, name='zebra-crossing')])
    path.write_text(json.dumps(custom))


class RecordClassRows(Hook):
    """The class layers as loaded, before the first training step."""

    def before_train(self, runner):
        head = runner.model.bbox_head
        self.rows = [(m.weight.detach().clone(), m.bias.detach().clone())
                     for m in head.cls_branches]


@pytest.mark.slow
def test_finetune_keeps_known_class_rows_and_trains(tmp_path, capfd):
    cfg = Config.fromfile(CONFIG)
    ann_file = tmp_path / 'train.json'
    custom_coco_annotations(ann_file)

    # a fixed random 80-class checkpoint of the same architecture
    coco_cfg = cfg.model.copy()
    coco_cfg.bbox_head = dict(cfg.model.bbox_head, num_classes=80)
    torch.manual_seed(0)
    coco_model = build_our_model(Config(dict(model=coco_cfg)))
    coco_model.init_weights()
    perturb_(coco_model)
    checkpoint = tmp_path / 'coco80.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=COCO_80_CLASSES)),
                    state_dict=coco_model.state_dict()), checkpoint)

    cfg.load_from = str(checkpoint)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.update(batch_size=2, num_workers=0,
                                persistent_workers=False)
    cfg.train_dataloader.dataset.update(
        data_root='', ann_file=str(ann_file), indices=2,
        data_prefix=dict(img=str(shared_data_dir('coco_mini', 'images'))
                         + '/'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(320, 240), keep_ratio=True),
            dict(type='PackDetInputs')
        ])
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1
    cfg.vis_backends = [dict(type='LocalVisBackend')]
    cfg.visualizer.vis_backends = cfg.vis_backends
    runner = Runner.from_cfg(cfg)
    recorder = RecordClassRows()
    runner.register_hook(recorder)
    runner.train()

    assert runner.iter == 1
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss)
    old = coco_model.state_dict()
    prior = bias_init_with_prob(0.01)
    for i, (weight, bias) in enumerate(recorder.rows):
        old_weight = old[f'bbox_head.cls_branches.{i}.weight']
        old_bias = old[f'bbox_head.cls_branches.{i}.bias']
        for row, name in ((0, 'person'), (1, 'car')):
            index = COCO_80_CLASSES.index(name)
            assert torch.equal(weight[row], old_weight[index])
            assert torch.equal(bias[row], old_bias[index])
        assert bias[2] == pytest.approx(prior)
        assert not (weight[2] == old_weight).all(1).any()
        assert weight[2].abs().max() <= 1 / math.sqrt(weight.shape[1])
    assert "kept the checkpoint's rows of ['person', 'car'], initialised " \
        "['zebra-crossing']" in capfd.readouterr().out


def test_two_stage_proposal_row_is_kept_as_foreground_score():
    """Remapping a 91-class checkpoint to COCO's 80: every class keeps its
    row by name; the proposal layer's row 0 stays its foreground score."""
    num_layers = 3
    state_dict, initial = {}, {}
    for i in range(num_layers):
        state_dict[f'bbox_head.cls_branches.{i}.bias'] = \
            torch.arange(91.) + 100 * i
        initial[f'bbox_head.cls_branches.{i}.bias'] = torch.zeros(80)
    state_dict['transformer.level_embed'] = torch.ones(2)
    remapped, kept, new = remap_class_rows(
        state_dict, COCO_91_CLASSES, COCO_80_CLASSES, initial,
        proposal_layer=num_layers - 1)
    assert kept == list(COCO_80_CLASSES) and new == []
    for i in range(num_layers):
        bias = remapped[f'bbox_head.cls_branches.{i}.bias']
        expected = torch.tensor(
            [COCO_91_CLASSES.index(n) for n in COCO_80_CLASSES],
            dtype=torch.float) + 100 * i
        if i == num_layers - 1:
            expected[0] = 100 * i  # row 0 of the 91: the proposal score
        assert torch.equal(bias, expected)
    assert remapped['transformer.level_embed'] is \
        state_dict['transformer.level_embed']
    with pytest.raises(ValueError,
                       match=r'cls_branches.0.bias has shape \(80,\)'):
        remap_class_rows(remapped, COCO_80_CLASSES[:79], CLASSES, initial)


def test_dino_label_embedding_and_proposal_rows_follow_the_classes():
    """DINO: the denoising label embedding is remapped like the class
    layers, and its proposal layer (scored with every class) has no
    foreground row to keep."""
    classes = ('car', 'zebra-crossing', 'person')
    state_dict = {
        'bbox_head.cls_branches.2.bias': torch.arange(80.),
        'dn_query_generator.label_embedding.weight':
        torch.arange(80.)[:, None].repeat(1, 4),
    }
    initial = {
        'bbox_head.cls_branches.2.bias': torch.full((3, ), -1.),
        'dn_query_generator.label_embedding.weight': torch.full((3, 4), -1.),
    }
    remapped, kept, new = remap_class_rows(state_dict, COCO_80_CLASSES,
                                           classes, initial)
    car, person = COCO_80_CLASSES.index('car'), COCO_80_CLASSES.index(
        'person')
    assert kept == ['car', 'person'] and new == ['zebra-crossing']
    assert remapped['bbox_head.cls_branches.2.bias'].tolist() == [
        car, -1., person
    ]
    assert remapped['dn_query_generator.label_embedding.weight'][:, 0] \
        .tolist() == [car, -1., person]
