"""Time a training step in bfloat16 autocast (``--amp``) against float32.

The BCCD demo model (``deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py``,
512x384, a batch of the config's size of real BCCD images through its
train pipeline)
is built twice with the same weights; one step is ``model.train_step`` with
mmengine's ``OptimWrapper`` (float32) or our ``CPUAmpOptimWrapper``
(bfloat16 autocast, what ``tools/train.py --amp`` builds): preprocessing,
forward, loss, backward, gradient clipping and AdamW. Steps alternate
between the two and the medians are reported with their ratio, plus whether
this CPU has native bfloat16 instructions (``avx512_bf16``/``amx_bf16``):
without them bfloat16 matrix products are emulated and AMP is expected to be
slower.

Usage::

    python benchmarks/bench_amp.py [--repeats 5] [--threads 2]
"""
import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from ddetr_plugin.datasets.voc_to_coco import convert_voc_to_coco
from ddetr_plugin.engine import CPUAmpOptimWrapper
from ddetr_plugin.registry import DATASETS, MODELS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (ROOT / 'configs' / 'deformable_detr' /
          'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')
BCCD = ROOT.parent / 'shared' / 'data' / 'bccd' / 'BCCD'


def native_bf16() -> str:
    """The bfloat16 instruction sets this CPU reports (or 'none')."""
    flags = Path('/proc/cpuinfo').read_text().split()
    found = sorted({f for f in flags if f in ('avx512_bf16', 'amx_bf16')})
    return ', '.join(found) or 'none'


def real_batch(cfg, folder, batch):
    """The first ``batch`` BCCD train images through the train pipeline."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # BCCD's two zero-size boxes
        stats = convert_voc_to_coco(
            str(BCCD), folder, splits=('train', ),
            classes=cfg.train_dataloader.dataset.metainfo['classes'])
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.ann_file = stats['train']['ann_file']
    dataset = DATASETS.build(dataset_cfg)
    return pseudo_collate([dataset[i] for i in range(batch)])


def timing_setup(description):
    """``--repeats``/``--threads`` of a BCCD-demo step benchmark, the thread
    count applied, and the demo config without its backbone weights (timing
    only). Returns ``(args, cfg)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.backbone.init_cfg = None
    return args, cfg


def main():
    args, cfg = timing_setup(__doc__.split('\n')[0])
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        with tempfile.TemporaryDirectory() as folder:
            data = real_batch(cfg, folder, cfg.train_dataloader.batch_size)
        torch.manual_seed(0)
        float32_model = MODELS.build(copy.deepcopy(cfg.model))
        float32_model.init_weights()
        amp_model = copy.deepcopy(float32_model)
        settings = dict(clip_grad=cfg.optim_wrapper.clip_grad)
        runs = {
            'float32': (float32_model, OptimWrapper(
                torch.optim.AdamW(float32_model.parameters(), lr=2e-4),
                **settings)),
            'bfloat16 AMP': (amp_model, CPUAmpOptimWrapper(
                optimizer=torch.optim.AdamW(amp_model.parameters(), lr=2e-4),
                **settings)),
        }
        times = {name: [] for name in runs}
        for repeat in range(args.repeats + 1):  # the first is a warm-up
            for name, (model, optim_wrapper) in runs.items():
                start = time.perf_counter()
                model.train_step(copy.deepcopy(data), optim_wrapper)
                if repeat:
                    times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f'BCCD demo model, batch {len(data["inputs"])}, 512x384, '
          f'{args.threads} threads, median of {args.repeats} '
          f'(native bfloat16 on this CPU: {native_bf16()})')
    print('| | train step s | speed-up |')
    print('|---|---|---|')
    for name, median in medians.items():
        print(f'| {name} | {median:.2f} | '
              f'{medians["float32"] / median:.2f}x |')


if __name__ == '__main__':
    main()
