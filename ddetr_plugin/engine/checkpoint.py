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
"""
import pickle
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
    :func:`safe_checkpoint_globals`; idempotent (the allow-list is a set).
    ``torch.load`` keeps ``weights_only=True``: any other global, e.g. a
    pickled ``os.system`` or a ``__reduce__`` returning an arbitrary
    callable, still raises ``pickle.UnpicklingError``.

    Returns:
        list: The entries that were registered.
    """
    entries = safe_checkpoint_globals()
    torch.serialization.add_safe_globals(entries)
    return entries
