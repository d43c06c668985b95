"""Fixtures of the test suite; the helpers are in the ``helpers`` package
(``from helpers.paths import REPO_ROOT``), importable because pytest puts
``tests/`` on ``sys.path`` for the test modules (rootdir ``conftest.py``,
``prepend`` import mode)."""
import os

import pytest
import torch
from helpers.tiny_training import bccd_annotations
from mmengine.registry import DefaultScope


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``), each worker takes
    its share of the cores for torch's own threads, so that the workers do
    not oversubscribe the machine (the tools the tests start set their own
    thread count, see ``helpers.tiny_training.tool_env``)."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """The longest tests first: the ``xdist_group`` ones (trainings that
    share a fixture), then the other ``slow`` ones, then the rest, each in
    file order. Under pytest-xdist the long runs then start at once on
    every worker and the short tests fill the end, instead of one worker
    finishing a long group alone (``make test``: 600 s in file order, 555 s
    so, on 2 cores)."""
    def rank(item):
        if item.get_closest_marker('xdist_group') is not None:
            return 0
        return 1 if item.get_closest_marker('slow') is not None else 2
    items.sort(key=rank)


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


@pytest.fixture(scope='module')
def bccd_first_4(tmp_path_factory):
    """COCO json of the first 4 real BCCD training images (the shipped
    configs' short training runs)."""
    return bccd_annotations(tmp_path_factory.mktemp('bccd'), 4)
