"""Crash-safe file writes: a file is either absent or complete under its name.

A writer writes :func:`temporary_path` (a hidden file in the same folder,
so the rename stays on one file system), then :func:`commit_file` flushes it
to disk (``fsync``), renames it over the final name (``os.replace``, atomic
on POSIX and Windows) and syncs the folder so the rename itself survives a
power cut. A process killed at any moment leaves the previous file (or none)
under the final name, plus at most a stale temporary file that the next
write of the same name replaces.
"""
import os
import os.path as osp


def temporary_path(path: str) -> str:
    """The temporary file :func:`commit_file` later renames to ``path``.

    Args:
        path (str): The final file name.

    Returns:
        str: ``<folder of path>/.<name>.tmp``.
    """
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder, f'.{name}.tmp')


def _fsync_folder(folder: str) -> None:
    """Persist a rename in ``folder`` (no-op where folders cannot be
    opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def commit_file(temporary: str, path: str) -> None:
    """Flush ``temporary`` to disk and atomically rename it to ``path``.

    Args:
        temporary (str): A completely written file in ``path``'s folder
            (normally :func:`temporary_path` of ``path``).
        path (str): The final name; an existing file there is replaced.

    Raises:
        FileNotFoundError: ``temporary`` does not exist.
    """
    with open(temporary, 'rb+') as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_folder(osp.dirname(osp.abspath(path)))


def write_text_atomically(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so readers never see a part of it.

    Args:
        path (str): The file to create or replace.
        text (str): Its new content.
    """
    temporary = temporary_path(path)
    with open(temporary, 'w', encoding='utf-8') as file:
        file.write(text)
    commit_file(temporary, path)
