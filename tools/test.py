"""Evaluate a checkpoint: mmdet's own ``tools/test.py`` with ddetr_plugin loaded.

Same arguments as mmdet's (``CONFIG CHECKPOINT [--work-dir DIR] [--out
FILE.pkl] [--show-dir DIR] [--cfg-options k=v ...]``), shipped inside the mmdet
package (``mmdet/.mim/tools/test.py``). Metrics are printed and written as
JSON/TensorBoard scalars under the work dir by the config's vis backends.

CONFIG may be ``ddetr_plugin::<folder>/<config>.py`` (a config of the
installed package, from any directory), and configs may inherit such paths;
a wrong one exits with status 1 naming the package's config folder and the
closest configs (``ddetr_plugin.utils.package_configs``). The script also
ships in the package (``ddetr_plugin/.mim/tools/test.py``), which is what
``mim test ddetr_plugin CONFIG --checkpoint CKPT`` runs.
"""
import runpy
import sys
from pathlib import Path

import mmdet

import ddetr_plugin  # noqa: F401
from ddetr_plugin.engine.distributed import destroy_process_group
from ddetr_plugin.utils.package_configs import (ConfigNotFoundError,
                                                load_config, resolve_config)

MMDET_TEST = str(Path(mmdet.__file__).parent / '.mim' / 'tools' / 'test.py')


def main() -> None:
    args = runpy.run_path(MMDET_TEST)['parse_args']()  # mmdet's parser
    try:
        load_config(args.config)  # the config and every base exist
        # mmdet's script loads CONFIG itself: hand it the resolved file
        sys.argv[sys.argv.index(args.config)] = resolve_config(args.config)
    except ConfigNotFoundError as error:
        sys.exit(str(error))
    try:
        runpy.run_path(MMDET_TEST, run_name='__main__')
    finally:  # tools/dist_test.sh: every rank leaves the group cleanly
        destroy_process_group()


if __name__ == '__main__':
    main()
