"""Helpers every layer may use; they import nothing of ddetr_plugin.

* :mod:`.atomic_file`: crash-safe file writes (a file is absent or complete
  under its name), used by the Runner's checkpoints, the checkpoint hook and
  the trusted-checkpoint converter.
"""
from .atomic_file import commit_file, temporary_path, write_text_atomically

__all__ = ['commit_file', 'temporary_path', 'write_text_atomically']
