"""A real MLflow tracking server for the tests: ``mlflow server`` as a
subprocess (its own session, so that it and the uvicorn worker it starts
are killed together, :func:`helpers.processes.kill_tree`), with a SQLite
backend store and an artifact root in a temp folder and a free port, up
once its ``/health`` answers. Used by ``tests/test_mlflow_vis_backend.py``.
"""
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .paths import missing_in_ci_fails
from .processes import kill_tree
from .tiny_training import free_port


def require_mlflow() -> None:
    """Fail the calling test in CI, skip it elsewhere, when the pinned
    ``mlflow`` (requirements.txt) is not installed."""
    try:
        import mlflow  # noqa: F401
    except ImportError as error:
        missing_in_ci_fails(f'mlflow (requirements.txt) is not installed: '
                            f'{error}')


class MLflowServer:
    """``mlflow server`` on 127.0.0.1, stopped on leaving the ``with``.

    Args:
        folder (Path): Holds ``mlflow.db`` (the backend store),
            ``artifacts/`` (the artifact root, served through the server)
            and ``server.log``.
        start_timeout (float): Seconds to wait for ``/health``.

    Attributes:
        uri (str): ``http://127.0.0.1:<port>``.
        backend_store_uri (str): ``sqlite:///<folder>/mlflow.db``, which
            ``MlflowClient`` can also read directly once the server is gone.
    """

    def __init__(self, folder: Path, start_timeout: float = 180) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.uri = f'http://127.0.0.1:{self.port}'
        self.backend_store_uri = f'sqlite:///{self.folder / "mlflow.db"}'
        self.log = self.folder / 'server.log'
        self.start_timeout = start_timeout
        self.proc = None

    def __enter__(self) -> 'MLflowServer':
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until ``/health`` answers 200; after
        :meth:`stop`, a new server on the same port and store.

        Raises:
            AssertionError: It exited, or did not answer in time (with the
                end of its log).
        """
        command = [
            sys.executable, '-m', 'mlflow', 'server',
            '--host', '127.0.0.1', '--port', str(self.port),
            '--workers', '1',
            '--backend-store-uri', self.backend_store_uri,
            '--artifacts-destination', str(self.folder / 'artifacts')
        ]
        # one process serving requests: no background job runner
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION='false',
                   OMP_NUM_THREADS='1')
        with open(self.log, 'a') as log:
            self.proc = subprocess.Popen(
                command, cwd=self.folder, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.proc.poll() is None, (
                f'mlflow server exited with {self.proc.returncode}:\n' +
                self.log.read_text()[-4000:])
            try:
                with urllib.request.urlopen(self.uri + '/health',
                                            timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f'mlflow server did not answer in {self.start_timeout} '
                    's:\n' + self.log.read_text()[-4000:])
            time.sleep(0.25)

    def stop(self) -> None:
        """Kill the server and its worker (SIGKILL, as a crash): the
        process tree, then what is left of the session's process group
        (the worker, if the server itself already ended)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kill_tree(self.proc)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
