"""Helpers every layer may use; they import nothing of ddetr_plugin.

* :mod:`.atomic_file`: crash-safe file writes (a file is absent or complete
  under its name), used by the Runner's checkpoints, the checkpoint hook and
  the trusted-checkpoint converter.
* :mod:`.package_configs`: ``ddetr_plugin::<path>`` configs (the package's
  ``.mim/configs``), registered with mmengine; :func:`load_config` with
  clear errors for a wrong path, used by ``tools/train.py`` and
  ``tools/test.py``.
"""
from .atomic_file import commit_file, temporary_path, write_text_atomically
from .package_configs import (ConfigNotFoundError, config_dir, load_config,
                              register_config_scope, resolve_config)

__all__ = [
    'commit_file', 'temporary_path', 'write_text_atomically',
    'ConfigNotFoundError', 'config_dir', 'load_config',
    'register_config_scope', 'resolve_config'
]
