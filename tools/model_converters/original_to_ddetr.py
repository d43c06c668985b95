"""Convert a checkpoint of the original Deformable DETR repository
(fundamentalvision/Deformable-DETR) to ddetr_plugin's layout.

Usage (from the repo root)::

    python tools/model_converters/original_to_ddetr.py \
        checkpoints/r50_deformable_detr-checkpoint.pth \
        checkpoints/r50_deformable_detr_ddetr.pth

IN is any of the three released variants (plain, + iterative bounding box
refinement, ++ two-stage), read with ``torch.load(weights_only=True)``
(``argparse.Namespace`` allowed for its ``args``); only its ``model``
weights are kept. OUT is ``{'meta': {'dataset_meta': {'classes': <COCO's
91 ids>}}, 'state_dict': <converted>}``, loadable with ``load_from=OUT``
into the matching config of ``configs/deformable_detr/`` with
``model.neck.bias=True`` (91 classes load as they are; other classes keep
rows by name with ``PretrainedClassesHook``). Prints the number of tensors
written. The key table is in
``ddetr_plugin/converters/original_checkpoint.py``.
"""
import argparse

from ddetr_plugin.converters.original_checkpoint import \
    convert_original_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='original Deformable DETR checkpoint -> ddetr_plugin '
        'checkpoint')
    parser.add_argument('src', metavar='IN', help='original checkpoint')
    parser.add_argument('out', metavar='OUT', help='output .pth')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    converted = convert_original_checkpoint(args.src, args.out)
    print(f'{len(converted["state_dict"])} tensors: {args.src} -> {args.out}')


if __name__ == '__main__':
    main()
