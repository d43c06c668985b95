"""Export a trained Deformable DETR to ONNX (normalised image in; top-k
scores, labels and xyxy boxes in input pixels out), checked by
``onnx.checker``.

Usage (from the repo root)::

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx \
        [--opset 18] [--shape H W] [--dynamic]

``--shape`` defaults to the config's test resize scale padded to its
``pad_size_divisor``; ``--dynamic`` leaves height and width free. The file
records the preprocessing and class names, so
``tools/infer.py --backend onnxruntime model.onnx IMAGES --out-dir DIR``
needs nothing else. Needs the pinned ``onnx``, ``onnxscript`` and
``onnxruntime`` (``make install``).
"""
import argparse

import ddetr_plugin  # noqa: F401  (first: registry scope, safe loading)
from ddetr_plugin.deployment import MIN_OPSET, export_checkpoint


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Export a Deformable DETR checkpoint to ONNX.')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--opset', type=int, default=MIN_OPSET,
                        help='ONNX opset, >= %(default)s')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width in pixels (default: '
                        'the test resize scale, padded)')
    parser.add_argument('--dynamic', action='store_true',
                        help='free input height and width')
    return parser.parse_args(argv)


def main(argv=None):
    """Export and report the file written."""
    args = parse_args(argv)
    try:
        out = export_checkpoint(args.config, args.checkpoint, args.out,
                                args.shape, args.opset, args.dynamic)
    except (ImportError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f'error: {err}')
    print(f'wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, opset '
          f'{args.opset}, {"dynamic" if args.dynamic else "static"} input; '
          'onnx.checker passed)')


if __name__ == '__main__':
    main()
