"""Shared helpers of the test suite.

pytest puts ``tests/`` on ``sys.path`` for this file, so test modules import
them with ``from conftest import REPO_ROOT, make_msda_inputs,
shared_data_dir``.
"""
import os
from pathlib import Path

import pytest
import torch
from mmengine.registry import DefaultScope

from ddetr_plugin.ops import level_start_index

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir(*parts: str) -> Path:
    """The shared real data folder ``../shared/data/<parts>`` next to the repo.

    ``$DDETR_SHARED_DATA`` overrides ``../shared/data``.

    Args:
        *parts (str): path components below the data root, e.g.
            ``'bccd', 'BCCD'``.

    Returns:
        Path: the existing path.

    Raises:
        pytest.skip.Exception: skips the calling test when the path is absent.
    """
    root = Path(os.environ.get('DDETR_SHARED_DATA',
                               REPO_ROOT.parent / 'shared' / 'data'))
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'shared data not found: {path} (set DDETR_SHARED_DATA '
                    'to the folder holding bccd/ and coco_mini/)')
    return path


def make_msda_inputs(batch=2, num_queries=5, num_heads=2, head_dim=4,
                     shapes=((6, 8), (3, 4)), num_points=3,
                     dtype=torch.float64, device='cpu', spread=(-0.2, 1.2),
                     seed=0):
    """Random inputs of the MSDA operator (shapes in ``csrc/msda.h``).

    Drawn in float64 on the CPU from a generator seeded with ``seed`` (so the
    same arguments give the same values on every device), then cast to
    ``dtype`` and moved to ``device``.

    Args:
        batch, num_queries, num_heads, head_dim, num_points (int): sizes.
        shapes (sequence of (int, int)): ``(H_l, W_l)`` of each level.
        dtype (torch.dtype): floating dtype of value, locations and weights.
        device (str | torch.device): where the tensors are put.
        spread ((float, float)): sampling locations are uniform in this
            range of normalised coordinates; the default reaches outside the
            map on every side.
        seed (int): generator seed.

    Returns:
        tuple: ``(value, spatial_shapes, level_start_index,
        sampling_locations, attention_weights)``: (B, S, M, D) ``dtype``,
        (L, 2) int64, (L,) int64, (B, Q, M, L, P, 2) ``dtype``,
        (B, Q, M, L, P) ``dtype`` softmax-normalised over the points.
    """
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long).reshape(-1, 2)
    num_levels = len(shapes)
    value = torch.randn(batch, int(spatial_shapes.prod(1).sum()), num_heads,
                        head_dim, generator=gen, dtype=torch.float64)
    low, high = spread
    locations = torch.rand(batch, num_queries, num_heads, num_levels,
                           num_points, 2, generator=gen,
                           dtype=torch.float64) * (high - low) + low
    weights = torch.rand(batch, num_queries, num_heads, num_levels,
                         num_points, generator=gen,
                         dtype=torch.float64).softmax(-1)
    return (value.to(device, dtype), spatial_shapes.to(device),
            level_start_index(spatial_shapes).to(device),
            locations.to(device, dtype), weights.to(device, dtype))


@pytest.fixture
def plugin_scope():
    """Run the test with ``ddetr_plugin`` as mmengine's default scope.

    A Runner built by an earlier test leaves its own scope current, and
    ``MODELS.build`` resolves names in the current scope; tests that build
    our components directly use this fixture so they do not depend on the
    order of the test files.
    """
    with DefaultScope.overwrite_default_scope('ddetr_plugin'):
        yield
