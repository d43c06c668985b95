"""Build and install ddetr_plugin with its compiled operator library ``_C``.

CPU kernels are always built. CUDA kernels (``csrc/cuda/*.cu``) are built when
torch is a CUDA build and a CUDA toolkit is found, or when ``FORCE_CUDA=1``.
Install with ``pip install -e . --no-build-isolation`` so the extension is built
against the torch already in the environment.
"""
import os
from pathlib import Path

from setuptools import find_packages, setup
from torch.utils.cpp_extension import (CUDA_HOME, BuildExtension, CppExtension,
                                       CUDAExtension)
import torch

ROOT = Path(__file__).parent


def read_version():
    namespace = {}
    exec((ROOT / 'ddetr_plugin' / 'version.py').read_text(), namespace)
    return namespace['__version__']


def make_extension():
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'csrc').glob('*.cpp'))
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'csrc' / 'cpu').glob('*.cpp'))
    cuda_sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'csrc' / 'cuda').glob('*.cu'))
    with_cuda = os.environ.get('FORCE_CUDA') == '1' or (
        torch.version.cuda is not None and CUDA_HOME is not None)
    # -fno-trapping-math: compares may be if-converted, so the CPU kernel's
    # branch-free loops vectorise (no code here reads floating-point flags)
    cxx_flags = ['-O3', '-fopenmp', '-fno-trapping-math']
    if with_cuda and cuda_sources:
        return CUDAExtension(
            'ddetr_plugin._C',
            sources + cuda_sources,
            extra_compile_args={
                'cxx': cxx_flags,
                'nvcc': ['-O3'],
            },
            extra_link_args=['-fopenmp'])
    return CppExtension(
        'ddetr_plugin._C',
        sources,
        extra_compile_args={'cxx': cxx_flags},
        extra_link_args=['-fopenmp'])


setup(
    name='ddetr_plugin',
    version=read_version(),
    description='Deformable DETR (arXiv 2010.04159) as an MMDetection 3.x '
    'plugin with a fast multi-scale deformable attention op',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['ddetr_plugin', 'ddetr_plugin.*']),
    ext_modules=[make_extension()],
    cmdclass={'build_ext': BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
