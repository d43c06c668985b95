"""Which instruction-set variant the CPU kernels run (``csrc/cpu/cpu_isa.h``).

Each CPU kernel (MSDA forward and backward, counter dropout) is compiled for
the baseline x86-64, AVX2 and AVX-512, and picks one by torch's CPU
capability (``torch.backends.cpu.get_cpu_capability()``: the CPU's features,
lowered with ``ATEN_CPU_CAPABILITY=avx2`` or ``default``). One decision in
C++ serves every kernel; these functions read it, and the variant that
actually ran, so tests can assert it.
"""
import torch

from ddetr_plugin import _C  # noqa: F401  (registers the operator library)


def cpu_kernel_variant() -> str:
    """The variant the CPU kernels dispatch to in this process.

    Returns:
        str: ``'avx512'``, ``'avx2'`` or ``'default'`` (the names
        ``ATEN_CPU_CAPABILITY`` takes; ``'default'`` also off x86-64).
    """
    return torch.ops.ddetr_plugin.cpu_kernel_variant()


def last_cpu_kernel_variant(reset: bool = False) -> str:
    """The variant a CPU kernel last ran with, noted by the variant's own
    code when it runs (so a dispatch that calls the wrong one shows here).

    Args:
        reset (bool): forget it once read, so the next call reports only
            kernels run in between (``''`` if none did).

    Returns:
        str: ``'avx512'``, ``'avx2'``, ``'default'``, or ``''`` when no CPU
        kernel has run in this process (since the last reset).
    """
    return torch.ops.ddetr_plugin.last_cpu_kernel_variant(reset)
