"""What training does with hostile data (tests/helpers/hostile_corpus.py):
tools/train.py refuses an error case before the first iteration; with
--skip-data-check one short epoch over every case that training copes with
(plus three unreadable files) runs with every loss finite; unreadable images
are skipped and counted up to a fraction; boxes are clipped and dropped;
batches without any object give finite losses and gradients."""
import json
import math

import numpy as np
import pytest
import torch
from helpers.ddetr_model_utils import make_batch
from helpers.hostile_corpus import build_corpus, file_hashes, tiny_config
from helpers.paths import REPO_ROOT, shared_data_dir
from helpers.tiny_training import run_tool
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from ddetr_plugin.datasets.transforms import (ClipAndDropBoxes,
                                              UnreadableImagesError)
from ddetr_plugin.engine.data_seeding import SampleKey, SeededSampleDataset
from ddetr_plugin.registry import DATASETS, MODELS

TRAIN = REPO_ROOT / 'tools' / 'train.py'
UNREADABLE = ('zero.jpg', 'truncated.jpg', 'not_image.jpg')


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp('hostile')
    build_corpus(root, shared_data_dir('bccd', 'BCCD', 'JPEGImages'))
    return root, file_hashes(root)


def _train(config, *args):
    return run_tool(TRAIN, config, *args, timeout=600, check=False)


def test_train_refuses_before_the_first_iteration(corpus, tmp_path):
    root, hashes = corpus
    config = tmp_path / 'nan_box.py'
    tiny_config(root, root / 'cases' / 'nan_box.json').dump(config)
    proc = _train(config, '--work-dir', tmp_path / 'work')
    assert proc.returncode == 1
    assert 'training not started' in proc.stderr
    assert 'ERROR invalid_box' in proc.stderr
    assert 'clean.jpg' in proc.stderr and 'nan' in proc.stderr
    assert 'Epoch(train)' not in proc.stdout + proc.stderr
    assert not (tmp_path / 'work').exists()  # no Runner was built
    assert file_hashes(root) == hashes


@pytest.mark.slow
def test_one_epoch_over_every_survivable_case(corpus):
    """18 images: 15 warning cases and 3 unreadable files, batch 9, 2
    iterations; --skip-data-check lets the zero-byte file through to the
    loader, which skips it like the truncated and non-image files."""
    root, hashes = corpus
    cfg = tiny_config(root, root / 'mixed.json')
    cfg.train_dataloader.dataset.pipeline[0].max_failed_fraction = 0.05
    config = root.parent / 'mixed_config.py'
    cfg.dump(config)
    proc = _train(config, '--skip-data-check')
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for name in UNREADABLE:  # one warning per file, naming it
        assert log.count(f'skipped unreadable image {root}/images/{name}') \
            == 1, log[-4000:]
    # the box [700, 500, 90, 90] of the json's 800x600 lies outside the real
    # 640x480 image: clipped to nothing at 128x96, dropped with a count
    assert 'clean.jpg: 0 box(es) clipped to the 128x96 image, 1 dropped' \
        in log
    (scalars, ) = (root.parent / 'work_dir').glob('*/vis_data/scalars.json')
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    assert [r['iter'] for r in records] == [1, 2]
    for record in records:
        losses = {k: v for k, v in record.items() if 'loss' in k}
        assert len(losses) == 4  # total, cls, bbox, iou (one decoder layer)
        assert all(math.isfinite(v) for v in losses.values()), losses
    assert file_hashes(root) == hashes


def test_unreadable_images_stop_past_the_fraction(corpus):
    """The counting of ``LoadImageFromFileOrSkip`` itself, file by file (no
    redraws in between, so no other file is read by chance)."""
    root, hashes = corpus
    cfg = tiny_config(root, root / 'mixed.json').train_dataloader.dataset
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        dataset = DATASETS.build(cfg)
    loader = dataset.pipeline.transforms[0]
    assert (loader.max_failed_fraction, loader.min_images) == (0.01, 100)
    images = root / 'images'
    assert loader(dict(img_path=f'{images}/clean.jpg')) is not None
    assert loader(dict(img_path=f'{images}/zero.jpg')) is None  # skipped
    assert loader.failed_files == {f'{images}/zero.jpg'}
    assert loader(dict(img_path=f'{images}/zero.jpg')) is None  # same file
    assert len(loader.failed_files) == 1  # 1 <= 1% of max(2 read, 100)
    # 2 failures > 1% of max(read images, 100): stop, naming the files
    with pytest.raises(UnreadableImagesError, match='truncated.jpg'):
        loader(dict(img_path=f'{images}/truncated.jpg'))
    assert file_hashes(root) == hashes


def test_a_skipped_sample_is_replaced_by_the_same_sample_every_time(corpus):
    """mmengine draws the replacement from numpy's global generator; under
    the training dataloader's per-sample seeding (SeededSampleDataset) the
    draw is a function of (seed, epoch, index), in any process."""
    root, _ = corpus
    cfg = tiny_config(root, root / 'mixed.json').train_dataloader.dataset
    cfg.pipeline[0].max_failed_fraction = 1.0  # count, never stop
    names = [i['file_name'] for i in json.loads(
        (root / 'mixed.json').read_text())['images']]
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        dataset = SeededSampleDataset(DATASETS.build(cfg))
    zero = names.index('zero.jpg')
    replacements = {
        seed: dataset[SampleKey(zero, epoch=0, seed=seed)]
        ['data_samples'].img_path for seed in range(4)}
    for seed, path in replacements.items():
        assert path.split('/')[-1] not in UNREADABLE
        again = dataset[SampleKey(zero, epoch=0, seed=seed)]
        assert again['data_samples'].img_path == path
    assert f'{root}/images/zero.jpg' in \
        dataset.pipeline.transforms[0].failed_files


def test_boxes_clipped_and_degenerate_dropped():
    boxes = HorizontalBoxes(torch.tensor(
        [[-10., -10., 50., 50.], [10., 10., 10.5, 40.],
         [float('nan'), 0., 5., 5.], [20., 20., 60., 40.],
         [70., 5., 90., 30.]]))
    results = dict(img_path='x.jpg', img_shape=(48, 64), gt_bboxes=boxes,
                   gt_bboxes_labels=np.array([0, 1, 2, 1, 2]),
                   gt_ignore_flags=np.array([0, 0, 0, 1, 0], dtype=bool))
    results = ClipAndDropBoxes().transform(results)
    assert results['gt_bboxes'].tensor.tolist() == [[0., 0., 50., 48.],
                                                    [20., 20., 60., 40.]]
    assert results['gt_bboxes_labels'].tolist() == [0, 1]
    assert results['gt_ignore_flags'].tolist() == [False, True]


@pytest.mark.parametrize('with_box_refine,as_two_stage',
                         [(False, False), (True, False), (True, True)])
def test_batch_without_objects_has_finite_losses(corpus, with_box_refine,
                                                 as_two_stage):
    """Every image a negative: the assigner matches nothing and every loss
    (last and auxiliary layers, two-stage encoder) and gradient is finite."""
    root, _ = corpus
    model_cfg = tiny_config(root, root / 'mixed.json').model
    model_cfg.update(with_box_refine=with_box_refine,
                     as_two_stage=as_two_stage)
    model_cfg.transformer.decoder.num_layers = 2  # + auxiliary losses
    # two-stage picks its queries among the 64 tokens of a 96x128 batch
    model_cfg.transformer.num_queries = model_cfg.test_cfg.max_per_img = 30
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    data = make_batch()
    for sample in data['data_samples']:
        sample.gt_instances = InstanceData(
            bboxes=torch.zeros((0, 4)), labels=torch.zeros(0, dtype=int))
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    assert len(losses) == (9 if as_two_stage else 6)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
