"""Tool processes forked from a server that has the heavy libraries loaded.

A fresh ``python tools/train.py`` spends about 9 s of one core importing
torch, mmengine and mmdet (mmdet alone pulls in seaborn and transformers)
before it reads its config: most of the time of a tiny training run. The
tests start many such runs, so each pytest(-xdist) worker keeps one
*tool server*: a Python process of the same interpreter that imports those
third-party libraries once (never ``ddetr_plugin`` or our tools, so a tool
still imports and registers our package itself, as it does for a user) and
then, per request, forks a child that becomes the tool process:

* its own process (its own pid; ``kill -9`` works; its DataLoader workers
  and torchrun are its children), with the requested working folder,
  environment (``os.environ`` replaced; ``PYTHONPATH`` entries prepended to
  ``sys.path``; torch's thread count set from ``OMP_NUM_THREADS``), fresh
  random states (an unseeded run differs from the next, as fresh processes
  do), ``sys.argv`` and ``sys.path[0]`` as ``python script.py args`` sets
  them, and stdout/stderr written to files;
* it runs the script as ``__main__`` (``runpy``), then the ``atexit``
  handlers, and exits with the script's status (1 with the traceback for
  an uncaught exception, as Python does).

``DDETR_TEST_FRESH_PROCESSES=1`` in the environment turns the server off:
every tool then runs in a fresh interpreter (slower, same results). Only
:func:`helpers.tiny_training.run_tool` uses it; the tests that run a tool
under a different interpreter (the installed-wheel tests), under torchrun,
or that need a ``subprocess.Popen`` start fresh interpreters.

The server itself: ``python tool_server.py`` reads length-prefixed pickled
requests from stdin and answers on stdout.
"""
import atexit
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: what the server imports before forking (third-party only)
PRELOAD = ('numpy', 'cv2', 'torch', 'scipy.optimize', 'pycocotools.coco',
           'mmcv.ops', 'mmengine.runner', 'mmdet.apis', 'mmdet.models',
           'mmdet.datasets', 'mmdet.engine', 'mmdet.evaluation',
           'mmdet.visualization')

_HEADER = struct.Struct('<Q')


def _send(stream, message) -> None:
    data = pickle.dumps(message)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream):
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size, ) = _HEADER.unpack(header)
    return pickle.loads(stream.read(size))


def _become_tool(request: dict, channels) -> None:
    """In the forked child: set the process up as ``python script args``
    would, run the script, exit with its status (never returns)."""
    code = 1
    try:
        for fd in channels:
            os.close(fd)
        if request['new_session']:
            os.setsid()
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        out = os.open(request['stdout'], flags)
        os.dup2(out, 1)
        if request['stderr'] != request['stdout']:
            out = os.open(request['stderr'], flags)
        os.dup2(out, 2)
        script = request['argv'][0]
        sys.argv = list(request['argv'])
        extra = [p for p in request['env'].get('PYTHONPATH', '').split(
            os.pathsep) if p and p not in sys.path]
        sys.path[:1] = [os.path.dirname(os.path.abspath(script))] + extra
        import random

        import numpy as np
        import torch
        random.seed()
        np.random.seed()
        torch.seed()
        torch.set_num_threads(
            int(request['env'].get('OMP_NUM_THREADS') or os.cpu_count()))
        import runpy
        try:
            runpy.run_path(script, run_name='__main__')
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    """The server's loop: ``start`` forks a tool and answers its pid,
    ``reap`` waits for it and answers its return code (negative: the
    signal that ended it, as ``subprocess`` reports it)."""
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    # the channels move off 0/1 so that a child's stdio can take them
    requests = os.fdopen(os.dup(0), 'rb')
    answers = os.fdopen(os.dup(1), 'wb')
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    channels = (requests.fileno(), answers.fileno())
    _send(answers, 'ready')
    while True:
        request = _receive(requests)
        if request is None:
            return
        if request['kind'] == 'start':
            pid = os.fork()
            if pid == 0:
                _become_tool(request, channels)
            _send(answers, pid)
        elif request['kind'] == 'reap':
            _, status = os.waitpid(request['pid'], 0)
            _send(answers, os.waitstatus_to_exitcode(status))


class ToolServer:
    """The test process's handle on its tool server (started on first
    use, stopped when the test process exits)."""

    _instance = None

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env)
        if _receive(self.proc.stdout) != 'ready':
            raise RuntimeError('the tool server did not start: '
                               f'exit code {self.proc.wait()}')
        atexit.register(self.close)

    @classmethod
    def get(cls, env: dict) -> 'ToolServer':
        if cls._instance is None or cls._instance.proc.poll() is not None:
            cls._instance = ToolServer(env)
        return cls._instance

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def start(self, argv, cwd, env, stdout, stderr=None,
              new_session=False) -> 'ToolProcess':
        """Start ``python argv[0] argv[1:]`` in a forked child, its
        stdout written to the file ``stdout`` and its stderr to ``stderr``
        (the same file when None); like ``subprocess.Popen``."""
        _send(self.proc.stdin, dict(
            kind='start', argv=[str(a) for a in argv], cwd=str(cwd),
            env=dict(env), stdout=str(stdout),
            stderr=str(stderr or stdout), new_session=new_session))
        return ToolProcess(self, _receive(self.proc.stdout),
                           [sys.executable] + [str(a) for a in argv])

    def run(self, argv, cwd, env, timeout) -> subprocess.CompletedProcess:
        """Run ``python argv[0] argv[1:]`` in a forked child; like
        ``subprocess.run(..., capture_output=True, text=True)``.

        Raises:
            subprocess.TimeoutExpired: it ran past ``timeout`` seconds (it
                is killed first).
        """
        with tempfile.TemporaryDirectory(prefix='tool_') as folder:
            stdout, stderr = Path(folder, 'stdout'), Path(folder, 'stderr')
            proc = self.start(argv, cwd, env, stdout, stderr)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, 9)
                proc.wait()
                raise subprocess.TimeoutExpired(
                    proc.args, timeout, stdout.read_text(errors='replace'),
                    stderr.read_text(errors='replace'))
            return subprocess.CompletedProcess(
                proc.args, proc.returncode,
                stdout.read_text(errors='replace'),
                stderr.read_text(errors='replace'))

    def reap(self, pid: int) -> int:
        """Wait for the ended child ``pid``; its return code."""
        _send(self.proc.stdin, dict(kind='reap', pid=pid))
        return _receive(self.proc.stdout)


class ToolProcess:
    """A tool forked by the server, with ``subprocess.Popen``'s ``pid``,
    ``args``, ``returncode``, ``poll`` and ``wait``."""

    def __init__(self, server: ToolServer, pid: int, args: list):
        self.server, self.pid, self.args = server, pid, args
        self.returncode = None

    def poll(self):
        from helpers.processes import alive
        if self.returncode is None and not alive(self.pid):
            self.returncode = self.server.reap(self.pid)
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.05)
        return self.returncode


def enabled() -> bool:
    """False where ``DDETR_TEST_FRESH_PROCESSES=1`` asks for fresh
    interpreters."""
    return os.environ.get('DDETR_TEST_FRESH_PROCESSES', '') != '1'


if __name__ == '__main__':
    serve()
