"""Process groups for mmengine's launchers, with and without CUDA.

mmengine 0.10.7's ``init_dist`` binds every process to a GPU
(``torch.cuda.set_device(LOCAL_RANK)``) before creating the process group,
which fails on a CPU build of torch, and its configs hard-code ``nccl``.
:func:`default_backend` picks the backend for the machine and
:func:`init_process_group` uses mmengine's ``init_dist`` wherever CUDA is
available and creates the group directly from torchrun's environment on
machines without it; :func:`destroy_process_group` tears it down before a
tool's process exits.
"""
import datetime
import gc
from typing import Optional

import torch
import torch.distributed as torch_dist


def default_backend() -> str:
    """The ``torch.distributed`` backend for this machine.

    Returns:
        str: ``'nccl'`` when CUDA is available, ``'gloo'`` otherwise.
    """
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def init_process_group(launcher: str,
                       backend: Optional[str] = None,
                       **kwargs) -> None:
    """Create the default process group for one of mmengine's launchers.

    With CUDA: ``mmengine.dist.init_dist(launcher, backend, **kwargs)``
    (every launcher; each process is bound to GPU ``LOCAL_RANK``). Without
    CUDA, the ``pytorch`` launcher (torchrun, ``tools/dist_train.sh``, also
    across nodes) creates the group from the environment torchrun sets
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``).

    Args:
        launcher (str): ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        backend (str, optional): ``torch.distributed`` backend; ``None``
            means :func:`default_backend`.
        **kwargs: ``dist_cfg`` entries passed on to
            ``init_process_group``; ``timeout`` in seconds.

    Raises:
        RuntimeError: ``'slurm'`` or ``'mpi'`` without CUDA (mmengine's
            launchers for them need a GPU per process); the message says to
            use torchrun instead.
        ValueError: An unknown launcher (from mmengine).
    """
    backend = backend or default_backend()
    if torch.cuda.is_available():
        from mmengine.dist import init_dist
        init_dist(launcher, backend=backend, **kwargs)
        return
    if launcher != 'pytorch':
        raise RuntimeError(
            f'launcher {launcher!r} needs CUDA in mmengine 0.10.7 (it binds '
            'each process to a GPU). Without CUDA, start the processes with '
            'torchrun: tools/dist_train.sh CONFIG NUM_PROCS (set NNODES, '
            'NODE_RANK, MASTER_ADDR and PORT for several nodes), e.g. one '
            'srun task per node running it.')
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    torch_dist.init_process_group(backend=backend, **kwargs)


def destroy_process_group() -> None:
    """Tear down the default process group, if there is one.

    The tools call it before the process exits: a gloo group, or work of it
    still held by a DDP model, left to the interpreter's shutdown can abort
    a process whose work is done (``terminate called without an active
    exception``), failing the whole ``torchrun`` job after the last
    checkpoint was written (seen on 2 of about 10 two-process runs).
    mmengine's Runner never destroys the group it creates, and the runner
    (with its DDP model) sits in reference cycles: they are collected
    first, while the interpreter is alive.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()
        torch_dist.destroy_process_group()
