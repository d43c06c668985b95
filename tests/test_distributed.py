"""Multi-process training and testing on mmengine's launcher: 2 real
processes started by ``tools/dist_train.sh``/``tools/dist_test.sh``
(torchrun, ``--launcher pytorch``) on this CPU, so on the ``gloo`` backend
that ``DDETRRunner`` picks without CUDA.

What makes 2 processes x batch 2 equal 1 process x batch 4 here: the same
seed (same initial weights and the same ``DefaultSampler`` order, which the
2 processes split rank by rank), dropout and flips off, images of one size
(no batch-dependent padding), BatchNorm frozen (``norm_eval``), the losses
normalised by the number of boxes averaged over the processes
(``sync_cls_avg_factor``, mmdet's ``reduce_mean``), and DDP averaging the
gradients. Every process runs 1 OpenMP thread in both runs.
"""
import json
import pickle
import sys

import pytest
import torch
from tiny_training import (TOOLS, bccd_annotations, free_port,
                           load_checkpoint, run_tool, tool_env,
                           write_tiny_config)

from ddetr_plugin.engine.distributed import (default_backend,
                                             init_process_group)

# an untrained tiny model has COCO mAP 0 at IoU >= 0.5: evaluate at lower
# IoUs, so that equal metrics are a real comparison
EVALUATOR = ['test_evaluator.iou_thrs=[0.1,0.2,0.3]',
             'test_evaluator.metric_items=[mAP,AR@100]']


def _dist(script, *args):
    """Run a torchrun script; return its output (stdout and stderr)."""
    proc = run_tool('bash', TOOLS / script, *args,
                    env=tool_env(PORT=free_port(), PYTHON=sys.executable))
    return proc.stdout + proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='a machine without '
                    'CUDA')
def test_without_cuda_gloo_and_torchrun():
    assert default_backend() == 'gloo'
    for launcher in ('slurm', 'mpi'):
        with pytest.raises(RuntimeError, match='start the processes with '
                           'torchrun: tools/dist_train.sh'):
            init_process_group(launcher)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Two iterations on the same 4 images: 1 process x batch 4 and
    2 processes x batch 2 (5 images in the json, the 5th for testing)."""
    root = tmp_path_factory.mktemp('distributed')
    ann_file = bccd_annotations(root, 5)
    runs = {}
    for procs, batch in ((1, 4), (2, 2)):
        config = write_tiny_config(
            root / f'{procs}x{batch}.py', ann_file, batch_size=batch,
            max_epochs=2, val_begin=3)  # 1 iteration per epoch, no val
        work_dir = root / f'{procs}x{batch}'
        if procs == 1:
            run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir)
            runs[procs] = config, work_dir, None
        else:
            runs[procs] = config, work_dir, _dist(
                'dist_train.sh', config, procs, '--work-dir', work_dir)
    return root, ann_file, runs


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one(trained):
    _, _, runs = trained
    assert 'Distributed training: True' in runs[2][2]
    assert 'GPU number: 2' in runs[2][2]  # mmengine's name for world size
    one = load_checkpoint(runs[1][1] / 'epoch_2.pth')
    two = load_checkpoint(runs[2][1] / 'epoch_2.pth')
    assert one['meta']['iter'] == two['meta']['iter'] == 2
    # every process's random state was saved
    assert len(two['message_hub']['runtime_info']['random_state']) == 2
    for key, value in one['state_dict'].items():
        torch.testing.assert_close(two['state_dict'][key], value, rtol=0,
                                   atol=1e-5, msg=lambda m: f'{key}: {m}')
    moments = [s['exp_avg'] for s in one['optimizer']['state'].values()]
    assert max(m.abs().max().item() for m in moments) > 0  # it trained
    for state, other in zip(one['optimizer']['state'].values(),
                            two['optimizer']['state'].values()):
        assert state['step'].item() == other['step'].item() == 2


def _test_metrics(work_dir):
    (log, ) = work_dir.glob('*/*.json')
    return json.loads(log.read_text().splitlines()[-1])


@pytest.mark.slow
def test_dist_test_gives_the_metrics_of_one_process(trained):
    root, _, runs = trained
    config, work_dir, _ = runs[2]
    checkpoint = work_dir / 'epoch_2.pth'
    one, two = root / 'test_1', root / 'test_2'
    run_tool(TOOLS / 'test.py', config, checkpoint, '--work-dir', one,
             '--out', one / 'preds.pkl', '--cfg-options', *EVALUATOR)
    _dist('dist_test.sh', config, checkpoint, 2, '--work-dir', two,
          '--out', two / 'preds.pkl', '--cfg-options', *EVALUATOR)
    metrics = _test_metrics(one)
    assert metrics['coco/bbox_mAP'] > 0 and metrics['coco/bbox_AR@100'] > 0
    for name in ('coco/bbox_mAP', 'coco/bbox_AR@100'):
        assert _test_metrics(two)[name] == metrics[name], name
    # 5 images on 2 processes: gathered once each, none twice or dropped
    preds = [pickle.loads((run / 'preds.pkl').read_bytes())
             for run in (one, two)]
    assert [p['img_id'] for p in preds[0]] == [1, 2, 3, 4, 5]
    assert [p['img_id'] for p in preds[1]] == [1, 2, 3, 4, 5]
    for single, gathered in zip(*preds):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(gathered['pred_instances'][key],
                                       single['pred_instances'][key])


@pytest.mark.slow
@pytest.mark.parametrize('variant', [
    dict(with_box_refine=False, as_two_stage=False),
    dict(with_box_refine=True, as_two_stage=True),
], ids=['plain', 'two-stage'])
def test_variant_trains_under_ddp_without_unused_parameters(
        trained, variant):
    """With ``find_unused_parameters=False`` DDP raises at the 2nd
    iteration if any parameter got no gradient (the refine variant is the
    one trained above)."""
    root, ann_file, _ = trained
    name = 'two_stage' if variant['as_two_stage'] else 'plain'
    config = write_tiny_config(root / f'{name}.py', ann_file, batch_size=1,
                               max_epochs=1, val_begin=2, **variant)
    log = _dist('dist_train.sh', config, 2, '--work-dir', root / name)
    assert 'find_unused_parameters = False' in log
    assert 'Epoch(train) [1][2/2]' in log
    checkpoint = load_checkpoint(root / name / 'epoch_1.pth')
    assert all(torch.isfinite(v).all()
               for v in checkpoint['state_dict'].values())
