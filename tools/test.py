"""Evaluate a checkpoint: mmdet's own ``tools/test.py`` with ddetr_plugin loaded.

Same arguments as mmdet's (``CONFIG CHECKPOINT [--work-dir DIR] [--out
FILE.pkl] [--show-dir DIR] [--cfg-options k=v ...]``), shipped inside the mmdet
package (``mmdet/.mim/tools/test.py``). Metrics are printed and written as
JSON/TensorBoard scalars under the work dir by the config's vis backends.
"""
import runpy
from pathlib import Path

import mmdet

import ddetr_plugin  # noqa: F401
from ddetr_plugin.engine.distributed import destroy_process_group

if __name__ == '__main__':
    try:
        runpy.run_path(
            str(Path(mmdet.__file__).parent / '.mim' / 'tools' / 'test.py'),
            run_name='__main__')
    finally:  # tools/dist_test.sh: every rank leaves the group cleanly
        destroy_process_group()
