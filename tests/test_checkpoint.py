"""Runner checkpoints load through mmengine with torch's safe
``weights_only=True`` default once ``register_safe_checkpoint_types()`` ran,
files carrying arbitrary callables are still refused, and the refusal says
why and how to convert a trusted file (the conversion itself:
``test_trusted_checkpoint.py``)."""
import itertools
import os
import pathlib
import pickle

import mmengine
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from torch.utils.data import Dataset

from ddetr_plugin.engine.checkpoint import (
    UnsafeCheckpointError, register_safe_checkpoint_types,
    safe_checkpoint_globals)


def _stack(x):
    return torch.stack(x) if isinstance(x, (list, tuple)) else x


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(_stack(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - _stack(labels))**2).mean())
        return [dict(pred=p) for p in out]


class ToyData(Dataset):
    # a nested ConfigDict in metainfo is what a config's metainfo gives
    metainfo = dict(classes=('a', 'b'), extra=ConfigDict(x=1))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([float(i), 1.0]),
                    labels=torch.tensor(float(i)))


class ToyMetric(BaseMetric):
    """numpy float32/float64 results, as some metrics return them."""

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples))

    def compute_metrics(self, results):
        return dict(score=np.float32(0.5), other=np.float64(0.25))


def _loader(shuffle):
    return dict(dataset=ToyData(), batch_size=4,
                sampler=dict(type='DefaultSampler', shuffle=shuffle),
                collate_fn=dict(type='default_collate'))


_RUN_IDS = itertools.count()


def _runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        experiment_name=f'ckpt_safety_{next(_RUN_IDS)}',
        train_dataloader=_loader(True), val_dataloader=_loader(False),
        val_evaluator=Evaluator(ToyMetric()), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1],
                             by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=2),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False, save_best='score',
                            rule='greater')),
        randomness=dict(seed=0), **kwargs)


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory):
    """A real Runner checkpoint: 2 iterations, validation, save_best."""
    register_safe_checkpoint_types()
    work_dir = tmp_path_factory.mktemp('runner')
    runner = _runner(work_dir, max_iters=2)
    runner.train()
    # saved after validation, so it also holds best_score (np.float32)
    path = work_dir / 'best_score_iter_2.pth'
    assert path.is_file() and (work_dir / 'iter_2.pth').is_file()
    return path, runner.model.state_dict()


@pytest.fixture
def without_registration():
    """Temporarily clear torch's user allow-list, restore it afterwards."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


def test_default_is_still_weights_only(runner_ckpt, without_registration):
    # Without the allow-list the plain torch.load default refuses the file:
    # the registration is what the other tests depend on.
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        torch.load(runner_ckpt[0])


def test_checkpoint_needs_exactly_the_registered_globals(
        runner_ckpt, without_registration):
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(
        str(runner_ckpt[0])))
    names = {e[1] if isinstance(e, tuple) else
             f'{e.__module__}.{e.__qualname__}'
             for e in safe_checkpoint_globals()}
    assert unsafe <= names, unsafe - names
    assert 'builtins.getattr' in unsafe  # HistoryBuffer methods
    assert 'mmengine.config.config.ConfigDict' in unsafe


def test_load_checkpoint(runner_ckpt):
    path, trained = runner_ckpt
    register_safe_checkpoint_types()
    model = ToyModel()
    ckpt = load_checkpoint(model, str(path), map_location='cpu', strict=True)
    for key, value in trained.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    hub = ckpt['message_hub']
    assert isinstance(hub['log_scalars']['train/loss'], HistoryBuffer)
    loss = hub['log_scalars']['train/loss']
    assert len(loss.data[0]) == 2
    # the statistics methods came back through the restricted getattr
    assert loss.statistics('max') >= loss.statistics('min')
    assert isinstance(hub['runtime_info']['best_score'], np.float32)
    assert ckpt['meta']['dataset_meta']['extra'] == dict(x=1)
    assert ckpt['meta']['iter'] == 2


def test_runner_resume(runner_ckpt, tmp_path):
    register_safe_checkpoint_types()
    runner = _runner(tmp_path, max_iters=3, load_from=str(runner_ckpt[0]),
                     resume=True)
    runner.train()
    assert runner.iter == 3
    assert runner.message_hub.get_info('best_score') == pytest.approx(0.5)
    # the resumed history buffers keep counting
    assert len(runner.message_hub.get_scalar('train/loss').data[0]) == 3


class _Callable:
    """Pickles as a call of ``func(*args)`` (harmless stand-ins here)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _marker(text):
    raise AssertionError(f'unpickling called a function: {text}')


_GETATTR_REFUSED = 'only HistoryBuffer'


@pytest.mark.parametrize('payload,match', [
    (_Callable(print, 'pwned'), 'Unsupported global'),
    (_Callable(_marker, 'pwned'), 'Unsupported global'),
    (_Callable(os.getcwd), 'getcwd'),  # its module (posix) is blocked
    # the restricted getattr only resolves HistoryBuffer statistics methods
    (_Callable(getattr, HistoryBuffer, '__init__'), _GETATTR_REFUSED),
    (_Callable(getattr, np.ndarray, 'tofile'), _GETATTR_REFUSED),
    (_Callable(getattr, ConfigDict, 'update'), _GETATTR_REFUSED),
], ids=['print', 'test-function', 'os.getcwd', 'getattr-dunder',
        'getattr-ndarray', 'getattr-configdict'])
def test_arbitrary_callable_refused(payload, match, tmp_path, capsys):
    register_safe_checkpoint_types()
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=ToyModel().state_dict(),
                    meta=dict(payload=payload)), path)
    with pytest.raises(pickle.UnpicklingError, match=match):
        load_checkpoint(ToyModel(), str(path), map_location='cpu')
    runner = _runner(tmp_path / 'wd', max_iters=1)
    with pytest.raises(pickle.UnpicklingError, match=match):
        runner.resume(str(path))
    with pytest.raises(pickle.UnpicklingError, match=match):
        torch.load(path)
    assert 'pwned' not in capsys.readouterr().out


def old_trusted_checkpoint(path):
    """A checkpoint as older tools wrote them: weights plus a pickled
    ``pathlib.PosixPath`` (which safe loading refuses) in its meta."""
    state_dict = ToyModel().state_dict()
    torch.save(dict(state_dict=state_dict,
                    meta=dict(epoch=3, work_dir=pathlib.PosixPath('/w'),
                              history=np.arange(3.0, dtype=np.float32),
                              best=np.float64(0.25)),
                    message_hub=dict(log_scalars=dict(
                        loss=HistoryBuffer([1.0, 0.5], [1, 1])))), path)
    return state_dict


def test_refusal_says_why_and_how_to_convert(tmp_path):
    register_safe_checkpoint_types()
    path = tmp_path / 'old.pth'
    old_trusted_checkpoint(path)
    runner = _runner(tmp_path / 'wd', max_iters=1)
    for load in (lambda: load_checkpoint(ToyModel(), str(path)),
                 lambda: runner.resume(str(path))):
        with pytest.raises(UnsafeCheckpointError) as refused:
            load()
        message = str(refused.value)
        assert f'refused to load checkpoint {path}' in message
        assert '`pathlib.PosixPath`' in message
        assert 'would import and run code' in message
        assert ('python tools/model_converters/convert_trusted_checkpoint.py '
                f'{path} CLEAN.pth --trust-code') in message
        assert 'will likely succeed' not in message
        assert refused.value.__suppress_context__  # not torch's advice
    assert isinstance(refused.value, pickle.UnpicklingError)
