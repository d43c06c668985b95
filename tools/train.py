"""Train a detector: mmdet's own ``tools/train.py`` with ddetr_plugin loaded.

Same arguments as mmdet's (``CONFIG [--work-dir DIR] [--resume [CKPT]]
[--amp] [--cfg-options k=v ...]``), which ship inside the mmdet package
(``mmdet/.mim/tools/train.py``). Importing ddetr_plugin first loads the
compiled op and allow-lists the types of Runner checkpoints for torch's safe
loading, so ``--resume`` works on torch >= 2.6.
"""
import runpy
from pathlib import Path

import mmdet

import ddetr_plugin  # noqa: F401

if __name__ == '__main__':
    runpy.run_path(
        str(Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py'),
        run_name='__main__')
