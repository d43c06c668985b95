"""Train a detector: mmdet's own ``tools/train.py`` with ddetr_plugin loaded.

Same arguments as mmdet's (``CONFIG [--work-dir DIR] [--resume [CKPT]]
[--amp] [--cfg-options k=v ...]``), which ship inside the mmdet package
(``mmdet/.mim/tools/train.py``). Importing ddetr_plugin first loads the
compiled op and allow-lists the types of Runner checkpoints for torch's safe
loading, so ``--resume`` works on torch >= 2.6.

Before training, the fast dataset check (annotations and image files of the
train and val datasets, ``ddetr_plugin.datasets.dataset_check``) runs on the
config with its ``--cfg-options``; on an error it prints the report and
exits with status 1 before the first iteration. ``--skip-data-check`` (ours)
turns it off.
"""
import runpy
import sys
from pathlib import Path

import mmdet
from mmengine.config import Config

import ddetr_plugin  # noqa: F401
from ddetr_plugin.datasets.check_report import format_reports
from ddetr_plugin.datasets.dataset_check import (DatasetCheckError,
                                                 check_before_training)

MMDET_TRAIN = str(Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py')
SKIP_DATA_CHECK = '--skip-data-check'


def main() -> None:
    skip = SKIP_DATA_CHECK in sys.argv
    sys.argv = [arg for arg in sys.argv if arg != SKIP_DATA_CHECK]
    if not skip:
        args = runpy.run_path(MMDET_TRAIN)['parse_args']()  # mmdet's parser
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        try:
            print(format_reports(check_before_training(cfg)))
        except DatasetCheckError as error:
            sys.exit(str(error))
    runpy.run_path(MMDET_TRAIN, run_name='__main__')


if __name__ == '__main__':
    main()
