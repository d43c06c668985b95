"""Draw where the deformable attention looks (paper Sec. 5.3, Figure 6).

Usage (from the repo root)::

    python tools/analysis_tools/vis_sampling_points.py CONFIG CHECKPOINT \
        IMAGE --out-dir DIR [--layer -1] [--topk 5] [--pixel X Y]

For each of the ``--topk`` highest-scoring detections it writes
``DIR/det<k>_<class>.png``: the image with the detection's box (green), its
reference point (white cross) and the sampling points of decoder layer
``--layer``'s cross-attention, every head and level, colour (jet) and size
showing each point's attention weight; one panel per feature level, then
one with all levels. With ``--pixel X Y`` (original-image pixels) it also
writes ``DIR/encoder_x<X>_y<Y>.png``: the sampling points of encoder layer
``--layer`` for the query at that pixel.
"""
import argparse
from pathlib import Path

import ddetr_plugin  # noqa: F401  (first: registry scope, safe loading)


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Draw the deformable attention sampling points.')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--layer', type=int, default=-1,
                        help='decoder (and encoder) layer, Python index '
                        '(default: %(default)s, the last)')
    parser.add_argument('--topk', type=int, default=5,
                        help='detections drawn (default: %(default)s)')
    parser.add_argument('--pixel', type=float, nargs=2, metavar=('X', 'Y'),
                        help='also draw the encoder query at this pixel')
    parser.add_argument('--device', default='cpu', help='torch device')
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error(f'--topk must be >= 1, got {args.topk}')
    return args


def main(argv=None):
    """Draw and write the figures; report the files."""
    args = parse_args(argv)
    import mmcv

    from ddetr_plugin.apis import build_detector, read_image
    from ddetr_plugin.visualization import (capture_sampling_points,
                                            sampling_point_figures)
    try:
        detector = build_detector('pytorch', [args.config, args.checkpoint],
                                  args.device)
        image = read_image(Path(args.image))
        inputs, sample = detector.preprocessor(image)
        captured = capture_sampling_points(
            detector.model, inputs.to(args.device), sample, args.topk)
        figures = sampling_point_figures(
            mmcv.bgr2rgb(image), captured, detector.classes, args.layer,
            args.pixel)
    except (FileNotFoundError, ValueError, IndexError) as err:
        raise SystemExit(f'error: {err}')
    out_dir = Path(args.out_dir)
    for name, figure in figures.items():
        mmcv.imwrite(mmcv.rgb2bgr(figure), str(out_dir / f'{name}.png'))
        print(out_dir / f'{name}.png')


if __name__ == '__main__':
    main()
