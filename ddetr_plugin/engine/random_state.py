"""The state of every random number generator a training step draws from.

A resumed run repeats the uninterrupted one only if it continues the same
random streams: torch's CPU generator (dropout, ``randperm``, the seed a
``DataLoader`` iterator draws for its workers), CUDA's generators, numpy's
global generator and Python's ``random`` (mmcv/mmdet transforms such as
``RandomFlip``). mmengine 0.10.7 saves only the seed, so a resumed run
restarts these streams from the seed. :func:`capture_random_state` and
:func:`restore_random_state` save and restore all of them in a form that
torch's safe ``weights_only`` loading accepts (tensors, ints, floats,
strings, lists, tuples). The sampler's epoch is not here: mmengine's
``DefaultSampler`` seeds its shuffle with ``seed + epoch``, and
``DistSamplerSeedHook`` sets the epoch from the resumed counter.
"""
import random
from typing import Any, Dict

import numpy as np
import torch


def capture_random_state() -> Dict[str, Any]:
    """The current state of the torch, CUDA, numpy and Python generators.

    Returns:
        dict: ``torch`` (uint8 CPU tensor), ``cuda`` (list of uint8 CPU
        tensors, one per visible GPU; empty without initialised CUDA),
        ``numpy`` (``('MT19937', list of 624 ints, pos, has_gauss, gauss)``)
        and ``python`` (``random.getstate()``).
    """
    name, keys, position, has_gauss, gauss = np.random.get_state()
    cuda = (torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized() else
            [])
    return dict(
        torch=torch.get_rng_state(),
        cuda=cuda,
        numpy=(name, keys.tolist(), position, has_gauss, gauss),
        python=random.getstate())


def restore_random_state(state: Dict[str, Any]) -> None:
    """Set every generator to a state from :func:`capture_random_state`.

    The CUDA generators are restored only when CUDA is available and the
    state holds one per visible GPU.

    Args:
        state (dict): As returned by :func:`capture_random_state`.

    Raises:
        KeyError: ``state`` lacks ``torch``, ``numpy`` or ``python``.
    """
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda', [])
    if cuda and torch.cuda.is_available() and \
            len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, position, has_gauss, gauss = state['numpy']
    np.random.set_state(
        (name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
