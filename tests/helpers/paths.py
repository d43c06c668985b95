"""Where things are: the repository, its configs and tools, and the shared
real data (BCCD, coco_mini) next to it."""
import os
from pathlib import Path

import pytest
from mmengine.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
TESTS = REPO_ROOT / 'tests'
CONFIG_DIR = REPO_ROOT / 'configs' / 'deformable_detr'
#: the BCCD demo config (MobileNetV2, 3 levels, 512x384)
BCCD_CONFIG = (CONFIG_DIR /
               'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py')
#: BCCD's classes in the order of the demo config's ``metainfo`` (category
#: ids 1, 2, 3 of the converted annotations)
BCCD_CLASSES = tuple(Config.fromfile(
    REPO_ROOT / 'configs' / '_base_' / 'datasets' /
    'bccd_detection.py').metainfo['classes'])


def shared_data_dir(*parts: str) -> Path:
    """The shared real data folder ``../shared/data/<parts>`` next to the repo.

    ``$DDETR_SHARED_DATA`` overrides ``../shared/data``. When the folder is
    missing, the calling test fails in CI (``$CI`` is ``true``, as
    ``.ci/run`` runs) and is skipped elsewhere, naming the path either way.

    Args:
        *parts (str): path components below the data root, e.g.
            ``'bccd', 'BCCD'``.

    Returns:
        Path: the existing path.

    Raises:
        pytest.fail.Exception: the path is absent and ``$CI`` is ``true``.
        pytest.skip.Exception: the path is absent (not in CI).
    """
    root = Path(os.environ.get('DDETR_SHARED_DATA',
                               REPO_ROOT.parent / 'shared' / 'data'))
    path = root.joinpath(*parts)
    if not path.exists():
        message = (f'shared data not found: {path} (set DDETR_SHARED_DATA '
                   'to the folder holding bccd/ and coco_mini/)')
        missing_in_ci_fails(message)
    return path


def missing_in_ci_fails(message: str) -> None:
    """Fail the calling test in CI (``$CI`` is ``true``, as ``.ci/run``
    runs), skip it elsewhere: for what ``make install`` provides or CI
    must have (shared data, set-up outputs).

    Raises:
        pytest.fail.Exception: ``$CI`` is ``true``.
        pytest.skip.Exception: otherwise.
    """
    if os.environ.get('CI') == 'true':
        pytest.fail(f'{message}; CI=true needs it')
    pytest.skip(message)
