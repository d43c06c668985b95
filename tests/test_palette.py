"""A drawing colour for every class (``ddetr_plugin/datasets/palette.py``).

The case met by a new user: a config that inherits the BCCD demo config and
changes only ``metainfo.classes`` keeps the base's 3-colour palette
(mmengine merges ``metainfo`` key by key)."""
from helpers.paths import BCCD_CONFIG
from mmdet.visualization.palette import get_palette
from mmengine.config import Config

from ddetr_plugin.datasets.palette import complete_palette, complete_palettes
from ddetr_plugin.datasets.wrapped_configs import (dataset_configs,
                                                   leaf_dataset_configs)

CLASSES = tuple(f'class_{k}' for k in range(12))


def test_a_config_with_new_classes_keeps_the_base_palette_until_completed(
        tmp_path):
    config = tmp_path / 'twelve.py'
    config.write_text(f'''
_base_ = {str(BCCD_CONFIG)!r}
metainfo = dict(classes={CLASSES!r})
train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo))
test_dataloader = dict(dataset=dict(metainfo=metainfo))
''')
    cfg = Config.fromfile(str(config))
    base_palette = [tuple(c) for c in Config.fromfile(
        str(BCCD_CONFIG)).test_dataloader.dataset.metainfo.palette]
    metainfo = cfg.test_dataloader.dataset.metainfo
    assert len(metainfo.palette) == 3  # what mmengine's merge leaves
    messages = complete_palettes(cfg.test_dataloader, 'test_dataloader')
    assert messages == [
        'test_dataloader: metainfo.palette has 3 colours for 12 classes (a '
        "base config's palette?); generated colours for the last 9"]
    palette = [tuple(c) for c in metainfo.palette]
    assert len(palette) == 12
    assert palette[:3] == base_palette
    # mmdet's fixed-seed colours, so every run and process draws the same
    assert palette[3:] == get_palette('random', 12)[3:]
    # drawing asks mmdet for one colour per label: no assertion error now
    assert len(get_palette(palette, 12)) == 12
    # a second pass finds nothing to do
    assert complete_palettes(cfg.test_dataloader, 'test_dataloader') == []


def test_complete_palette_leaves_full_or_absent_palettes():
    full = dict(classes=('a', 'b'), palette=[(1, 2, 3), (4, 5, 6)])
    assert complete_palette(full) == 0 and len(full['palette']) == 2
    absent = dict(classes=('a', 'b'))  # the dataset class's own palette
    assert complete_palette(absent) == 0 and 'palette' not in absent
    assert complete_palette(dict(palette=[(1, 2, 3)])) == 0


def test_dataset_configs_follow_wrappers():
    leaf_a = dict(type='CocoDataset', metainfo=dict(
        classes=('a', 'b'), palette=[(1, 2, 3)]))
    leaf_b = dict(type='CocoDataset')
    cfg = dict(dataset=dict(type='ClassBalancedDataset', dataset=dict(
        type='ConcatDataset', datasets=[leaf_a, leaf_b])))
    assert [d['type'] for d in dataset_configs(cfg['dataset'])] == [
        'ClassBalancedDataset', 'ConcatDataset', 'CocoDataset',
        'CocoDataset']
    assert leaf_dataset_configs(cfg['dataset']) == [leaf_a, leaf_b]
    assert len(complete_palettes(cfg, 'train_dataloader')) == 1
    assert len(leaf_a['metainfo']['palette']) == 2
    assert complete_palettes(None, 'val_dataloader') == []
