"""Convert an mmdet 3.x Deformable DETR or DINO checkpoint to ddetr_plugin's
layout.

Usage (from the repo root)::

    python tools/model_converters/mmdet_to_ddetr.py \
        checkpoints/deformable-detr_r50_16xb2-50e_coco_<date>-<hash>.pth \
        checkpoints/deformable-detr_r50_16xb2-50e_coco_ddetr.pth

(IN as released in mmdet's ``configs/deformable_detr/metafile.yml``.)

IN is any of mmdet's three Deformable DETR variants (plain, refine, refine +
two-stage) or a DINO checkpoint (``configs/dino/metafile.yml``); OUT is
``{'meta': <IN's meta>, 'state_dict': <converted>}``, loadable with
``load_from=OUT`` or ``tools/test.py CONFIG OUT`` with the matching config of
``configs/deformable_detr/`` or ``configs/dino/`` (``strict=True``). The
optimizer state and anything else in IN is dropped. IN is read with
``torch.load(weights_only=True)`` (plus the Runner-checkpoint types of
``ddetr_plugin.engine.checkpoint``). Prints the number of tensors written.
See ``ddetr_plugin/converters/mmdet_checkpoint.py`` for the key mapping.
"""
import argparse

from ddetr_plugin.converters.mmdet_checkpoint import convert_mmdet_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='mmdet DeformableDETR / DINO checkpoint -> ddetr_plugin '
        'checkpoint')
    parser.add_argument('src', metavar='IN', help='mmdet checkpoint (.pth)')
    parser.add_argument('out', metavar='OUT', help='output .pth')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    converted = convert_mmdet_checkpoint(args.src, args.out)
    print(f'{len(converted["state_dict"])} tensors: {args.src} -> {args.out}')


if __name__ == '__main__':
    main()
