"""Load mmengine Runner checkpoints with ``torch.load(weights_only=True)``.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, and
mmengine 0.10.7 calls it without the argument (``load_checkpoint``,
``Runner.resume``/``load_checkpoint``, ``init_cfg=dict(type='Pretrained')``).
Model weights load as they are, but a Runner checkpoint also pickles the
message hub and numpy values, which the restricted unpickler refuses.
:func:`register_safe_checkpoint_types` allow-lists exactly the globals such a
checkpoint holds (found by saving real Runner checkpoints and reading
``torch.serialization.get_unsafe_globals_in_checkpoint``), so the safe
default keeps working and a pickled arbitrary callable is still refused with
``pickle.UnpicklingError``.

What a Runner checkpoint (mmengine 0.10.7, numpy 1.26) needs beyond torch's
defaults (``OrderedDict``, ``Counter``, tensors, plain containers):

* ``mmengine.logging.HistoryBuffer`` (``message_hub['log_scalars']``);
* ``mmengine.config.ConfigDict`` (``meta['dataset_meta']`` holds one when
  a config's ``metainfo`` has a nested dict);
* the ``HistoryBuffer`` statistics methods, which pickle as
  ``getattr(HistoryBuffer, 'min')`` etc. ``builtins.getattr`` itself is NOT
  allowed (it would let a file reach any attribute of any object): the name
  ``builtins.getattr`` is bound to :func:`_history_buffer_getattr`, which
  only resolves ``HistoryBuffer.{min,max,current,mean}`` and raises
  ``pickle.UnpicklingError`` for anything else;
* numpy arrays and scalars (history values, ``eta``, ``best_score``):
  ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
  ``numpy.dtype``, ``numpy.core.multiarray.scalar`` and the concrete dtype
  classes the restricted ``BUILD`` step sees: ``Float64DType``,
  ``Int64DType`` (history buffers), ``Float32DType`` (float32 metric
  values). Under numpy 2 the same functions are also registered under their
  numpy-1 names and vice versa, so a file saved with either loads.

A refused file raises :class:`UnsafeCheckpointError` from mmengine's loader
of local files (:func:`load_local_checkpoint`, installed for the ``''``
scheme of ``mmengine.runner.CheckpointLoader``): it names the global, says
that loading it would run code, and gives the command that converts a
trusted old checkpoint once
(:func:`ddetr_plugin.converters.trusted_checkpoint.convert_trusted_checkpoint`,
``tools/model_converters/convert_trusted_checkpoint.py``), instead of
torch's advice to pass ``weights_only=False``.
"""
import os.path as osp
import pickle
import re
from typing import Any, List, Tuple, Union

import numpy as np
import torch

#: HistoryBuffer attributes a checkpoint may reference through ``getattr``.
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
#: numpy dtype classes (``numpy.dtypes``) allowed in checkpoints.
NUMPY_DTYPE_CLASSES = ('Float64DType', 'Int64DType', 'Float32DType')

SafeGlobal = Union[Any, Tuple[Any, str]]


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Restricted stand-in for ``builtins.getattr`` while unpickling.

    Args:
        obj: Must be ``mmengine.logging.HistoryBuffer``.
        name (str): One of :data:`HISTORY_BUFFER_METHODS`.

    Returns:
        The function ``HistoryBuffer.<name>``.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only '
        f'HistoryBuffer.{{{",".join(HISTORY_BUFFER_METHODS)}}} are allowed')


def _numpy_multiarray_globals() -> List[SafeGlobal]:
    """``_reconstruct`` and ``scalar`` under their own and the other numpy
    major version's module path."""
    if int(np.__version__.split('.')[0]) >= 2:
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    out: List[SafeGlobal] = []
    for func in (multiarray._reconstruct, multiarray.scalar):
        out.append(func)
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            if module != func.__module__:
                out.append((func, f'{module}.{func.__name__}'))
    return out


def safe_checkpoint_globals() -> List[SafeGlobal]:
    """The exact globals an mmengine Runner checkpoint needs.

    Returns:
        list: Entries for ``torch.serialization.add_safe_globals``: objects,
        or ``(object, 'module.qualname')`` pairs binding a pickled name to
        an object (used for the restricted ``builtins.getattr`` and numpy
        module aliases). See the module docstring for the list.
    """
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    dtype_classes = [getattr(np.dtypes, name) for name in NUMPY_DTYPE_CLASSES]
    return [
        HistoryBuffer,
        ConfigDict,
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        *dtype_classes,
        *_numpy_multiarray_globals(),
    ]


def register_safe_checkpoint_types() -> List[SafeGlobal]:
    """Allow-list the Runner checkpoint globals for ``weights_only`` loads.

    Calls ``torch.serialization.add_safe_globals`` with
    :func:`safe_checkpoint_globals` and installs :func:`load_local_checkpoint`
    as mmengine's loader of local files; idempotent (the allow-list is a set,
    the loader replaces itself). ``torch.load`` keeps ``weights_only=True``:
    any other global, e.g. a pickled ``os.system`` or a ``__reduce__``
    returning an arbitrary callable, still raises ``pickle.UnpicklingError``
    (:class:`UnsafeCheckpointError` through mmengine).

    Returns:
        list: The entries that were registered.
    """
    from mmengine.runner import CheckpointLoader
    entries = safe_checkpoint_globals()
    torch.serialization.add_safe_globals(entries)
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
    return entries


#: The command that converts a trusted checkpoint, shown in refusals.
CONVERT_COMMAND = ('python tools/model_converters/'
                   'convert_trusted_checkpoint.py {path} CLEAN.pth '
                   '--trust-code')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs a global outside the safe-loading allow-list.

    Subclass of ``pickle.UnpicklingError`` (what ``torch.load`` raises), so
    code catching torch's error still catches it.
    """


def _refused_global(error: Exception) -> str:
    """The ``module.name`` torch's message reports, or a description."""
    found = re.search(r'GLOBAL ([\w.]+)', str(error))
    if found:
        return found.group(1)
    found = re.search(r'asks for (getattr\(.*?\))', str(error))
    return found.group(1) if found else 'a global outside the allow-list'


def explain_refusal(path: str, error: Exception) -> UnsafeCheckpointError:
    """Turn torch's ``weights_only`` refusal into an actionable error.

    Args:
        path (str): The refused checkpoint file.
        error (Exception): ``pickle.UnpicklingError`` from ``torch.load``.

    Returns:
        UnsafeCheckpointError: Its message names ``path`` and the refused
        global, says that loading it would run code from the file, and gives
        the conversion command for trusted files (:data:`CONVERT_COMMAND`).
        It never suggests ``weights_only=False``.
    """
    detail = [line for line in str(error).splitlines()
              if 'GLOBAL' in line or 'getattr(' in line]
    return UnsafeCheckpointError(
        f'refused to load checkpoint {path}: it references '
        f'`{_refused_global(error)}`, which torch\'s safe loading '
        '(weights_only=True) does not allow. Loading it would import and run '
        'code named in the file, so it stays refused. If you trust the file '
        '(you wrote it, or know its source), convert it once into a clean '
        'checkpoint that loads safely:\n    '
        f'{CONVERT_COMMAND.format(path=path)}\n'
        + (f'(torch: {detail[0].strip()})' if detail else ''))


def load_local_checkpoint(filename: str, map_location=None) -> Any:
    """mmengine's loader of local checkpoint files, with safe loading.

    ``mmengine.runner.checkpoint.load_from_local`` (``torch.load`` with the
    ``weights_only=True`` default), plus :func:`explain_refusal` for files
    that need other globals. Used by ``Runner.load_checkpoint``/``resume``,
    ``load_checkpoint`` and ``init_cfg=dict(type='Pretrained')``.

    Args:
        filename (str): Local path (``~`` expanded).
        map_location: As for ``torch.load``.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        UnsafeCheckpointError: The file needs a global outside the
            allow-list of :func:`safe_checkpoint_globals`.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location)
    except pickle.UnpicklingError as error:
        raise explain_refusal(filename, error) from None
