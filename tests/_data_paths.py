"""Where the tests find the shared real data and the offline weights.

Imported by the test modules (pytest puts ``tests/`` on ``sys.path``).
"""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir(*parts: str) -> Path:
    """``../shared/data/<parts>`` next to the repo (``$DDETR_SHARED_DATA``
    overrides ``../shared/data``); skips the calling test if it is absent."""
    root = Path(os.environ.get('DDETR_SHARED_DATA',
                               REPO_ROOT.parent / 'shared' / 'data'))
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'shared data not found: {path} (set DDETR_SHARED_DATA '
                    'to the folder holding bccd/ and coco_mini/)')
    return path
