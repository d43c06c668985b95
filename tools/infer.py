"""Run a trained detector, in PyTorch or exported to ONNX, on images.

Usage (from the repo root)::

    python tools/infer.py CONFIG CHECKPOINT IMAGE_OR_DIR [...] --out-dir DIR \
        [--score-thr 0.3] [--device cpu]
    python tools/infer.py --backend onnxruntime MODEL.onnx IMAGE_OR_DIR [...] \
        --out-dir DIR [--score-thr 0.3]

For every image ``<name>.<ext>`` it writes

* ``DIR/preds/<name>.json``: ``{"image", "width", "height", "score_thr",
  "classes", "bboxes_xyxy", "scores", "labels", "class_names"}``; boxes are
  ``[x1, y1, x2, y2]`` in pixels of the original image, ``labels`` are
  0-based indices into ``classes``; only detections with
  ``score >= score_thr`` are listed, highest score first;
* ``DIR/vis/<name>.<ext>``: the image with those detections drawn
  (mmdet ``DetLocalVisualizer``).

Both backends resize, normalise and rescale the same way
(``ddetr_plugin/apis/inference.py``); the ONNX file carries its
preprocessing and class names (``tools/deployment/export_onnx.py``). A
folder is read non-recursively (``.jpg .jpeg .png .bmp .tif .tiff .webp``).
An input that is missing, corrupt or not an image is reported by name on
stderr and skipped; the exit status is then 1.
"""
import argparse
import sys

import ddetr_plugin  # noqa: F401  (first: registry scope, safe loading)
from ddetr_plugin.apis import BACKENDS, build_detector, run_inference

MODEL_FILES = dict(pytorch=('CONFIG', 'CHECKPOINT'),
                   onnxruntime=('MODEL.onnx', ))


def parse_args(argv=None):
    """Parse the command line into ``backend``, ``model_files``,
    ``inputs``, ``out_dir``, ``score_thr`` (in [0, 1]) and ``device``."""
    parser = argparse.ArgumentParser(
        description='Detect objects in images or folders of images; writes '
        'preds/<name>.json and vis/<name> into --out-dir.',
        usage='%(prog)s [--backend pytorch] CONFIG CHECKPOINT IMAGE_OR_DIR '
        '[...] --out-dir DIR\n       %(prog)s --backend onnxruntime '
        'MODEL.onnx IMAGE_OR_DIR [...] --out-dir DIR')
    parser.add_argument('files', nargs='+', metavar='FILE',
                        help='CONFIG CHECKPOINT (pytorch) or MODEL.onnx '
                        '(onnxruntime), then image files or folders')
    parser.add_argument('--backend', choices=BACKENDS, default='pytorch',
                        help='default: %(default)s')
    parser.add_argument('--out-dir', required=True,
                        help='output folder (created)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='keep detections with score >= this '
                        '(default: %(default)s)')
    parser.add_argument('--device', default='cpu',
                        help='torch device of the pytorch backend '
                        '(default: %(default)s)')
    args = parser.parse_args(argv)
    if not 0.0 <= args.score_thr <= 1.0:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    names = MODEL_FILES[args.backend]
    if len(args.files) <= len(names):
        parser.error(f'--backend {args.backend} takes {" ".join(names)} '
                     'then at least one IMAGE_OR_DIR')
    args.model_files = args.files[:len(names)]
    args.inputs = args.files[len(names):]
    return args


def main(argv=None):
    """Run the model on every input, write the json files and drawn images,
    report failed inputs; exits with status 1 if any input failed."""
    args = parse_args(argv)
    try:
        detector = build_detector(args.backend, args.model_files,
                                  args.device)
    except (FileNotFoundError, ValueError, ImportError) as err:
        raise SystemExit(f'error: {err}')
    records, failures = run_inference(detector, args.inputs, args.out_dir,
                                      args.score_thr)
    for record in records:
        print(f'{record["image"]}: {len(record["scores"])} detections '
              f'(score >= {args.score_thr})')
    for path, message in failures.items():
        print(f'error: {path}: {message}', file=sys.stderr)
    print(f'wrote {len(records)} json files to {args.out_dir}/preds and '
          f'drawn images to {args.out_dir}/vis; {len(failures)} input(s) '
          'failed')
    if failures:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
