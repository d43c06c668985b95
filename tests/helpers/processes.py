"""Process trees of the tool subprocesses: find, kill, wait (no orphans).

torchrun (``tools/dist_train.sh``) starts each worker in a session of its
own (``start_new_session=True`` in torch's ``SubprocessHandler``), so
SIGKILL to torchrun's process group leaves the workers running, adopted by
init. :func:`kill_tree` kills torchrun's group and every descendant's.
Used by ``tests/test_distributed.py``.
"""
import os
import signal
import subprocess
import time
from pathlib import Path


def process_tree(pid: int) -> list:
    """``pid`` and its living descendants (from ``/proc``), parents first.

    Args:
        pid (int): The root process.

    Returns:
        list[int]: ``pid`` first, then its children, grandchildren, ...
    """
    children = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            ppid = int(stat.read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop(0))
        todo.extend(children.get(tree[-1], []))
    return tree


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1]
    except OSError:
        return False
    return state.split()[0] not in ('Z', 'X')


def kill_tree(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL ``proc`` (e.g. torchrun), its process group and the process
    group of every descendant, then wait until none of them runs.

    ``proc`` is stopped (SIGSTOP) first so that it starts no new child
    between the scan of its descendants and the kill. Never signals the
    caller's own process group.

    Args:
        proc (subprocess.Popen): A child of this process, best started
            with ``start_new_session=True``.
        timeout (float): Seconds to wait for the processes to end.

    Raises:
        AssertionError: Some process still runs after ``timeout``.
    """
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGSTOP)
    tree = process_tree(proc.pid)
    groups = []
    for pid in tree:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            continue
        if group != os.getpgrp() and group not in groups:
            groups.append(group)
    for pid in tree:  # a descendant in the caller's group: by pid
        try:
            if os.getpgid(pid) == os.getpgrp():
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in tree):
        assert time.monotonic() < deadline, f'{tree} survived SIGKILL'
        time.sleep(0.05)


def wait_all(procs: list, logs: list, timeout: float) -> list:
    """Wait for every process of ``procs`` (which may wait for each other,
    as the nodes of one torchrun job do). On a timeout, or as soon as one
    fails, kill every tree (:func:`kill_tree`).

    Args:
        procs (list[subprocess.Popen]): The processes.
        logs (list[Path]): Their output files, in the same order.
        timeout (float): Seconds for all of them together.

    Returns:
        list[str]: The outputs.

    Raises:
        AssertionError: A timeout, or a process exited with a non-zero
            status (its output's end in the message).
    """
    deadline = time.monotonic() + timeout
    try:
        while any(proc.poll() is None for proc in procs):
            if any(proc.poll() not in (None, 0) for proc in procs):
                break
            assert time.monotonic() < deadline, (
                f'timed out after {timeout} s:\n' +
                '\n'.join(Path(log).read_text()[-3000:] for log in logs))
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_tree(proc)
    outputs = [Path(log).read_text() for log in logs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-8000:]
    return outputs
