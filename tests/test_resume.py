"""Resume that loses nothing, with real processes and real ``kill -9``.

* The tiny config: mmdet's ``tools/train.py`` (through ours) trains the
  tiny BCCD config for 2 epochs of 2 iterations with dropout and random
  flips on and ``randomness=dict(seed=0, deterministic=True)``: once
  uninterrupted, and once killed with SIGKILL in epoch 2 mid-iteration,
  resumed with ``--resume`` and killed again mid-validation, resumed and
  killed again while epoch 2's checkpoint is being written, then resumed to
  the end. After each kill ``last_checkpoint`` names the complete epoch-1
  checkpoint; the final checkpoint of the thrice-killed run equals the
  uninterrupted one: weights, optimizer and scheduler state, learning rate,
  a non-zero best score and the logged loss and (non-zero) metric history.
* The BCCD demo config with its own data loaders (2 persistent workers)
  and pipeline (random flips), on 8 images for 3 epochs, killed while
  epoch 2's checkpoint is written and resumed, with 1 and with 2 processes: final weights and optimizer
  state equal the uninterrupted run's. This holds because every sample's
  random draws come from (seed, epoch, index)
  (``ddetr_plugin/engine/data_seeding.py``), not from the workers' streams.
"""
import os
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from helpers.paths import BCCD_CONFIG, shared_data_dir
from helpers.processes import kill_tree
from helpers.tiny_training import (TOOLS, bccd_annotations, free_port,
                                   last_checkpoint, load_checkpoint,
                                   run_tool, start_tool, tool_env,
                                   write_tiny_config)

MOMENTS = ('iteration', 'validation', 'save')
# the tiny untrained model has COCO mAP 0 at IoU >= 0.5: evaluate at lower
# IoUs so that the best score and the mAP history are non-zero
EVALUATOR = '''
val_evaluator.update(iou_thrs=[0.05, 0.1, 0.2],
                     metric_items=['mAP', 'AR@100'])  # also test_evaluator
'''
# Adam's second moments are ~1e-10: compared relative to their size
OPTIMIZER_RTOL = 1e-5
# message-hub histories that must survive (timings differ between runs)
HISTORIES = ('train/loss', 'train/loss_cls', 'train/loss_bbox',
             'train/loss_iou', 'train/lr', 'train/grad_norm',
             'val/coco/bbox_mAP', 'val/coco/bbox_AR@100')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The tiny config and its uninterrupted run's final checkpoint."""
    root = tmp_path_factory.mktemp('resume')
    ann_file = bccd_annotations(root, 4)
    config = write_tiny_config(root / 'tiny.py', ann_file, dropout=0.1,
                               flip=0.5, max_epochs=2, extra=EVALUATOR)
    reference = root / 'uninterrupted'
    run_tool(TOOLS / 'train.py', config, '--work-dir', reference)
    return root, config, load_checkpoint(reference / 'epoch_2.pth')


def _kill_at(moment, root, config, work_dir, resume, procs=0):
    """Train until the process waits at ``moment`` of epoch 2 (see
    ``helpers.fault_injection.WaitForKillHook``), then SIGKILL its whole process
    group (dataloader workers, and the torchrun processes with ``procs``
    > 0, which runs ``tools/dist_train.sh`` with that many processes)."""
    marker = root / f'waiting_{moment}'
    marker.unlink(missing_ok=True)
    waiting = root / f'kill_at_{moment}.py'
    waiting.write_text(f'''
_base_ = {str(config)!r}
custom_imports = dict(imports=['helpers.fault_injection'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='WaitForKillHook', moment={moment!r}, epoch=2,
                     marker={str(marker)!r})]
''')
    log = root / f'kill_at_{moment}.log'
    args = ['--work-dir', str(work_dir)] + (['--resume'] if resume else [])
    if procs:
        with open(log, 'w') as out:
            proc = subprocess.Popen(
                ['bash', str(TOOLS / 'dist_train.sh'), str(waiting),
                 str(procs)] + args, cwd=TOOLS.parent,
                env=tool_env(PORT=free_port(), PYTHON=sys.executable),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    else:
        proc = start_tool(TOOLS / 'train.py', waiting, *args, log=log,
                          new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, log.read_text()[-5000:]
            assert time.monotonic() < deadline, f'never reached {moment}'
            time.sleep(0.05)
    finally:
        # torchrun starts each worker in a session of its own: the
        # whole tree, not only this process group
        kill_tree(proc)
    return log.read_text()


def _assert_close(actual, expected, where, rtol=0.0):
    """Nested checkpoint contents equal: tensors within 1e-6, or within
    ``rtol`` of their size where ``rtol`` is given."""
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, rtol=rtol,
                                   atol=0 if rtol else 1e-6,
                                   msg=lambda m: f'{where}: {m}')
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            _assert_close(actual[key], expected[key], f'{where}.{key}', rtol)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f'{where}[{i}]', rtol)
    else:
        assert actual == pytest.approx(expected, abs=1e-6), where


def _assert_same_training(resumed, expected):
    """Weights within 1e-6, and every optimizer moment within
    ``OPTIMIZER_RTOL`` of its size (a state that was trained)."""
    _assert_close(resumed['state_dict'], expected['state_dict'], 'weights')
    moments = [value for state in expected['optimizer']['state'].values()
               for name, value in state.items() if name != 'step']
    assert moments and all(m.abs().max() > 0 for m in moments)
    _assert_close(resumed['optimizer'], expected['optimizer'], 'optimizer',
                  rtol=OPTIMIZER_RTOL)


@pytest.mark.slow
def test_kill_9_three_times_then_resume_repeats_the_uninterrupted_run(
        setup):
    root, config, expected = setup
    work_dir = root / 'killed'
    for i, moment in enumerate(MOMENTS):
        log = _kill_at(moment, root, config, work_dir, resume=i > 0)
        if i > 0:
            assert 'resumed epoch: 1, iter: 2' in log
        # what SIGKILL left: epoch 1 complete, nothing of epoch 2 visible
        assert last_checkpoint(work_dir) == work_dir / 'epoch_1.pth'
        assert load_checkpoint(work_dir / 'epoch_1.pth')['meta']['epoch'] == 1
        assert not (work_dir / 'epoch_2.pth').exists()
        if moment == 'save':  # killed between writing and renaming
            assert (work_dir / '.epoch_2.pth.tmp').stat().st_size > 0
    run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir, '--resume')
    assert last_checkpoint(work_dir) == work_dir / 'epoch_2.pth'
    assert not (work_dir / 'epoch_1.pth').exists()  # max_keep_ckpts=1
    resumed = load_checkpoint(work_dir / 'epoch_2.pth')

    assert resumed['meta']['epoch'] == expected['meta']['epoch'] == 2
    assert resumed['meta']['iter'] == expected['meta']['iter'] == 4
    _assert_same_training(resumed, expected)
    _assert_close(resumed['param_schedulers'], expected['param_schedulers'],
                  'schedulers')
    assert [g['lr'] for g in resumed['optimizer']['param_groups']] == \
        [g['lr'] for g in expected['optimizer']['param_groups']]
    info, expected_info = (resumed['message_hub']['runtime_info'],
                           expected['message_hub']['runtime_info'])
    assert info['best_score'] == expected_info['best_score'] > 0
    best = os.path.basename(expected_info['best_ckpt'])
    assert os.path.basename(info['best_ckpt']) == best
    # the uninterrupted run's best checkpoint, and no other, is on disk:
    # where epoch 2 improved, epoch 1's best was replaced after the resume;
    # where it did not, the resumed run still knew epoch 1's score (a run
    # that forgot it would have saved epoch 2 as its best)
    for epoch in (1, 2):
        name = f'best_coco_bbox_mAP_epoch_{epoch}.pth'
        assert (work_dir / name).exists() == (name == best), name
    scalars, expected_scalars = (resumed['message_hub']['log_scalars'],
                                 expected['message_hub']['log_scalars'])
    for name in HISTORIES:
        values, counts = scalars[name].data
        expected_values, expected_counts = expected_scalars[name].data
        assert len(values) == (2 if name.startswith('val') else 4), name
        assert values.tolist() == pytest.approx(expected_values.tolist(),
                                                abs=1e-6), name
        if name.startswith('val'):
            assert min(values) > 0, name  # a real comparison
        assert counts.tolist() == expected_counts.tolist(), name


def _demo_config(root, ann_file):
    """The BCCD demo config as shipped (model, pipeline, loaders with 2
    persistent workers), on the 8 images of ``ann_file`` for 3 epochs,
    without validation, with a fixed seed."""
    images = shared_data_dir('bccd', 'BCCD', 'JPEGImages')
    config = root / 'demo.py'
    config.write_text(f'''
_base_ = {str(BCCD_CONFIG)!r}
data = dict(ann_file={str(ann_file)!r}, data_prefix=dict(img={str(images) + '/'!r}))
train_dataloader = dict(dataset=data)
val_dataloader = dict(dataset=data)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={str(ann_file)!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=3, val_begin=4)
randomness = dict(seed=0)
''')
    return config


@pytest.fixture(scope='module')
def demo_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume_demo')
    return root, _demo_config(root, bccd_annotations(root, 8))


@pytest.mark.slow
@pytest.mark.parametrize('procs', [0, 2], ids=['1-process', '2-processes'])
def test_bccd_demo_config_resumes_exactly_with_its_own_loaders(
        demo_setup, procs):
    root, config = demo_setup
    root = root / f'procs_{procs}'
    root.mkdir()
    loaders = Config.fromfile(config).train_dataloader
    assert loaders.num_workers == 2 and loaders.persistent_workers
    reference, work_dir = root / 'uninterrupted', root / 'killed'
    if procs:
        run_tool('bash', TOOLS / 'dist_train.sh', config, procs,
                 '--work-dir', reference,
                 env=tool_env(PORT=free_port(), PYTHON=sys.executable))
    else:
        run_tool(TOOLS / 'train.py', config, '--work-dir', reference)
    # while epoch 2's checkpoint is written
    _kill_at('save', root, config, work_dir, resume=False, procs=procs)
    assert last_checkpoint(work_dir) == work_dir / 'epoch_1.pth'
    if procs:
        run_tool('bash', TOOLS / 'dist_train.sh', config, procs,
                 '--work-dir', work_dir, '--resume',
                 env=tool_env(PORT=free_port(), PYTHON=sys.executable))
    else:
        run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir,
                 '--resume')
    expected = load_checkpoint(reference / 'epoch_3.pth')
    resumed = load_checkpoint(work_dir / 'epoch_3.pth')
    # 3 epochs of 8 images in batches of the config's size per process
    assert resumed['meta']['iter'] == expected['meta']['iter'] == \
        3 * 8 // (loaders.batch_size * max(procs, 1))
    _assert_same_training(resumed, expected)


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs).squeeze(-1)  # default_collate stacks
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return [dict(pred=p) for p in out]


class _ImprovingMetric(BaseMetric):
    """Scores 1, 2, 3, ...: every validation is a new best."""
    default_prefix = 'toy'

    def __init__(self):
        super().__init__()
        self.calls = 0

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples))

    def compute_metrics(self, results):
        self.calls += 1
        return dict(score=float(self.calls))


def test_epoch_checkpoint_follows_its_validation(tmp_path):
    """In-process ``DeformableDETRRunner`` with ``CrashSafeCheckpointHook``: each
    epoch's checkpoint holds that epoch's validation score and best
    checkpoint, and the replaced files are gone at the end."""
    from ddetr_plugin.engine import DeformableDETRRunner
    dataset = [dict(inputs=torch.tensor([float(i), 1.0]),
                    labels=torch.tensor(float(i))) for i in range(4)]
    loader = dict(dataset=dataset, batch_size=2,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'))
    runner = DeformableDETRRunner(
        model=_ToyModel(), work_dir=str(tmp_path), train_dataloader=loader,
        val_dataloader=loader, val_evaluator=Evaluator(_ImprovingMetric()),
        val_cfg=dict(), train_cfg=dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=dict(
            type='ddetr_plugin.CrashSafeCheckpointHook', interval=1,
            max_keep_ckpts=1, save_best='toy/score', rule='greater')),
        default_scope='ddetr_plugin')
    runner.train()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == [
        'best_toy_score_epoch_3.pth', 'epoch_3.pth']
    assert not list(tmp_path.glob('.*.tmp'))
    assert last_checkpoint(tmp_path) == tmp_path / 'epoch_3.pth'
    hub = load_checkpoint(tmp_path / 'epoch_3.pth')['message_hub']
    assert hub['runtime_info']['best_score'] == 3.0
    assert hub['runtime_info']['best_ckpt'] == str(
        tmp_path / 'best_toy_score_epoch_3.pth')
    assert hub['log_scalars']['val/toy/score'].data[0].tolist() == [1, 2, 3]
    assert len(hub['runtime_info']['random_state']) == 1
