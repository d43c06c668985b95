"""Inference of R50 Deformable DETR in one run: ours, mmdet 3.3, HF
transformers, and onnxruntime on our ONNX export.

Each peer computes the same function as one of our models:

* mmdet's model is built from its own config
  (``deformable-detr_r50_16xb2-50e_coco.py``); its weights are converted
  with :func:`ddetr_plugin.converters.mmdet_to_ddetr` into ``ours`` (our
  config of the same name);
* HF's ``DeformableDetrForObjectDetection`` of the same sizes (ResNet-50,
  256 channels, 6 + 6 layers, 300 queries, 91 labels, random weights, no
  download) is converted with :func:`ddetr_plugin.converters.hf_to_ddetr`
  into ``ours (HF weights)`` (our config with HF's biased input projections
  and 91 classes); HF's time includes its ``post_process_object_detection``
  (top 100), as ours includes our head's top-k and rescaling;
* onnxruntime (CPU execution provider) runs our export
  (:func:`ddetr_plugin.deployment.export_onnx`) of ``ours`` at the same
  static size and batch, from normalised images.

Each model runs as its config sets it up: ours with our runtime's
``efficient_conv_bn_eval`` (the backbone's batch norms folded into its
convolutions, as our runner and ``tools/infer.py`` do), mmdet's config
without it, HF's as the library ships it.

The largest difference of each pair's scores is printed (they must agree
within 1e-3). Inputs: random images of ``--size`` (640x480), batch 1 and 2;
runs alternate between the models after one warm-up each; the medians of
``--repeats`` are printed with each peer's time over ours.

Usage::

    python benchmarks/bench_inference.py [--repeats 5] [--size 640 480]
        [--batches 1 2] [--threads 2]
"""
import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import mmdet
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope

from ddetr_plugin.converters import mmdet_to_ddetr
from ddetr_plugin.converters.hf_checkpoint import hf_to_ddetr
from ddetr_plugin.deployment import export_onnx
from ddetr_plugin.engine.conv_bn_eval import \
    turn_on_conv_bn_eval_from_config
from ddetr_plugin.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
VARIANT = 'deformable-detr_r50_16xb2-50e_coco.py'
MMDET_CONFIG = (Path(mmdet.__file__).parent / '.mim' / 'configs' /
                'deformable_detr' / VARIANT)
OUR_CONFIG = ROOT / 'configs' / 'deformable_detr' / VARIANT
HF_LABELS = 91


def build(config, registry, scope, **changes):
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # no download; weights are loaded
    for key, value in changes.items():
        cfg.merge_from_dict({key: value})
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(copy.deepcopy(cfg.model)).eval()
    # the config's efficient_conv_bn_eval, as its runner would (ours: the
    # backbone's batch norms folded; mmdet's configs do not set it)
    turn_on_conv_bn_eval_from_config(model, cfg)
    return model


def hf_model():
    from transformers import (DeformableDetrConfig,
                              DeformableDetrForObjectDetection, ResNetConfig)
    config = DeformableDetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False,
        backbone_config=ResNetConfig(
            out_features=['stage2', 'stage3', 'stage4']),
        num_labels=HF_LABELS)
    torch.manual_seed(0)
    return DeformableDetrForObjectDetection(config).eval()


def make_inputs(batch, width, height, seed=0):
    """Random uint8 images and their data samples (pixels)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, height, width), generator=gen,
                            dtype=torch.uint8) for _ in range(batch)]
    samples = [DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width),
        scale_factor=(1.0, 1.0))) for _ in range(batch)]
    return dict(inputs=inputs, data_samples=samples)


def runners(models, hf, batch, size, folder):
    """name -> (function running one inference, its scores)."""
    data = make_inputs(batch, *size)
    normalised = models['ours'].data_preprocessor(copy.deepcopy(data), False)
    images = normalised['inputs']  # (B, 3, H, W) float32
    pixel_mask = torch.ones(batch, *images.shape[2:], dtype=torch.long)

    def ours(name):
        def run():
            processed = models[name].data_preprocessor(
                copy.deepcopy(data), False)
            return torch.stack([r.pred_instances.scores for r in models[name](
                **processed, mode='predict')])
        return run

    from transformers import DeformableDetrImageProcessorPil
    processor = DeformableDetrImageProcessorPil()

    def hugging_face():
        outputs = hf(pixel_values=images, pixel_mask=pixel_mask)
        detections = processor.post_process_object_detection(
            outputs, threshold=0.0, target_sizes=[size[::-1]] * batch,
            top_k=100)
        return torch.stack([d['scores'] for d in detections])

    import onnxruntime
    path = export_onnx(models['ours'], Path(folder) / f'b{batch}.onnx',
                       tuple(images.shape[2:]), metadata={},
                       batch_size=batch)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(path), options, providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]

    def ort():
        outputs = dict(zip(output_names, session.run(
            None, {input_name: images.numpy()})))
        return torch.from_numpy(outputs['scores'])

    return {'ours': ours('ours'), 'mmdet': ours('mmdet'),
            'ours (HF weights)': ours('ours_hf'), 'HF transformers':
            hugging_face, 'onnxruntime (ours)': ort}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--size', type=int, nargs=2, default=(640, 480),
                        metavar=('W', 'H'))
    parser.add_argument('--batches', type=int, nargs='+', default=(1, 2))
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    mmdet_model = build(MMDET_CONFIG, MMDET_MODELS, 'mmdet')
    ours = build(OUR_CONFIG, MODELS, 'ddetr_plugin')
    ours.load_state_dict(mmdet_to_ddetr(mmdet_model.state_dict()),
                         strict=True)
    hf = hf_model()
    ours_hf = build(OUR_CONFIG, MODELS, 'ddetr_plugin', **{
        'model.neck.bias': True,
        'model.bbox_head.num_classes': HF_LABELS})
    ours_hf.load_state_dict(hf_to_ddetr(hf.state_dict()), strict=True)
    models = {'ours': ours, 'mmdet': mmdet_model, 'ours_hf': ours_hf}
    pairs = {'mmdet': 'ours', 'HF transformers': 'ours (HF weights)',
             'onnxruntime (ours)': 'ours'}

    print(f'# R50 Deformable DETR inference, {args.size[0]}x{args.size[1]}, '
          f'CPU {args.threads} threads, median of {args.repeats} '
          f'(s per batch)')
    print('| model | batch | s | peer / ours |')
    print('|---|---|---|---|')
    with torch.no_grad(), tempfile.TemporaryDirectory() as folder:
        for batch in args.batches:
            run = runners(models, hf, batch, args.size, folder)
            scores = {name: fn() for name, fn in run.items()}  # warm-up
            for peer, reference in pairs.items():
                difference = (scores[peer] - scores[reference]).abs().max()
                assert difference < 1e-3, (peer, float(difference))
            times = {name: [] for name in run}
            for _ in range(args.repeats):
                for name, fn in run.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            median = {k: statistics.median(v) for k, v in times.items()}
            for name in run:
                ratio = (f'{median[name] / median[pairs[name]]:.2f}x'
                         if name in pairs else '')
                print(f'| {name} | {batch} | {median[name]:.2f} | {ratio} |')


if __name__ == '__main__':
    main()
