"""Fixtures of the test suite; the helpers are in the ``helpers`` package
(``from helpers.paths import REPO_ROOT``), importable because pytest puts
``tests/`` on ``sys.path`` for the test modules (rootdir ``conftest.py``,
``prepend`` import mode)."""
import pytest
from mmengine.registry import DefaultScope


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
