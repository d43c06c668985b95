"""``CPUAmpOptimWrapper``: mmengine's ``AmpOptimWrapper`` that also trains on
CPU (bfloat16 autocast).

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU/MUSA device.
This subclass, registered in the ``ddetr_plugin`` scope under its own name
only (mmengine's ``AmpOptimWrapper`` stays reachable under that name), keeps
mmengine's behaviour wherever CUDA is available (float16 autocast with
dynamic loss scaling by default, ``dtype='bfloat16'`` for bfloat16) and,
without CUDA, runs CPU autocast in bfloat16 without loss scaling: bfloat16
has float32's exponent range, so gradients do not underflow, and torch's CPU
``GradScaler`` would only add work. It is created disabled, so
``scale``/``unscale_``/``step``/``update`` pass through and its state dict
is empty.

Our ``tools/train.py --amp`` selects it: where mmdet's ``tools/train.py``
sets ``optim_wrapper.type = 'AmpOptimWrapper'`` and ``loss_scale =
'dynamic'`` (on a config whose wrapper is ``OptimWrapper``), ours sets
``type = 'CPUAmpOptimWrapper'`` and the same ``loss_scale``.
"""
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from ddetr_plugin.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module(name='CPUAmpOptimWrapper')
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """Mixed-precision optimizer wrapper for CUDA and CPU.

    Args:
        loss_scale (float | str | dict): As for mmengine's wrapper (used with
            CUDA; ignored on CPU, where bfloat16 needs no loss scaling).
        dtype (str | torch.dtype, optional): Autocast dtype. With CUDA:
            ``None`` (float16) or ``'float16'``/``'bfloat16'``. Without
            CUDA: ``None`` or ``'bfloat16'``.
        use_fsdp (bool): As for mmengine's wrapper (CUDA only).
        **kwargs: Arguments of ``OptimWrapper`` (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).

    Raises:
        ValueError: Without CUDA, a ``dtype`` other than bfloat16 (CPU
            autocast supports only bfloat16).
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        if torch.cuda.is_available():
            super().__init__(loss_scale, dtype, use_fsdp, **kwargs)
            return
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(
                f'CPUAmpOptimWrapper: CPU autocast supports only bfloat16, '
                f'got dtype={dtype!r} (no CUDA device is available)')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16
