"""What a config's datasets read: one :class:`DatasetSpec` per COCO-json
dataset of a dataloader, resolved by building the dataset itself
(:func:`dataset_specs`), and the image entries of its annotation file
(:class:`ImageEntry`)."""
from dataclasses import dataclass
from typing import List, Optional

from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

from ddetr_plugin.registry import DATASETS
from ..wrapped_configs import leaf_dataset_configs

SPLITS = ('train', 'val', 'test')


@dataclass
class DatasetSpec:
    """What one dataloader's dataset reads, resolved by the dataset itself.

    Args:
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        ann_file (str): the COCO json path (``data_root`` joined).
        img_dir (str): ``data_prefix['img']`` (``data_root`` joined).
        classes (tuple[str]): ``metainfo['classes']``.
        filter_empty_gt (bool): images without boxes are dropped.
        test_mode (bool): the dataset never drops images.
        loader (LoadImageFromFile, optional): the pipeline's loading
            transform.
    """
    split: str
    ann_file: str
    img_dir: str
    classes: tuple
    filter_empty_gt: bool
    test_mode: bool
    loader: Optional[LoadImageFromFile]


@dataclass
class ImageEntry:
    """An image entry of the annotation file, for the image check.

    Args:
        image_id: its ``id`` in the json.
        file_name (str): its ``file_name``.
        path (str): ``file_name`` joined to the dataset's image folder.
        width (int): its ``width`` in the json, pixels.
        height (int): its ``height`` in the json, pixels.
    """
    image_id: object
    file_name: str
    path: str
    width: int
    height: int


def dataset_specs(cfg: Config, split: str) -> List[object]:
    """What the ``{split}_dataloader`` datasets read, resolved by building
    each dataset (``lazy_init``: the annotation file is not read).

    Returns:
        list: a :class:`DatasetSpec` per COCO-json dataset, or the built
        dataset itself for any other type.
    """
    loader_cfg = cfg.get(f'{split}_dataloader')
    if not loader_cfg:
        return []
    specs = []
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'ddetr_plugin')):
        for dataset_cfg in leaf_dataset_configs(loader_cfg['dataset']):
            dataset = DATASETS.build(
                ConfigDict(dataset_cfg, lazy_init=True))
            if not isinstance(dataset, CocoDataset):
                specs.append(dataset)
                continue
            filter_cfg = dataset.filter_cfg or {}
            loaders = [t for t in dataset.pipeline.transforms
                       if isinstance(t, LoadImageFromFile)]
            specs.append(DatasetSpec(
                split, dataset.ann_file, dataset.data_prefix.get('img', ''),
                tuple(dataset.metainfo['classes']),
                bool(filter_cfg.get('filter_empty_gt', False)),
                dataset.test_mode, loaders[0] if loaders else None))
    return specs
