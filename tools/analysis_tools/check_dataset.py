"""Check the datasets of a config before training on them.

Usage::

    python tools/analysis_tools/check_dataset.py CONFIG \
        [--split train|val|test|all] [--out report.json] \
        [--cfg-options key=value ...]

Reads every annotation and decodes every image that the config's
dataloaders would load (through the config's own dataset and loading
transform), prints each problem with its file and ids grouped by kind and a
summary table, and exits with status 1 when there is an error (warnings
alone: 0). See docs/datasets.md.
"""
import argparse
import json
import sys

from mmengine.config import Config, DictAction

from ddetr_plugin.datasets.dataset_check import (SPLITS, check_config,
                                                 format_reports, has_errors)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--split', choices=[*SPLITS, 'all'], default='all',
                        help='dataloader(s) to check (default: all)')
    parser.add_argument('--out', help='also write the report as JSON here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, as in tools/train.py')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    splits = SPLITS if args.split == 'all' else (args.split, )
    reports = check_config(cfg, splits)
    print(format_reports(reports))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, errors=has_errors(reports),
                           splits=[r.to_dict() for r in reports]), f,
                      indent=1, default=str)
    sys.exit(1 if has_errors(reports) else 0)


if __name__ == '__main__':
    main()
