"""Random data augmentation that depends only on (seed, epoch, sample).

mmcv's and mmdet's random transforms (``RandomFlip``, ``RandomResize``,
``RandomCrop``, ...) draw from numpy's and Python's global generators, and
mmengine's ``BaseDataset`` draws the replacement of a skipped sample from
numpy's. In a ``DataLoader`` worker those generators belong to the worker
process: with ``persistent_workers=True`` their streams run on across
epochs, so a run resumed after a crash (whose workers start afresh) draws
other flips than the uninterrupted run, and the draws also change with
``num_workers``. This module makes every sample's draws a function of
``(seed, epoch, index)`` alone, the data-side twin of counter-based dropout
(:mod:`ddetr_plugin.ops.counter_dropout`):

* :class:`SampleKeySampler` wraps the training sampler (mmengine's
  ``DefaultSampler``, ``InfiniteSampler``, or any other) and yields each
  index as a :class:`SampleKey`, an ``int`` that also carries the epoch
  (the pass over the data) and the seed;
* :class:`SeededSampleDataset` wraps the dataset: ``dataset[key]`` runs the
  pipeline with Python's, numpy's and torch's global generators seeded from
  :func:`sample_seed` of the key, and puts the caller's generator states
  back afterwards, so loading a sample never moves the training process's
  own streams either;
* :func:`build_seeded_dataloader` builds mmengine's ``DataLoader`` with both
  wrappers; ``DeformableDETRRunner`` builds the training dataloader with it.

Which process loads a sample, how many workers there are, whether they
persisted and whether the run was resumed no longer changes a single
random draw of the pipeline. Indices that are plain ``int`` (any other
sampler) are loaded as mmengine would, unseeded.
"""
import copy
import random
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np
import torch
from mmengine.registry import DATA_SAMPLERS, DATASETS
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset, Sampler


class SampleKey(int):
    """A dataset index that also names the draw it belongs to.

    It is an ``int`` equal to the index, so batch samplers and datasets
    that index with it (mmdet's ``AspectRatioBatchSampler`` calls
    ``dataset.get_data_info(index)``) work unchanged; it pickles with its
    attributes into ``DataLoader`` workers.

    Args:
        index (int): the dataset index (>= 0).
        epoch (int): the pass over the data this draw belongs to.
        seed (int): the run's seed.
    """

    epoch: int
    seed: int

    def __new__(cls, index: int, epoch: int, seed: int) -> 'SampleKey':
        key = super().__new__(cls, index)
        key.epoch = int(epoch)
        key.seed = int(seed)
        return key

    def __reduce__(self):
        return SampleKey, (int(self), self.epoch, self.seed)

    def __repr__(self) -> str:
        return (f'SampleKey(index={int(self)}, epoch={self.epoch}, '
                f'seed={self.seed})')


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed for one sample's draws, hashed from its key.

    numpy's ``SeedSequence`` mixes the three numbers, so nearby keys give
    unrelated streams (seeding with ``seed + index`` would give sample ``i``
    of epoch ``e + 1`` the flips of sample ``i + 1`` of epoch ``e`` under
    some seeds).

    Args:
        seed (int): the run's seed; any int (taken modulo 2**64).
        epoch (int): the pass over the data (>= 0).
        index (int): the dataset index (>= 0).

    Returns:
        int: in [0, 2**63).
    """
    words = np.random.SeedSequence(
        [seed % 2**64, epoch, index]).generate_state(2, np.uint32)
    return (int(words[0]) | int(words[1]) << 32) >> 1


@contextmanager
def seeded_global_generators(seed: int) -> Iterator[None]:
    """Seed Python's, numpy's and torch's (CPU) global generators, then put
    their previous states back.

    Args:
        seed (int): in [0, 2**63), e.g. from :func:`sample_seed`.
    """
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32))
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededSampleDataset(Dataset):
    """A dataset whose pipeline draws from generators seeded per sample.

    ``dataset[key]`` with a :class:`SampleKey` loads ``dataset[int(key)]``
    inside :func:`seeded_global_generators` of
    ``sample_seed(key.seed, key.epoch, int(key))``: its random transforms,
    and mmengine's redraw of a replacement when a transform skips the
    sample, repeat exactly for the same key in any process. A plain ``int``
    loads as the wrapped dataset does. Every other attribute
    (``metainfo``, ``get_data_info``, ...) is the wrapped dataset's.

    Args:
        dataset (Dataset): the dataset to wrap (mmengine ``BaseDataset`` or
            any map-style dataset).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if not isinstance(index, SampleKey):
            return self.dataset[index]
        with seeded_global_generators(
                sample_seed(index.seed, index.epoch, int(index))):
            return self.dataset[int(index)]

    def __getattr__(self, name: str) -> Any:
        if name == 'dataset':  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __deepcopy__(self, memo: dict) -> 'SeededSampleDataset':
        # mmengine deep-copies a dataloader config, built objects included;
        # a built dataset is shared, not copied (it may hold the whole
        # annotation file)
        return self


class SampleKeySampler(Sampler):
    """Yields a sampler's indices as :class:`SampleKey` s.

    The key's epoch is the one ``set_epoch`` last set (mmengine's
    ``DistSamplerSeedHook`` calls it before every epoch, with the resumed
    epoch after a resume) plus the number of full passes over the data
    within one iteration of the sampler (so an ``InfiniteSampler``, which
    has no epochs, still gives a sample new draws on every pass). Every
    other attribute (``dataset``, ...) is the wrapped sampler's.

    Args:
        sampler (Sampler): the sampler to wrap.
        seed (int): the seed written into the keys (the run's seed).
    """

    def __init__(self, sampler: Sampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = int(seed)
        self.epoch = 0

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, seed = self.epoch, self.seed
        size = max(len(self.sampler), 1)
        for position, index in enumerate(self.sampler):
            yield SampleKey(index, epoch + position // size, seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the keys (and of the wrapped sampler)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def reseed(self, seed: int) -> None:
        """Use ``seed`` for the keys and the wrapped sampler's shuffle.

        ``Runner.resume`` adopts the checkpoint's seed after the training
        dataloader was built with the run's own; this hands it on.
        """
        self.seed = int(seed)
        if hasattr(self.sampler, 'seed'):
            self.sampler.seed = int(seed)

    def __getattr__(self, name: str) -> Any:
        if name == 'sampler':
            raise AttributeError(name)
        return getattr(self.sampler, name)

    def __deepcopy__(self, memo: dict) -> 'SampleKeySampler':
        return self  # shared, as SeededSampleDataset


def build_seeded_dataloader(dataloader: dict, seed: int,
                            diff_rank_seed: bool = False) -> DataLoader:
    """mmengine's ``Runner.build_dataloader`` with per-sample seeding.

    The dataset and sampler are built as mmengine builds them (the sampler
    gets the dataset and ``seed``, or ``None`` with ``diff_rank_seed``),
    wrapped in :class:`SeededSampleDataset` and :class:`SampleKeySampler`,
    given a private ``generator`` (unless the config names one), and
    handed to mmengine's builder, which builds the batch sampler,
    collate function and ``DataLoader`` from the rest of the config as
    usual.

    Args:
        dataloader (dict): a dataloader config (``dataset``, ``sampler``,
            ``batch_size``, ``num_workers``, ...).
        seed (int): the run's seed (``runner.seed``).
        diff_rank_seed (bool): as for mmengine.

    Returns:
        DataLoader: whose ``dataset`` is a :class:`SeededSampleDataset` and
        whose sampler (or batch sampler's sampler) is a
        :class:`SampleKeySampler`.
    """
    cfg = copy.copy(dataloader)
    dataset = cfg['dataset']
    if isinstance(dataset, dict):
        dataset = DATASETS.build(dataset)
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
    sampler = cfg['sampler']
    if isinstance(sampler, dict):
        sampler = DATA_SAMPLERS.build(
            sampler,
            default_args=dict(
                dataset=dataset, seed=None if diff_rank_seed else seed))
    key_seed = getattr(sampler, 'seed', None)
    cfg['dataset'] = SeededSampleDataset(dataset)
    cfg['sampler'] = SampleKeySampler(
        sampler, seed if key_seed is None else key_seed)
    # A DataLoader iterator draws its workers' base seed when it is created:
    # with persistent workers once per run, so a resumed run (whose
    # iterator is created in a later epoch) would draw from the global
    # torch generator at another point of its stream than the uninterrupted
    # run, shifting every later dropout mask. A private generator keeps the
    # draw out of that stream; the workers' own seeds no longer matter.
    cfg.setdefault('generator', torch.Generator().manual_seed(seed))
    return Runner.build_dataloader(
        cfg, seed=seed, diff_rank_seed=diff_rank_seed)


def seeded_sampler(dataloader: DataLoader) -> Optional[SampleKeySampler]:
    """The :class:`SampleKeySampler` of a dataloader, or None."""
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    for sampler in (getattr(batch_sampler, 'sampler', None),
                    getattr(dataloader, 'sampler', None)):
        if isinstance(sampler, SampleKeySampler):
            return sampler
    return None
