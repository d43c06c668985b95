"""Time a training step and an inference of R50 Deformable DETR: ours vs mmdet,
and our step against its matrix-product floor.

Both models are built from their own configs (mmdet 3.3's
``deformable-detr_r50_16xb2-50e_coco.py`` and ours of the same name, or the
``--variant`` given); mmdet's weights are converted with
:func:`ddetr_plugin.converters.mmdet_to_ddetr` and loaded into ours, so both
compute the same function (our configs' dropout is counter-based, mmdet's is
torch's: same rates, different draws). One step = data preprocessing,
forward, loss, backward and an AdamW step; inference = ``predict`` in eval
mode without gradients. Runs alternate ours/mmdet and the medians are
reported with their ratio; mmdet runs mmcv's MSDA (its pure-PyTorch fallback
on CPU).

Each model runs as its config sets it up: ours with our runtime's
``efficient_conv_bn_eval`` (the backbone's batch norms folded into its
convolutions, as our runner does), mmdet's config without it.

The floor: one more step of ours under ``torch.profiler``; the self time of
the matrix products and convolutions (forward and backward: ``aten::mm``,
``addmm``, ``bmm``, ``mkldnn_convolution``, ``convolution_backward``, ...)
is what the step would take if everything else were free. The benchmark
prints the step over that floor and the ten ops with the most self time
outside it (where the rest goes).

Usage::

    python benchmarks/bench_train_step.py [--repeats 5] [--size 640 480]
        [--batch 2] [--variant deformable-detr_r50_16xb2-50e_coco.py]
"""
import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import mmdet
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from ddetr_plugin.converters import mmdet_to_ddetr
from ddetr_plugin.engine.conv_bn_eval import \
    turn_on_conv_bn_eval_from_config
from ddetr_plugin.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'


def build(config_path, registry, scope):
    cfg = Config.fromfile(config_path)
    cfg.model.backbone.init_cfg = None  # no download; weights are shared
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(copy.deepcopy(cfg.model))
    # the config's efficient_conv_bn_eval, as its runner would (ours: the
    # backbone's batch norms folded; mmdet's configs do not set it)
    turn_on_conv_bn_eval_from_config(model, cfg)
    return model


def make_batch(batch, width, height, num_boxes=10, seed=0):
    """Random images with random ground-truth boxes (pixels, xyxy)."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(
            torch.randint(0, 256, (3, height, width), generator=gen,
                          dtype=torch.uint8))
        xy = torch.rand(num_boxes, 2, generator=gen) * torch.tensor(
            [width * 0.7, height * 0.7])
        wh = (torch.rand(num_boxes, 2, generator=gen) * 0.25 + 0.05) * \
            torch.tensor([width, height])
        sample = DetDataSample(
            metainfo=dict(img_shape=(height, width),
                          ori_shape=(height, width),
                          scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat((xy, xy + wh), 1),
            labels=torch.randint(0, 80, (num_boxes, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def train_step(model, optimizer, batch):
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def infer(model, batch):
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batch), False)
        model(**data, mode='predict')


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


#: torch ops whose self time is matrix-product or convolution arithmetic
FLOOR_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm',
             'aten::addbmm', 'aten::matmul', 'aten::linear',
             'aten::mkldnn_convolution', 'aten::convolution_backward',
             'aten::_convolution', 'aten::convolution', 'aten::conv2d',
             'aten::_mkldnn_convolution', 'aten::mkldnn_linear')


def matrix_product_floor(model, optimizer, batch) -> dict:
    """One training step of ``model`` under ``torch.profiler``: its time,
    the self time of :data:`FLOOR_OPS`, and the ten other ops with the most
    self time (name, seconds)."""
    from torch.profiler import ProfilerActivity, profile
    model.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step = timed(train_step, model, optimizer, batch)
    floor, others = 0.0, []
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        if event.key in FLOOR_OPS:
            floor += seconds
        else:
            others.append((event.key, seconds))
    others.sort(key=lambda item: -item[1])
    return dict(step=step, floor=floor, others=others[:10])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variant',
                        default='deformable-detr_r50_16xb2-50e_coco.py')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--size', type=int, nargs=2, default=(640, 480),
                        metavar=('W', 'H'))
    parser.add_argument('--batch', type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    theirs = build(MMDET_CONFIGS / 'deformable_detr' / args.variant,
                   MMDET_MODELS, 'mmdet')
    ours = build(ROOT / 'configs' / 'deformable_detr' / args.variant,
                 MODELS, 'ddetr_plugin')
    ours.load_state_dict(mmdet_to_ddetr(theirs.state_dict()), strict=True)
    models = {'ours': ours, 'mmdet': theirs}
    optimizers = {
        name: torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=1e-4)
        for name, m in models.items()
    }
    batch = make_batch(args.batch, *args.size)

    times = {name: dict(train=[], infer=[]) for name in models}
    for name, model in models.items():  # warm-up
        model.train()
        train_step(model, optimizers[name], batch)
    for _ in range(args.repeats):
        for name, model in models.items():
            model.train()
            times[name]['train'].append(
                timed(train_step, model, optimizers[name], batch))
            model.eval()
            times[name]['infer'].append(timed(infer, model, batch))

    medians = {
        name: {k: statistics.median(v) for k, v in t.items()}
        for name, t in times.items()
    }
    print(f'# {args.variant}, {args.batch} x {args.size[0]}x{args.size[1]}, '
          f'CPU {torch.get_num_threads()} threads, median of {args.repeats}')
    print(f'{"":<8}{"train step s":>14}{"inference s":>13}')
    for name, m in medians.items():
        print(f'{name:<8}{m["train"]:>14.2f}{m["infer"]:>13.2f}')
    speedup = {
        name: {
            k: medians['mmdet'][k] / medians[name][k]
            for k in ('train', 'infer')
        }
        for name in models if name != 'mmdet'
    }
    for name, ratio in speedup.items():
        print(f'{"x " + name:<8}{ratio["train"]:>13.2f}x'
              f'{ratio["infer"]:>12.2f}x')
    floor = matrix_product_floor(ours, optimizers['ours'], batch)
    print(f'ours under the profiler: step {floor["step"]:.2f} s, matrix '
          f'products and convolutions {floor["floor"]:.2f} s: step = '
          f'{floor["step"] / floor["floor"]:.2f}x its floor')
    print('most self time outside the floor:')
    for name, seconds in floor['others']:
        print(f'  {name:<40}{seconds:>7.3f} s')
    print(json.dumps(dict(variant=args.variant, batch=args.batch,
                          size=args.size, threads=torch.get_num_threads(),
                          seconds=medians, speedup=speedup,
                          floor=floor)))


if __name__ == '__main__':
    main()
