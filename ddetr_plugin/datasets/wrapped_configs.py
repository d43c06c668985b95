"""The dataset configs inside a dataset config, through the wrappers.

mmengine's and mmdet's dataset wrappers hold their datasets as
``dataset=`` (``RepeatDataset``, ``ClassBalancedDataset``,
``MultiImageMixDataset``) or ``datasets=[...]`` (``ConcatDataset``).
"""
from typing import Any, Iterator, List


def dataset_configs(dataset_cfg: Any) -> Iterator[dict]:
    """Every dataset config inside ``dataset_cfg``, wrappers included,
    outermost first.

    Args:
        dataset_cfg: a dataset config (dict); anything else (a built
            dataset, None) yields nothing.
    """
    if not isinstance(dataset_cfg, dict):
        return
    yield dataset_cfg
    yield from dataset_configs(dataset_cfg.get('dataset'))
    for inner in dataset_cfg.get('datasets') or []:
        yield from dataset_configs(inner)


def leaf_dataset_configs(dataset_cfg: Any) -> List[dict]:
    """The configs of the datasets that read data (no wrappers)."""
    return [cfg for cfg in dataset_configs(dataset_cfg)
            if 'dataset' not in cfg and 'datasets' not in cfg]
