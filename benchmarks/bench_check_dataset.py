"""Benchmark the dataset checker on the real BCCD dataset (364 images,
640x480 JPEG).

Converts BCCD to COCO json in a temp folder, then times, on all three
splits of the BCCD demo config: the fast check (what ``tools/train.py`` runs
before training), the full check (every image decoded by the config's
loader, headers read with Pillow, on a thread pool) and, as the reference
measured in the same run, a bare sequential ``cv2.imread`` of the same files.
Prints images per second and the ratios; the target is >= 200 images/s for
the full check. Median of ``--repeats`` runs, after one warm-up run (file
cache).

Usage::

    python benchmarks/bench_check_dataset.py [--bccd ../shared/data/bccd/BCCD]
        [--repeats 3]
"""
import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import cv2
from mmengine.config import Config

from ddetr_plugin.datasets.dataset_check import SPLITS, check_config
from ddetr_plugin.datasets.voc_to_coco import convert_voc_to_coco

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = (REPO_ROOT / 'configs' / 'deformable_detr' /
          'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bccd', default=str(REPO_ROOT.parent / 'shared' /
                                              'data' / 'bccd' / 'BCCD'))
    parser.add_argument('--repeats', type=int, default=3)
    return parser.parse_args()


def _median_seconds(function, repeats: int) -> float:
    function()  # warm-up: file cache, lazy imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as out:
        cfg = Config.fromfile(CONFIG)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # BCCD's two zero-size boxes
            convert_voc_to_coco(
                args.bccd, out,
                classes=cfg.train_dataloader.dataset.metainfo['classes'])
        cfg.merge_from_dict({
            f'{split}_dataloader.dataset.ann_file':
            f'{out}/annotations/{split}.json' for split in SPLITS})
        paths = [str(Path(args.bccd) / 'JPEGImages' / image['file_name'])
                 for split in SPLITS for image in json.loads(
                     Path(f'{out}/annotations/{split}.json').read_text())
                 ['images']]
        times = {
            'fast check': _median_seconds(
                lambda: check_config(cfg, decode=False, progress=False),
                args.repeats),
            'full check': _median_seconds(
                lambda: check_config(cfg, progress=False), args.repeats),
            'cv2.imread': _median_seconds(
                lambda: [cv2.imread(p) for p in paths], args.repeats),
        }
    reference = times['cv2.imread']
    print(f'{len(paths)} BCCD images, median of {args.repeats}')
    print(f'{"":<12} {"seconds":>8} {"images/s":>9} {"vs cv2.imread":>14}')
    for name, seconds in times.items():
        print(f'{name:<12} {seconds:>8.3f} {len(paths) / seconds:>9.0f} '
              f'{reference / seconds:>13.2f}x')
    print(json.dumps({name: dict(seconds=s, images_per_second=len(paths) / s)
                      for name, s in times.items()}))


if __name__ == '__main__':
    main()
