"""Time the backbones with their batch norms folded into the convolutions
(mmengine's ``efficient_conv_bn_eval``, on in our runtime config) against
the same backbones unfolded.

The backbones of our configs, built from them without weights (random
initialisation, running statistics away from (0, 1)), in channels-last
memory as the detector feeds them: ResNet-50 of the COCO configs (norms
frozen) and MobileNetV2 of the BCCD demo (norms in eval mode that train,
``norm_eval=True``). For each, in one run, alternating the two models:
the eval-mode forward (inference) and the training-mode forward +
backward of the sum of the outputs (training). Medians and the ratio
unfolded / folded are printed, with the largest relative difference of
the outputs.

Usage::

    python benchmarks/bench_conv_bn_eval.py [--repeats 5] [--threads 2]
"""
import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

from ddetr_plugin.engine.conv_bn_eval import turn_on_conv_bn_eval_from_config
from ddetr_plugin.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    # (name, config, batch, (height, width))
    ('ResNet-50', ROOT / 'configs' / 'deformable_detr' /
     'deformable-detr_r50_16xb2-50e_coco.py', 2, (480, 640)),
    ('MobileNetV2', ROOT / 'configs' / 'deformable_detr' /
     'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py', 2, (384, 512)),
]


def build_backbones(config):
    """(unfolded, folded) backbone of ``config`` with the same weights."""
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        backbone = MODELS.build(cfg.model.backbone)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folded = copy.deepcopy(backbone)
    holder = nn.Module()
    holder.backbone = folded
    modules = turn_on_conv_bn_eval_from_config(holder, cfg)
    assert modules == ['backbone'], 'the config does not fold'
    return backbone, folded


def median_times(functions, repeats):
    """Median seconds of each function, called alternately."""
    times = [[] for _ in functions]
    for _ in range(repeats):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            function()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'{args.threads} threads, median of {args.repeats} alternated '
          'runs')
    print('| backbone | mode | unfolded s | folded s | speed-up | largest '
          'relative difference |')
    print('|---|---|---|---|---|---|')
    for name, config, batch, (height, width) in CASES:
        plain, folded = build_backbones(config)
        inputs = torch.randn(batch, 3, height, width).contiguous(
            memory_format=torch.channels_last)

        def forward(model):
            with torch.no_grad():
                return model(inputs)

        def forward_backward(model):
            sum(out.sum() for out in model(inputs)).backward()

        for mode in ('eval', 'train'):
            for model in plain, folded:
                model.train(mode == 'train')
            if mode == 'eval':
                difference = max(
                    ((ours - theirs).abs().max() / theirs.abs().max()).item()
                    for ours, theirs in zip(forward(folded), forward(plain)))
                functions = [lambda: forward(plain), lambda: forward(folded)]
            else:
                functions = [lambda: forward_backward(plain),
                             lambda: forward_backward(folded)]
            functions[0]()  # warm-up
            functions[1]()
            unfolded_s, folded_s = median_times(functions, args.repeats)
            label = 'forward (eval)' if mode == 'eval' else \
                'forward + backward (train)'
            print(f'| {name} {batch}x{width}x{height} | {label} | '
                  f'{unfolded_s:.3f} | {folded_s:.3f} | '
                  f'{unfolded_s / folded_s:.2f}x | ' +
                  (f'{difference:.1e} |' if mode == 'eval' else '– |'))


if __name__ == '__main__':
    main()
