"""Convert an mmdet 3.x Deformable DETR checkpoint to ddetr_plugin's layout.

Usage (from the repo root)::

    python tools/model_converters/mmdet_to_ddetr.py \
        checkpoints/deformable-detr_r50_16xb2-50e_coco_<date>-<hash>.pth \
        checkpoints/deformable-detr_r50_16xb2-50e_coco_ddetr.pth

(IN as released in mmdet's ``configs/deformable_detr/metafile.yml``.)

IN is any of mmdet's three variants (plain, refine, refine + two-stage),
OUT is ``{'meta': <IN's meta>, 'state_dict': <converted>}``, loadable with
``load_from=OUT`` or ``tools/test.py CONFIG OUT`` with the matching config of
``configs/deformable_detr/`` (``strict=True``). The optimizer state and
anything else in IN is dropped. IN is read with ``torch.load(weights_only=
True)`` (plus the Runner-checkpoint types of
``ddetr_plugin.engine.checkpoint``).
"""
import argparse
import os
import os.path as osp
import sys
from pathlib import Path

import torch

try:
    from ddetr_plugin.converters import from_mmdet
    from ddetr_plugin.engine.checkpoint import register_safe_checkpoint_types
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from ddetr_plugin.converters import from_mmdet
    from ddetr_plugin.engine.checkpoint import register_safe_checkpoint_types


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='mmdet DeformableDETR checkpoint -> ddetr_plugin '
        'checkpoint')
    parser.add_argument('src', metavar='IN', help='mmdet checkpoint (.pth)')
    parser.add_argument('out', metavar='OUT', help='output .pth')
    args = parser.parse_args(argv)
    register_safe_checkpoint_types()
    checkpoint = torch.load(args.src, map_location='cpu', weights_only=True)
    state_dict = checkpoint.get('state_dict', checkpoint)
    converted = dict(
        meta=checkpoint.get('meta', {}), state_dict=from_mmdet(state_dict))
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    torch.save(converted, args.out)
    print(f'{len(converted["state_dict"])} tensors: {args.src} -> {args.out}')


if __name__ == '__main__':
    main()
