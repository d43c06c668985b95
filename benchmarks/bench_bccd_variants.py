"""Time training steps of BCCD recipe variants against the BCCD demo's.

A variant that trains on the demo's time budget gets fewer epochs when its
training is slower per image: this prints each variant's time per image, its
ratio to the demo's, and the epochs that fit in the demo's 13
(``docs/benchmarks.md``, "BCCD recipe variants"). Every config is built
without backbone weights (timing only) with the same seed; one step is
``model.train_step`` with mmengine's ``OptimWrapper`` (AdamW, the config's
gradient clipping) on real BCCD train images through the demo config's
train pipeline (512x384), in batches of the config's own
``train_dataloader.batch_size``. Each config trains on the same
``IMAGES_PER_ROUND`` images per round; rounds alternate between the
configs, so drifts of a shared machine hit all alike; medians over rounds
are reported.

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
from ddetr_plugin.engine.conv_bn_eval import \
    turn_on_conv_bn_eval_from_config
from ddetr_plugin.registry import MODELS

VARIANTS = [
    ROOT / 'configs' / 'h_deformable_detr' /
    'h-deformable-detr-refine_mobilenetv2_1xb4-10e_bccd.py',
    ROOT / 'configs' / 'dino' / 'dino_mobilenetv2_1xb1-10e_bccd.py',
]
DEMO_EPOCHS = 13
IMAGES_PER_ROUND = 4  # a multiple of every compared batch size
NUM_ROUNDS = 3  # distinct image sets, cycled


def build(path):
    """Model, optimizer wrapper and batch size of one config, no backbone
    weights."""
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    # the config's efficient_conv_bn_eval, as DeformableDETRRunner.train
    turn_on_conv_bn_eval_from_config(model, cfg)
    optim_wrapper = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-4),
        clip_grad=cfg.optim_wrapper.get('clip_grad'))
    return model, optim_wrapper, cfg.train_dataloader.batch_size


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
            data = real_batch(demo_cfg, folder,
                              IMAGES_PER_ROUND * NUM_ROUNDS)
        runs = {path.stem: build(path) for path in paths}
        for name, (_, _, batch) in runs.items():
            if IMAGES_PER_ROUND % batch:
                raise ValueError(f'{name}: batch size {batch} does not '
                                 f'divide {IMAGES_PER_ROUND} images')
        times = {name: [] for name in runs}
        for repeat in range(args.repeats + 1):  # the first is a warm-up
            first = (repeat % NUM_ROUNDS) * IMAGES_PER_ROUND
            for name, (model, optim_wrapper, batch) in runs.items():
                start = time.perf_counter()
                for i in range(first, first + IMAGES_PER_ROUND, batch):
                    model.train_step(
                        copy.deepcopy({
                            key: value[i:i + batch]
                            for key, value in data.items()
                        }), optim_wrapper)
                if repeat:
                    times[name].append(
                        (time.perf_counter() - start) / IMAGES_PER_ROUND)
    medians = {name: statistics.median(t) for name, t in times.items()}
    demo = medians[CONFIG.stem]
    print(f'BCCD, 512x384, {args.threads} threads, median of {args.repeats} '
          f'rounds of {IMAGES_PER_ROUND} images')
    print('| config | batch | train s per image | vs demo | epochs in the '
          f"demo's {DEMO_EPOCHS} |")
    print('|---|---|---|---|---|')
    for name, median in medians.items():
        print(f'| {name} | {runs[name][2]} | {median:.3f} | '
              f'{median / demo:.2f}x | {DEMO_EPOCHS * demo / median:.1f} |')


if __name__ == '__main__':
    main()
