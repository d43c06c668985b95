"""Time a training step of BCCD recipe variants against the BCCD demo's.

A variant that trains on the demo's time budget gets fewer epochs when its
step is slower: this prints each variant's step time, its ratio to the
demo's, and the epochs that fit in the demo's 13 (``docs/benchmarks.md``,
"BCCD recipe variants"). Every config is built without backbone weights
(timing only) with the same seed; one step is ``model.train_step`` with
mmengine's ``OptimWrapper`` (AdamW, the config's gradient clipping) on
batches of real BCCD train images through the demo config's train pipeline
(batch 4, 512x384). Steps alternate between the configs, batch after batch,
so drifts of a shared machine hit all alike; medians are reported.

Usage::

    python benchmarks/bench_bccd_variants.py [CONFIG ...] [--repeats 6]
        [--threads 2]

Without CONFIG: the hybrid-matching and DINO BCCD configs.
"""
import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from bench_amp import CONFIG, ROOT, real_batch
from ddetr_plugin.registry import MODELS

VARIANTS = [
    ROOT / 'configs' / 'h_deformable_detr' /
    'h-deformable-detr-refine_mobilenetv2_1xb4-10e_bccd.py',
    ROOT / 'configs' / 'dino' / 'dino_mobilenetv2_1xb4-11e_bccd.py',
]
DEMO_EPOCHS = 13
NUM_BATCHES = 3


def build(path):
    """Model and optimizer wrapper of one config, no backbone weights."""
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    optim_wrapper = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-4),
        clip_grad=cfg.optim_wrapper.get('clip_grad'))
    return model, optim_wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', default=VARIANTS)
    parser.add_argument('--repeats', type=int, default=6)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demo_cfg = Config.fromfile(str(CONFIG))
    paths = [CONFIG] + [Path(p) for p in args.configs]
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        with tempfile.TemporaryDirectory() as folder:
            batch = demo_cfg.train_dataloader.batch_size
            data = real_batch(demo_cfg, folder, batch * NUM_BATCHES)
        batches = [{key: value[i * batch:(i + 1) * batch]
                    for key, value in data.items()}
                   for i in range(NUM_BATCHES)]
        runs = {path.stem: build(path) for path in paths}
        times = {name: [] for name in runs}
        for repeat in range(args.repeats + 1):  # the first is a warm-up
            step_data = batches[repeat % NUM_BATCHES]
            for name, (model, optim_wrapper) in runs.items():
                start = time.perf_counter()
                model.train_step(copy.deepcopy(step_data), optim_wrapper)
                if repeat:
                    times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    demo = medians[CONFIG.stem]
    print(f'BCCD, batch {batch}, 512x384, {args.threads} threads, median '
          f'of {args.repeats} steps over {NUM_BATCHES} batches')
    print('| config | train step s | vs demo | epochs in the demo\'s '
          f'{DEMO_EPOCHS} |')
    print('|---|---|---|---|')
    for name, median in medians.items():
        print(f'| {name} | {median:.2f} | {median / demo:.2f}x | '
              f'{DEMO_EPOCHS * demo / median:.1f} |')


if __name__ == '__main__':
    main()
