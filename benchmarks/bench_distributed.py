"""Training throughput: 1 process x 2 threads against 2 processes x 1 thread.

Trains the BCCD demo config (``deformable-detr-refine_mobilenetv2_1xb2-13e_
bccd.py``, 512x384, real BCCD images, validation off) for ``--iters``
iterations of the same global batch of 4: ``tools/train.py`` with batch 4
and ``OMP_NUM_THREADS=2``, and ``tools/dist_train.sh ... 2`` (torchrun,
gloo) with batch 2 per process and ``OMP_NUM_THREADS=1``. Throughput is 4
images over the median iteration time that mmengine's ``IterTimerHook``
logs (rank 0; the first 2 iterations are warm-up and not counted). The two
runs follow each other in one invocation and the ratio is printed.

Usage::

    python benchmarks/bench_distributed.py [--iters 10]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
from helpers.tiny_training import free_port  # noqa: E402  (tests' helper)

CONFIG = (ROOT / 'configs' / 'deformable_detr' /
          'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')
BCCD = ROOT.parent / 'shared' / 'data' / 'bccd' / 'BCCD'
GLOBAL_BATCH = 4
WARM_UP = 2


def iteration_times(procs, threads, ann_file, iters, work_dir):
    """Run training; return rank 0's logged iteration times (s)."""
    batch = GLOBAL_BATCH // procs
    options = [  # validation is off, but its files must exist
        f'train_dataloader.dataset.ann_file={ann_file}',
        f'val_dataloader.dataset.ann_file={ann_file}',
        f'val_evaluator.ann_file={ann_file}',
        f'train_dataloader.dataset.indices={iters * GLOBAL_BATCH}',
        f'train_dataloader.batch_size={batch}', 'train_cfg.max_epochs=1',
        'train_cfg.val_begin=2', 'default_hooks.logger.interval=1'
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHON=sys.executable, PORT=str(free_port()))
    if procs == 1:
        command = [sys.executable, str(ROOT / 'tools' / 'train.py')]
    else:
        command = ['bash', str(ROOT / 'tools' / 'dist_train.sh')]
    command += [str(CONFIG)] + ([str(procs)] if procs > 1 else []) + [
        '--work-dir', str(work_dir), '--cfg-options', *options]
    subprocess.run(command, cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    (scalars, ) = work_dir.glob('*/vis_data/scalars.json')
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [r['time'] for r in records if 'time' in r and 'loss' in r]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        # our converter, in its own process (this one imports no torch)
        subprocess.run([
            sys.executable,
            str(ROOT / 'tools' / 'dataset_converters' / 'voc_to_coco.py'),
            str(BCCD), folder
        ], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ann_file = Path(folder) / 'annotations' / 'train.json'
        for procs, threads in ((1, 2), (2, 1)):
            times = iteration_times(procs, threads, ann_file, args.iters,
                                    Path(folder) / f'{procs}x{threads}')
            results[procs, threads] = statistics.median(times[WARM_UP:])
    reference = GLOBAL_BATCH / results[1, 2]
    print(f'BCCD demo config, 512x384, global batch {GLOBAL_BATCH}, median '
          f'of iterations {WARM_UP + 1}-{args.iters}')
    print('| processes x threads | batch per process | s per iteration | '
          'images/s | speed-up |')
    print('|---|---|---|---|---|')
    for (procs, threads), seconds in results.items():
        rate = GLOBAL_BATCH / seconds
        print(f'| {procs} x {threads} | {GLOBAL_BATCH // procs} | '
              f'{seconds:.2f} | {rate:.2f} | {rate / reference:.2f}x |')


if __name__ == '__main__':
    main()
