"""Per-sample seeded data loading (``ddetr_plugin/engine/data_seeding.py``).

The random draws of a sample (Python's, numpy's and torch's global
generators, which mmcv/mmdet transforms use) must depend only on
(seed, epoch, index): the same in the main process and in any worker, with
persistent workers or fresh ones, for any ``num_workers``, and loading must
leave the caller's generators where they were. Real ``DataLoader`` worker
processes are used.
"""
import pickle
import random

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from torch.utils.data import Dataset

from ddetr_plugin.engine.data_seeding import (SampleKey, SampleKeySampler,
                                              SeededSampleDataset,
                                              build_seeded_dataloader,
                                              sample_seed, seeded_sampler)


class _RandomDraws(Dataset):
    """Each item: its index and one draw of each global generator."""

    metainfo = dict(classes=('a', ))

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return dict(index=index, python=random.random(),
                    numpy=float(np.random.rand()),
                    torch=float(torch.rand(())))


def _loader(num_workers, persistent=False, seed=7):
    cfg = dict(
        dataset=_RandomDraws(),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2,
        num_workers=num_workers,
        persistent_workers=persistent and num_workers > 0,
        collate_fn=dict(type='default_collate'))
    return build_seeded_dataloader(cfg, seed=seed)


def _epoch(loader, epoch):
    seeded_sampler(loader).set_epoch(epoch)
    rows = []
    for batch in loader:
        rows += zip(batch['index'].tolist(), batch['python'].tolist(),
                    batch['numpy'].tolist(), batch['torch'].tolist())
    return rows


def test_sample_key_is_the_index_and_pickles_with_its_draw():
    key = SampleKey(3, epoch=2, seed=11)
    assert key == 3 and [10, 11, 12, 13][key] == 13
    copy = pickle.loads(pickle.dumps(key))
    assert isinstance(copy, SampleKey)
    assert (int(copy), copy.epoch, copy.seed) == (3, 2, 11)


def test_sample_seeds_differ_across_index_epoch_and_seed():
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3)
             for i in range(3)}
    assert len(seeds) == 27
    assert all(0 <= s < 2**63 for s in seeds)
    # no shift symmetry (seed + epoch + index would collide here)
    assert sample_seed(0, 1, 0) != sample_seed(0, 0, 1)


def test_loading_repeats_per_key_and_leaves_the_callers_generators():
    dataset = SeededSampleDataset(_RandomDraws())
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(()))
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    first = dataset[SampleKey(2, 0, 5)]
    assert dataset[SampleKey(2, 0, 5)] == first
    assert dataset[SampleKey(2, 1, 5)] != first  # next epoch: new draws
    assert dataset[SampleKey(2, 0, 6)] != first  # another seed
    assert dataset.metainfo == dict(classes=('a', ))  # forwarded
    # the caller's streams did not move
    assert (random.random(), np.random.rand(), torch.rand(())) == expected
    # a plain int loads unseeded, as the wrapped dataset does
    assert dataset[2] != first


@pytest.mark.parametrize('num_workers,persistent', [(0, False), (2, False),
                                                    (2, True), (1, True)])
def test_draws_depend_neither_on_workers_nor_on_a_restart(
        num_workers, persistent):
    """Epochs 0-2 in one loader equal: the main-process loader, and a new
    loader started at epoch 2 (as after a resume)."""
    reference = _loader(0)
    expected = [_epoch(reference, epoch) for epoch in range(3)]
    assert expected[0] != expected[1]  # each epoch draws anew
    loader = _loader(num_workers, persistent)
    assert [_epoch(loader, epoch) for epoch in range(3)] == expected
    restarted = _loader(num_workers, persistent)
    assert _epoch(restarted, 2) == expected[2]


@pytest.mark.parametrize('num_workers', [0, 2])
def test_iterating_leaves_the_global_torch_stream_alone(num_workers):
    """A DataLoader iterator draws its workers' base seed when created (with
    persistent workers: once per run, in whichever epoch the run starts);
    from the global generator that would shift a resumed run's dropout."""
    loader = _loader(num_workers, persistent=True)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    for epoch in range(2):
        _epoch(loader, epoch)
    assert torch.equal(torch.rand(4), expected)


def test_reseed_changes_the_shuffle_and_the_draws():
    loader = _loader(0, seed=7)
    before = _epoch(loader, 0)
    seeded_sampler(loader).reseed(8)
    assert seeded_sampler(loader).sampler.seed == 8
    after = _epoch(loader, 0)
    assert after == _epoch(_loader(0, seed=8), 0) and after != before


def test_infinite_sampler_draws_anew_on_every_pass():
    dataset = _RandomDraws()
    sampler = SampleKeySampler(
        InfiniteSampler(dataset, shuffle=False, seed=0), seed=0)
    keys = []
    for key in sampler:
        keys.append(key)
        if len(keys) == 2 * len(dataset):
            break
    assert [k.epoch for k in keys] == [0] * 6 + [1] * 6
    assert [int(k) for k in keys] == list(range(6)) * 2


def test_mmdet_aspect_ratio_batch_sampler_indexes_with_keys():
    """mmdet's batch sampler calls ``dataset.get_data_info(key)``."""
    from mmdet.datasets.samplers import AspectRatioBatchSampler

    class _Sized(_RandomDraws):

        def get_data_info(self, index):
            assert 0 <= index < 6
            return dict(width=4, height=2 + index % 2 * 4)

    dataset = _Sized()
    sampler = SampleKeySampler(DefaultSampler(dataset, seed=0), seed=0)
    batches = list(AspectRatioBatchSampler(sampler, batch_size=2))
    assert sorted(int(k) for b in batches for k in b) == list(range(6))
    assert all(isinstance(k, SampleKey) for b in batches for k in b)
