"""Train a detector: mmdet's own ``tools/train.py`` with ddetr_plugin loaded.

Same arguments as mmdet's (``CONFIG [--work-dir DIR] [--resume [CKPT]]
[--amp] [--cfg-options k=v ...]``), which ship inside the mmdet package
(``mmdet/.mim/tools/train.py``). Importing ddetr_plugin first loads the
compiled op, allow-lists the types of Runner checkpoints for torch's safe
loading, so ``--resume`` works on torch >= 2.6, and lets mmengine resolve
``_base_ = 'ddetr_plugin::<folder>/<config>.py'``. CONFIG may itself be
such a path (a config of the installed package, from any directory); a
wrong one exits with status 1 naming the package's config folder and the
closest configs (``ddetr_plugin.utils.package_configs``). The script also
ships in the package (``ddetr_plugin/.mim/tools/train.py``), which is what
``mim train ddetr_plugin CONFIG`` runs.

Before training, the fast dataset check (annotations and image files of the
train and val datasets, ``ddetr_plugin.datasets.dataset_check``) runs on the
config with its ``--cfg-options``; on an error it prints the report and
exits with status 1 before the first iteration. ``--skip-data-check`` (ours)
turns it off.

``--amp`` selects our ``CPUAmpOptimWrapper`` (``ddetr_plugin.engine``:
mmengine's ``AmpOptimWrapper`` on CUDA, bfloat16 autocast on CPU, where
mmengine's refuses to run): as mmdet's ``--amp`` on a config whose
``optim_wrapper.type`` is ``OptimWrapper``, but ``optim_wrapper.type =
'CPUAmpOptimWrapper'`` (mmdet's sets mmengine's ``'AmpOptimWrapper'``) with
``loss_scale = 'dynamic'``, passed to mmdet's script as ``--cfg-options``.
A config already on ``AmpOptimWrapper`` is switched to ours too; another
wrapper type is an error, as in mmdet.
"""
import runpy
import sys
from pathlib import Path

import mmdet
from mmengine.config import Config

import ddetr_plugin  # noqa: F401
from ddetr_plugin.datasets.dataset_check import (DatasetCheckError,
                                                 check_before_training,
                                                 format_reports)
from ddetr_plugin.engine.distributed import destroy_process_group
from ddetr_plugin.visualization.mlflow_vis_backend import MLflowTrackingError
from ddetr_plugin.utils.package_configs import (ConfigNotFoundError,
                                                load_config, resolve_config)

MMDET_TRAIN = str(Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py')
SKIP_DATA_CHECK = '--skip-data-check'
AMP_WRAPPER = 'CPUAmpOptimWrapper'


def amp_cfg_options(cfg: Config) -> list:
    """What ``--amp`` becomes: ``--cfg-options`` that select our AMP
    wrapper for ``cfg`` (the config with the user's ``--cfg-options``).

    Returns:
        list: ``['--cfg-options', ...]`` (``type`` and, from
        ``OptimWrapper``, ``loss_scale='dynamic'``), or ``[]`` when the
        config already uses ours.

    Raises:
        SystemExit: ``optim_wrapper.type`` is not ``OptimWrapper``,
            ``AmpOptimWrapper`` or ours (mmdet's ``--amp`` asserts the same).
    """
    current = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if current == AMP_WRAPPER:
        print(f'--amp: the config already uses {AMP_WRAPPER}')
        return []
    if current == 'AmpOptimWrapper':  # mmengine's: keep its loss_scale
        print(f"--amp: {AMP_WRAPPER} instead of the config's AmpOptimWrapper")
        return ['--cfg-options', f'optim_wrapper.type={AMP_WRAPPER}']
    if current != 'OptimWrapper':
        sys.exit(f'--amp is only supported when the optimizer wrapper type '
                 f'is OptimWrapper, got {current}')
    return ['--cfg-options', f'optim_wrapper.type={AMP_WRAPPER}',
            'optim_wrapper.loss_scale=dynamic']


def main() -> None:
    skip = SKIP_DATA_CHECK in sys.argv
    sys.argv = [arg for arg in sys.argv if arg != SKIP_DATA_CHECK]
    args = runpy.run_path(MMDET_TRAIN)['parse_args']()  # mmdet's parser
    try:
        cfg = load_config(args.config, args.cfg_options)
        # mmdet's script loads CONFIG itself: hand it the resolved file
        sys.argv[sys.argv.index(args.config)] = resolve_config(args.config)
    except ConfigNotFoundError as error:
        sys.exit(str(error))
    if args.amp:  # ours instead of mmdet's (argparse takes '--am' too)
        sys.argv = [arg for arg in sys.argv if arg not in ('--am', '--amp')]
        sys.argv += amp_cfg_options(cfg)
    if not skip:
        try:
            print(format_reports(check_before_training(cfg)))
        except DatasetCheckError as error:
            sys.exit(str(error))
    try:
        runpy.run_path(MMDET_TRAIN, run_name='__main__')
    except MLflowTrackingError as error:  # the server is down: one line
        sys.exit(f'MLflowTrackingError: {error}')
    finally:  # tools/dist_train.sh: every rank leaves the group cleanly
        destroy_process_group()


if __name__ == '__main__':
    main()
