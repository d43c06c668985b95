"""ddetr_plugin as a user gets it: a wheel built from the repository,
installed into a fresh virtual environment that reuses the test
environment's packages (torch, mmcv built from source, mmdet, ...), so
nothing is downloaded or rebuilt but our own package.

The fresh environment is made with ``venv --without-pip``; a ``.pth`` line
in its site-packages appends the test environment's site-packages to
``sys.path`` after its own. Python reads the ``.pth`` files of its own
site-packages only, so the editable install of the test environment (its
``__editable__`` finder) is not loaded there, and the wheel's
``ddetr_plugin`` and its ``.dist-info`` come first on ``sys.path``. Used by
``tests/test_packaging.py``.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from .paths import REPO_ROOT


def build_wheel(out_dir: Path, timeout: float = 900) -> Path:
    """``pip wheel`` of the repository, against the test environment's
    torch (no build isolation, no dependencies).

    Args:
        out_dir (Path): where the ``.whl`` is written.
        timeout (float): seconds for the build (it compiles the op).

    Returns:
        Path: the wheel.

    The package files of an earlier build (``build/lib.*``) are removed
    first, so the wheel holds what this build wrote; the object files of
    the op (``build/temp.*``, shared with ``make install``'s editable
    build) are kept for ninja to reuse.

    Raises:
        AssertionError: the build failed (its output's end in the message)
            or wrote not exactly one wheel.
    """
    for stale in (REPO_ROOT / 'build').glob('lib.*'):
        shutil.rmtree(stale)
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--use-pep517',
         '--no-build-isolation', '--disable-pip-version-check', '-w',
         str(out_dir), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, MAX_JOBS=str(os.cpu_count() or 1)))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    wheels = sorted(out_dir.glob('ddetr_plugin-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def fresh_venv(path: Path) -> Path:
    """A new virtual environment at ``path`` without pip, which sees the
    test environment's packages after its own.

    Returns:
        Path: its ``python``.
    """
    venv.create(path, with_pip=False)
    python = path / 'bin' / 'python'
    site_packages = Path(subprocess.check_output(
        [str(python), '-c',
         'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        text=True).strip())
    (site_packages / '_test_environment.pth').write_text(
        sysconfig.get_paths()['purelib'] + '\n')
    return python


def install_wheel(python: Path, wheel: Path) -> None:
    """``pip install`` the wheel into ``python``'s environment: pip of the
    test environment, run by ``python`` (so it installs into that
    environment), without dependencies and ignoring the test
    environment's editable install of the same package."""
    proc = subprocess.run(
        [str(python), '-m', 'pip', 'install', '--no-deps', '--no-index',
         '--ignore-installed', '--disable-pip-version-check', str(wheel)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def user_env(threads: int = 1) -> dict:
    """Environment of a user's process: no ``PYTHONPATH`` (nothing of the
    repository importable), ``threads`` OpenMP threads."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = str(threads)
    return env


def run_user(python: Path, args: list, cwd: Path, timeout: float = 300,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python args...`` in ``cwd`` with :func:`user_env`.

    Raises:
        AssertionError: ``check`` and a non-zero exit (output in the
            message).
    """
    proc = subprocess.run([str(python), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=user_env())
    if check:
        assert proc.returncode == 0, (proc.stdout[-4000:] +
                                      proc.stderr[-6000:])
    return proc
