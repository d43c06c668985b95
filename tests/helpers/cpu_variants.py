"""Which CPU kernel variants (``csrc/cpu/cpu_isa.h``) this machine can run,
read from ``/proc/cpuinfo``, independently of torch and of ``cpu_isa.h``.

torch 2.13 honours ``ATEN_CPU_CAPABILITY`` unchecked: asked for avx512 on an
AVX2-only CPU, its own kernels die of SIGILL, so tests ask only for the
variants :func:`variants_this_cpu_runs` lists.
"""
import platform
from pathlib import Path
from typing import List

#: variant names (``ATEN_CPU_CAPABILITY`` values), lowest first
VARIANTS = ('default', 'avx2', 'avx512')
# what each variant's target (cpu_isa.h: x86-64-v3, x86-64-v4) needs, as
# /proc/cpuinfo names it (abm: lzcnt)
_NEEDS = {'avx2': {'avx', 'avx2', 'fma', 'bmi1', 'bmi2', 'f16c', 'movbe',
                   'abm'},
          'avx512': {'avx512f', 'avx512bw', 'avx512cd', 'avx512dq',
                     'avx512vl'}}


def highest_variant() -> str:
    """The highest variant this CPU runs; ``'default'`` off x86-64 Linux."""
    cpuinfo = Path('/proc/cpuinfo')
    if platform.machine() not in ('x86_64', 'AMD64') or \
            not cpuinfo.exists():
        return 'default'
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith('flags'):
            flags = set(line.split(':', 1)[1].split())
            break
    if _NEEDS['avx2'] <= flags:
        return 'avx512' if _NEEDS['avx512'] <= flags else 'avx2'
    return 'default'


def variants_this_cpu_runs() -> List[str]:
    """Every variant up to :func:`highest_variant`, lowest first."""
    return list(VARIANTS[:VARIANTS.index(highest_variant()) + 1])
