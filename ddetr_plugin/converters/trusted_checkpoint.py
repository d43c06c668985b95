"""Rewrite a trusted checkpoint that torch's safe loading refuses as one it
accepts (``tools/model_converters/convert_trusted_checkpoint.py``).

torch >= 2.6 loads with ``weights_only=True`` and refuses a file that
pickles other Python objects (e.g. an ``argparse.Namespace`` or an old mmcv
``Config`` in its meta), see :mod:`ddetr_plugin.engine.checkpoint`, whose
refusal message points here. :func:`convert_trusted_checkpoint` loads such
a file once, unsafely, and keeps what safe loading accepts.
"""
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, List

import numpy as np
import torch

from ddetr_plugin.utils.atomic_file import commit_file, temporary_path


def _clean(obj: Any, where: str, dropped: List[str]) -> Any:
    """``obj`` with every part safe loading refuses removed (see
    :func:`convert_trusted_checkpoint`)."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, (torch.Tensor, HistoryBuffer, str, bytes, bool, int,
                        float, complex, type(None), torch.dtype,
                        torch.device, torch.Size)):
        return obj.detach() if isinstance(obj, torch.Tensor) else obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj) if obj.dtype.kind in 'biufc' else \
            _clean(obj.tolist(), where, dropped)
    if isinstance(obj, dict):
        kind = (ConfigDict if isinstance(obj, ConfigDict) else
                type(obj) if type(obj) in (dict, OrderedDict) else dict)
        return kind({
            _clean(key, f'{where} key', dropped):
            _clean(value, f'{where}[{key!r}]', dropped)
            for key, value in obj.items()
        })
    if isinstance(obj, (list, tuple, set)):
        items = [_clean(value, f'{where}[{i}]', dropped)
                 for i, value in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    dropped.append(f'{where} ({type(obj).__module__}.'
                   f'{type(obj).__qualname__})')
    return None


def convert_trusted_checkpoint(src: str, dst: str) -> Dict[str, Any]:
    """Rewrite a trusted checkpoint that safe loading refuses as a clean one.

    Loads ``src`` ONCE with ``torch.load(weights_only=False)``, which runs
    any code the file names: call it only for files you trust (the CLI asks
    for ``--trust-code``). Keeps tensors (detached), numbers, strings,
    ``None``, dtypes, devices, mmengine ``HistoryBuffer`` and ``ConfigDict``
    and containers of these (numpy scalars become Python numbers, numeric
    numpy arrays tensors, sets and namedtuples tuples); replaces every other
    object by ``None`` and lists it. The result is written atomically to
    ``dst`` and loaded back with ``weights_only=True`` (with the allow-list
    that importing ``ddetr_plugin`` registers, see
    :func:`ddetr_plugin.engine.checkpoint.register_safe_checkpoint_types`)
    before this returns.

    Args:
        src (str): The trusted checkpoint.
        dst (str): The clean checkpoint to write (may not be ``src``).

    Returns:
        dict: ``{'checkpoint': <the clean object>, 'dropped': [str]}``, where
        each dropped entry names its place in the file and its type.

    Raises:
        FileNotFoundError: ``src`` is not a file.
        ValueError: ``dst`` is ``src``.
    """
    if not osp.isfile(src):
        raise FileNotFoundError(f'{src} can not be found.')
    if osp.realpath(src) == osp.realpath(dst):
        raise ValueError(f'write the clean checkpoint to a new file, not the '
                         f'source {src}')
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    dropped: List[str] = []
    clean = _clean(checkpoint, 'checkpoint', dropped)
    temporary = temporary_path(dst)
    torch.save(clean, temporary)
    torch.load(temporary, map_location='cpu')  # raises if still unsafe
    commit_file(temporary, dst)
    return dict(checkpoint=clean, dropped=dropped)
