"""Convert Hugging Face Deformable DETR weights (SenseTime/deformable-detr,
-with-box-refine, -with-box-refine-two-stage) to ddetr_plugin's layout.

Usage (from the repo root)::

    python tools/model_converters/hf_to_ddetr.py \
        checkpoints/deformable-detr-with-box-refine \
        checkpoints/deformable-detr-with-box-refine_ddetr.pth

IN is a model folder (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``) or one of those files; the variant is read from
``config.json`` when there is one, else from the keys. OUT is
``{'meta': {'dataset_meta': {'classes': <id2label>}}, 'state_dict':
<converted>}``, loadable with ``load_from=OUT`` into the matching config of
``configs/deformable_detr/`` with ``model.neck.bias=True``. Prints the
number of tensors written. The key table is in
``ddetr_plugin/converters/hf_checkpoint.py``.
"""
import argparse

from ddetr_plugin.converters.hf_checkpoint import convert_hf_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Hugging Face Deformable DETR weights -> ddetr_plugin '
        'checkpoint')
    parser.add_argument(
        'src', metavar='IN',
        help='model folder, model.safetensors or pytorch_model.bin')
    parser.add_argument('out', metavar='OUT', help='output .pth')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    converted = convert_hf_checkpoint(args.src, args.out)
    print(f'{len(converted["state_dict"])} tensors: {args.src} -> {args.out}')


if __name__ == '__main__':
    main()
