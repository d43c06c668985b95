"""Build and install ddetr_plugin with its compiled operator library ``_C``.

CPU kernels are always built. CUDA kernels (``csrc/cuda/*.cu``) are built when
torch is a CUDA build and a CUDA toolkit is found, or when ``FORCE_CUDA=1``.
The extension is compiled against the torch already in the environment, so
build without pip's isolated build environment::

    pip install --no-build-isolation .       # a regular install (a wheel)
    pip install --no-build-isolation -e .    # editable (make install)

Like mmdet, the package carries its configs and tools in ``ddetr_plugin/.mim``
(``configs/``, ``tools/``, ``model-index.yml``), where mmengine resolves
``ddetr_plugin::<folder>/<config>.py`` and ``mim train ddetr_plugin`` finds
the training script: a regular install copies them into the wheel, an
editable install links ``ddetr_plugin/.mim/*`` to the repository's own
folders (git-ignored), see :class:`BuildPyWithMim`. docs/packaging.md.
"""
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

try:
    import torch
    from torch.utils.cpp_extension import (CUDA_HOME, BuildExtension,
                                           CppExtension, CUDAExtension)
except ImportError as error:  # pip's isolated build environment has no torch
    raise SystemExit(
        f'ddetr_plugin compiles its operator against the installed torch, '
        f'which could not be imported ({error}). Install torch first, then '
        f'build without build isolation: pip install --no-build-isolation .')

ROOT = Path(__file__).resolve().parent
PACKAGE = 'ddetr_plugin'
#: what ``ddetr_plugin/.mim`` holds, as mmdet's ``.mim``: repository paths
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')
#: never copied into ``.mim``
MIM_IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc', '*.pyo')


def read_version():
    namespace = {}
    exec((ROOT / PACKAGE / 'version.py').read_text(), namespace)
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
            f'{PACKAGE}._C',
            sources + cuda_sources,
            extra_compile_args={
                'cxx': cxx_flags,
                'nvcc': ['-O3'],
            },
            extra_link_args=['-fopenmp'])
    return CppExtension(
        f'{PACKAGE}._C',
        sources,
        extra_compile_args={'cxx': cxx_flags},
        extra_link_args=['-fopenmp'])


def copy_mim(target: Path) -> list:
    """Copy :data:`MIM_ITEMS` into ``target`` (replacing what was there).

    Returns:
        list[str]: every file written, for ``build_py.get_outputs``.
    """
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in MIM_ITEMS:
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, target / item, ignore=MIM_IGNORE)
        else:
            shutil.copy2(source, target / item)
    return [str(p) for p in sorted(target.rglob('*')) if p.is_file()]


def link_mim(target: Path) -> None:
    """Link each of :data:`MIM_ITEMS` into ``target`` (the package's
    ``.mim`` in the source tree) with a relative symlink, so that edits of
    ``configs/`` and ``tools/`` show at once; copies where symlinks fail
    (Windows without the privilege)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    target.mkdir(exist_ok=True)
    for item in MIM_ITEMS:
        link = target / item
        relative = os.path.relpath(ROOT / item, target)
        if link.is_symlink() and os.readlink(link) == relative:
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        try:
            link.symlink_to(relative,
                            target_is_directory=(ROOT / item).is_dir())
        except OSError:
            if (ROOT / item).is_dir():
                shutil.copytree(ROOT / item, link, ignore=MIM_IGNORE)
            else:
                shutil.copy2(ROOT / item, link)


class BuildExtSharedTemp(BuildExtension.with_options(use_ninja=True)):
    """torch's ``BuildExtension`` (ninja) compiling into the repository's
    ``build/temp.<platform>-<python>`` for every kind of build.

    setuptools' editable build compiles in a temporary folder of its own;
    with one folder for editable and wheel builds, ninja reuses the object
    files of ``make install`` when a wheel is built from the same sources
    and flags (tests/test_packaging.py builds one), and recompiles what
    changed.
    """

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = str(
            ROOT / 'build' /
            f'temp.{sysconfig.get_platform()}-{sys.implementation.cache_tag}')


class BuildPyWithMim(build_py):
    """``build_py`` that also provides ``ddetr_plugin/.mim``.

    A wheel build (``pip install .``, ``pip wheel``) copies
    :data:`MIM_ITEMS` into the build folder's ``ddetr_plugin/.mim``, so
    they are installed as package files; an editable build
    (``pip install -e .``, setuptools' ``editable_wheel``, where
    ``editable_mode`` is set) links them into the source tree's
    ``ddetr_plugin/.mim`` instead. mmdet's ``setup.py`` does the same from
    ``sys.argv`` (``add_mim_extension``).
    """

    def run(self):
        super().run()
        if self.editable_mode:
            link_mim(ROOT / PACKAGE / '.mim')
        else:
            self._mim_outputs = copy_mim(
                Path(self.build_lib) / PACKAGE / '.mim')

    def get_outputs(self, include_bytecode=True):
        return (super().get_outputs(include_bytecode) +
                getattr(self, '_mim_outputs', []))


def requirements_with_ranges():
    """What ``pip install ddetr_plugin`` needs, as version ranges.

    The lower bounds are the oldest versions with the APIs the code uses
    (torch 2.4: ``torch.library.register_fake``/``register_autograd``;
    mmdet 3.3's components we subclass), the upper bounds the releases we
    have not tested past (mmdet 3.3 itself refuses mmcv >= 2.2). The exact
    versions that ``make install`` and CI test are the pins of
    ``requirements.txt``.
    """
    return [
        'torch>=2.4',
        'numpy>=1.23,<2',  # mmdet 3.3 / mmengine 0.10 predate numpy 2
        'mmengine>=0.10.0,<1.0.0',
        'mmcv>=2.0.0,<2.2.0',
        'mmdet>=3.3.0,<3.4.0',
        'pycocotools>=2.0.7',
        'scipy>=1.10',
        # mmengine's `pkg::` configs and openmim import pkg_resources,
        # which setuptools 82 removed
        'setuptools>=77.0.3,<82',
    ]


EXTRAS = {
    # tools/deployment/export_onnx.py, tools/infer.py --backend onnxruntime
    'onnx': ['onnx>=1.17', 'onnxscript>=0.2', 'onnxruntime>=1.20'],
    # Hugging Face .safetensors checkpoints
    # (tools/model_converters/hf_to_ddetr.py)
    'hf': ['safetensors>=0.4'],
    # ResilientMLflowVisBackend in a config's vis_backends
    # (configs/_base_/runtime/mlflow.py)
    'mlflow': ['mlflow>=2.0'],
    # mmdet's own analysis tools on our configs (docs/packaging.md)
    'analysis': ['seaborn>=0.13', 'psutil>=5.9'],
    # mim train / mim test ddetr_plugin CONFIG
    'mim': ['openmim>=0.3.9'],
}
EXTRAS['tests'] = sorted({
    'pytest>=8', 'pytest-xdist>=3', 'transformers>=4.40',
    *EXTRAS['onnx'], *EXTRAS['hf'], *EXTRAS['analysis'], *EXTRAS['mim'],
    *EXTRAS['mlflow']})

setup(
    name=PACKAGE,
    version=read_version(),
    description='Deformable DETR (arXiv 2010.04159) as an MMDetection 3.x '
    'plugin with a fast multi-scale deformable attention op',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    install_requires=requirements_with_ranges(),
    extras_require=EXTRAS,
    ext_modules=[make_extension()],
    cmdclass={
        'build_ext': BuildExtSharedTemp,
        'build_py': BuildPyWithMim,
    },
    zip_safe=False,
)
