"""The loader of ``ddetr_plugin.datasets.transforms`` under mmcv's name:
mmdet's own tools recognise the train pipelines' loading step
(``mmdet.datasets.get_loading_pipeline``, which
``analyze_results.py`` runs on the train pipeline), skipping stays opt-in
(the test pipelines raise on an unreadable image as mmcv's loader does),
and the earlier name ``LoadImageFromFileOrSkip`` still skips. The skipping
itself is tested in ``test_hostile_data.py``."""
import pytest
from helpers.paths import BCCD_CONFIG, REPO_ROOT
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmdet.datasets import get_loading_pipeline
from mmengine.config import Config

from ddetr_plugin.datasets.transforms import (LoadImageFromFile,
                                              LoadImageFromFileOrSkip)
from ddetr_plugin.registry import TRANSFORMS

CONFIGS = [BCCD_CONFIG, REPO_ROOT / 'configs' / 'deformable_detr' /
           'deformable-detr_r50_16xb2-50e_coco.py']


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_mmdet_finds_the_loading_steps_of_our_train_pipelines(
        path, plugin_scope):
    cfg = Config.fromfile(path)
    steps = get_loading_pipeline(cfg.train_dataloader.dataset.pipeline)
    assert [s['type'] for s in steps] == ['LoadImageFromFile',
                                          'LoadAnnotations']
    loader = TRANSFORMS.build(steps[0])  # where mmdet's tool builds it
    assert type(loader) is LoadImageFromFile
    assert loader.skip_unreadable


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_test_pipelines_load_as_mmcv_does(path, plugin_scope):
    loader = TRANSFORMS.build(
        Config.fromfile(path).test_dataloader.dataset.pipeline[0])
    assert isinstance(loader, MMCVLoadImageFromFile)
    assert not loader.skip_unreadable


def test_an_unreadable_image_raises_unless_skipping(tmp_path):
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    results = dict(img_path=str(empty))
    with pytest.raises(Exception) as mmcv_error:
        MMCVLoadImageFromFile().transform(dict(results))
    with pytest.raises(type(mmcv_error.value)):
        LoadImageFromFile().transform(dict(results))
    assert LoadImageFromFile(skip_unreadable=True).transform(
        dict(results)) is None
    legacy = LoadImageFromFileOrSkip()
    assert legacy.skip_unreadable and legacy.transform(dict(results)) is None
    assert 'skip_unreadable=True' in repr(legacy)


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError, match='max_failed_fraction'):
        LoadImageFromFile(skip_unreadable=True, max_failed_fraction=2)
