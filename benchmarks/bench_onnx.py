"""Milliseconds per image: onnxruntime (CPU execution provider) vs PyTorch
eager (our compiled MSDA op), the same model on the same preprocessed real
BCCD images (512x384).

The model is the BCCD demo config's (MobileNetV2, 3 levels, 3 + 3 layers,
100 queries) with the given checkpoint, or random-but-fixed weights without
one (the speed does not depend on the weights). It is exported statically at
384x512 (``ddetr_plugin.deployment.export_onnx``); runs alternate PyTorch /
onnxruntime, both with ``--threads`` threads, after one warm-up each, and the
medians are printed with their ratio.

Usage::

    python benchmarks/bench_onnx.py [--checkpoint CKPT] [--repeats 10]
        [--threads 2] [--config CONFIG]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import Config

import ddetr_plugin  # noqa: F401
from ddetr_plugin.apis.inference import PyTorchDetector
from ddetr_plugin.datasets.preprocessing import read_image
from ddetr_plugin.deployment import export_onnx

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (ROOT / 'configs' / 'deformable_detr' /
          'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')
IMAGES = ROOT.parent / 'shared' / 'data' / 'bccd' / 'BCCD' / 'JPEGImages'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(CONFIG))
    parser.add_argument('--checkpoint', help='default: random weights')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--images', default=str(IMAGES))
    return parser.parse_args()


def random_checkpoint(config, out_dir):
    """The config without pretrained backbone, and a random checkpoint."""
    from mmdet.apis import init_detector
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    config = Path(out_dir) / 'config.py'
    cfg.dump(str(config))
    model = init_detector(str(config), device='cpu')
    checkpoint = Path(out_dir) / 'random.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    return str(config), str(checkpoint)


def main():
    args = parse_args()
    import onnxruntime
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        config, checkpoint = (args.config, args.checkpoint) \
            if args.checkpoint else random_checkpoint(args.config, tmp)
        detector = PyTorchDetector(config, checkpoint)
        images = sorted(Path(args.images).glob('*.jpg'))[:args.repeats]
        batches = [detector.preprocessor(read_image(p)) for p in images]
        shape = tuple(batches[0][0].shape[2:])
        path = export_onnx(detector.model, Path(tmp) / 'model.onnx', shape,
                           metadata={})
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(path), options, providers=['CPUExecutionProvider'])
        times = dict(pytorch=[], onnxruntime=[])
        for i, (inputs, sample) in enumerate([batches[0], *batches]):
            start = time.perf_counter()
            detector(inputs, sample)
            pytorch = time.perf_counter() - start
            start = time.perf_counter()
            session.run(None, {'image': inputs.numpy()})
            ort = time.perf_counter() - start
            if i > 0:  # the first is a warm-up
                times['pytorch'].append(pytorch)
                times['onnxruntime'].append(ort)
    medians = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f'{len(images)} BCCD images at {shape[1]}x{shape[0]}, '
          f'{args.threads} threads, median ms per image:')
    print('| backend | ms / image | speed-up |')
    print('|---|---|---|')
    for name in ('pytorch', 'onnxruntime'):
        print(f'| {name} | {medians[name]:.1f} | '
              f'{medians["pytorch"] / medians[name]:.2f}x |')


if __name__ == '__main__':
    main()
