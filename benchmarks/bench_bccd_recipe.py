"""Time a training step of the BCCD demo model with and without two speed
settings: counter-based dropout (the demo uses it) and frozen MobileNetV2
stages 1-3 (measured, not used: it cost 3 points of test mAP).

The demo config (``deformable-detr-refine_mobilenetv2_1xb4-13e_bccd.py``) is
built four times with the same weights, with ``backbone.frozen_stages`` -1
(every stage trained, as the demo) or 3, and
``transformer.counter_dropout`` False (torch's dropout) or True (as the
demo). One step is
``model.train_step`` on the same batch of 4 real BCCD train images (the
config's pipeline, 512x384) with mmengine's ``OptimWrapper`` (AdamW,
gradient clipping), as ``tools/train.py`` runs it. Steps alternate between
the variants; medians and their ratios to the first (the paper's settings)
are printed.

Usage::

    python benchmarks/bench_bccd_recipe.py [--repeats 5] [--threads 2]
"""
import copy
import statistics
import tempfile
import time

import torch
from bench_amp import real_batch, timing_setup
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from ddetr_plugin.registry import MODELS

VARIANTS = {
    # name: (backbone.frozen_stages, transformer.counter_dropout)
    'all stages trained, torch dropout': (-1, False),
    'frozen stages 1-3, torch dropout': (3, False),
    'all stages trained, counter dropout (the demo)': (-1, True),
    'frozen stages 1-3, counter dropout': (3, True),
}


def main():
    args, cfg = timing_setup(__doc__.split('\n')[0])
    runs = {}
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        with tempfile.TemporaryDirectory() as folder:
            data = real_batch(cfg, folder, cfg.train_dataloader.batch_size)
        state = None
        for name, (frozen_stages, counter_dropout) in VARIANTS.items():
            model_cfg = copy.deepcopy(cfg.model)
            model_cfg.backbone.frozen_stages = frozen_stages
            model_cfg.transformer.counter_dropout = counter_dropout
            torch.manual_seed(0)
            model = MODELS.build(model_cfg)
            if state is None:
                model.init_weights()
                state = model.state_dict()
            model.load_state_dict(state)
            optimizer = torch.optim.AdamW(
                [p for p in model.parameters() if p.requires_grad], lr=2e-4)
            runs[name] = (model, OptimWrapper(
                optimizer, clip_grad=cfg.optim_wrapper.clip_grad))
        times = {name: [] for name in runs}
        for repeat in range(args.repeats + 1):  # the first is a warm-up
            for name, (model, optim_wrapper) in runs.items():
                model.train()
                start = time.perf_counter()
                model.train_step(copy.deepcopy(data), optim_wrapper)
                if repeat:
                    times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    first = next(iter(medians.values()))
    print(f'BCCD demo model, batch {len(data["inputs"])}, 512x384, '
          f'{args.threads} threads, median of {args.repeats}')
    print('| | train step s | speed-up |')
    print('|---|---|---|')
    for name, median in medians.items():
        print(f'| {name} | {median:.2f} | {first / median:.2f}x |')


if __name__ == '__main__':
    main()
