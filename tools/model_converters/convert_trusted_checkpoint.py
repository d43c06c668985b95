"""Rewrite a trusted checkpoint that torch's safe loading refuses, cleanly.

Usage (from the repo root)::

    python tools/model_converters/convert_trusted_checkpoint.py \
        OLD.pth CLEAN.pth --trust-code

torch >= 2.6 loads checkpoints with ``weights_only=True``; a file that
pickles other Python objects (e.g. an ``argparse.Namespace`` or an old
mmcv ``Config`` in its meta) is refused, because unpickling it could run
any code named in the file. If you trust OLD.pth (you wrote it, or know
where it comes from), this loads it ONCE with ``weights_only=False`` (only
with ``--trust-code``) and writes CLEAN.pth holding its tensors, numbers,
strings and mmengine logging types, without the other objects (listed on
the output). CLEAN.pth loads with safe loading (checked before it is
written), e.g. as ``load_from=CLEAN.pth`` or ``tools/test.py CONFIG
CLEAN.pth``. See
``ddetr_plugin.converters.trusted_checkpoint.convert_trusted_checkpoint``.
"""
import argparse
import sys

from ddetr_plugin.converters.trusted_checkpoint import \
    convert_trusted_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='trusted checkpoint -> checkpoint that loads with '
        'weights_only=True')
    parser.add_argument('src', metavar='IN', help='trusted checkpoint (.pth)')
    parser.add_argument('out', metavar='OUT', help='clean checkpoint (.pth)')
    parser.add_argument(
        '--trust-code', action='store_true',
        help='confirm that IN is trusted: loading it may run code it names')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.trust_code:
        sys.exit(f'not loading {args.src}: loading it with weights_only=False '
                 'may run code named in the file. Pass --trust-code only if '
                 'you trust the file.')
    result = convert_trusted_checkpoint(args.src, args.out)
    for dropped in result['dropped']:
        print(f'dropped {dropped}')
    print(f'{len(result["dropped"])} object(s) dropped: {args.src} -> '
          f'{args.out} (loads with weights_only=True)')


if __name__ == '__main__':
    main()
