"""ddetr_plugin used from a user's own project, the mmdet way (setup.py):
a wheel built from the repository and installed into a fresh virtual
environment (``helpers.installed_package``) carries the compiled op, the
configs and the tools (``ddetr_plugin/.mim``), and from a directory outside
the repository a config inheriting ``ddetr_plugin::`` trains with ``mim
train ddetr_plugin``, is evaluated with ``mim test ddetr_plugin`` and is
exported to ONNX (our tools from the package's ``.mim/tools``).

The editable install of the test environment (``make install``) is
checked too: its ``ddetr_plugin/.mim`` links the repository's folders, and
both kinds of install are git-ignored."""
import email
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from helpers.installed_package import (build_wheel, fresh_venv,
                                       install_wheel, run_user)
from helpers.paths import REPO_ROOT, missing_in_ci_fails, shared_data_dir
from helpers.tiny_training import (BCCD_PACKAGE_CONFIG, bccd_annotations,
                                   write_tiny_config)

import ddetr_plugin
from ddetr_plugin.utils.package_configs import config_dir, package_dir

#: what every install's ``.mim`` holds, as repository paths
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')

#: the README's "use from your project" config: 3 lines
THREE_LINES = f'''\
_base_ = '{BCCD_PACKAGE_CONFIG}'
train_cfg = dict(max_epochs=24)
param_scheduler = [dict(type='MultiStepLR', end=24, milestones=[22])]
'''


def _pinned(name: str) -> str:
    """The exact version requirements.txt pins for ``name``."""
    for line in (REPO_ROOT / 'requirements.txt').read_text().splitlines():
        requirement = line.split('#')[0].strip()
        if requirement and Requirement(requirement).name == name:
            (spec, ) = Requirement(requirement).specifier
            assert spec.operator == '==', requirement
            return spec.version
    raise AssertionError(f'{name} is not pinned in requirements.txt')


def _repository_files(item: str) -> list:
    """The files of a repository folder, relative to it, as git has them
    (tracked and untracked, not ignored)."""
    out = subprocess.check_output(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard',
         '--', item], cwd=REPO_ROOT, text=True)
    return sorted(Path(line).relative_to(item).as_posix()
                  for line in out.splitlines()
                  if (REPO_ROOT / line).is_file())


def test_editable_install_links_the_repository_folders():
    """``make install`` (``pip install -e .``) gives the package a
    ``.mim`` whose entries are links to the repository's own folders, so
    edits of configs/ and tools/ need no reinstall."""
    if package_dir() != REPO_ROOT / 'ddetr_plugin':
        pytest.skip(f'ddetr_plugin is imported from {package_dir()}, not '
                    'an editable install of this repository')
    mim = package_dir() / '.mim'
    assert mim.is_dir(), f'{mim} is missing: setup.py did not link it'
    for item in MIM_ITEMS:
        assert (mim / item).is_symlink(), item
        assert (mim / item).resolve() == REPO_ROOT / item
    assert config_dir().resolve() == REPO_ROOT / 'configs'


@pytest.mark.parametrize('path', [
    'ddetr_plugin/.mim', 'ddetr_plugin/.mim/configs',
    'ddetr_plugin/.mim/model-index.yml', 'dist/ddetr_plugin-0.1.0.whl',
    'build/lib.linux-x86_64-cpython-311/ddetr_plugin/_C.so'])
def test_generated_package_files_are_git_ignored(path):
    assert subprocess.run(['git', 'check-ignore', '-q', '--no-index', path],
                          cwd=REPO_ROOT).returncode == 0, path


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, the wheel)."""
    root = tmp_path_factory.mktemp('package')
    wheel = build_wheel(root / 'dist')
    python = fresh_venv(root / 'venv')
    install_wheel(python, wheel)
    return python, wheel


@pytest.mark.slow
@pytest.mark.xdist_group('wheel')  # one worker builds it once
def test_wheel_carries_the_op_configs_tools_and_ranges(installed, tmp_path):
    python, wheel = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_bytes(archive.read(next(
            n for n in names if n.endswith('.dist-info/METADATA'))))
    assert [n for n in names if n.startswith('ddetr_plugin/_C.')
            and n.endswith('.so')], 'no compiled op in the wheel'
    for item in MIM_ITEMS:
        prefix = f'ddetr_plugin/.mim/{item}'
        shipped = sorted(n[len(prefix) + 1:] for n in names
                         if n.startswith(prefix + '/'))
        if item.endswith('.yml'):
            assert prefix in names
        else:
            assert shipped == _repository_files(item), item
    assert not [n for n in names if '__pycache__' in n or
                n.endswith('.pyc')]
    requires = {Requirement(r).name: Requirement(r)
                for r in metadata.get_all('Requires-Dist')
                if 'extra ==' not in r}
    for name in ('torch', 'mmengine', 'mmcv', 'mmdet', 'pycocotools',
                 'scipy'):  # ranges that hold the tested pins
        assert requires[name].specifier, name
        assert requires[name].specifier.contains(_pinned(name)), (
            requires[name], _pinned(name))
    assert {'onnx', 'hf', 'mlflow', 'tests'} <= set(
        metadata.get_all('Provides-Extra'))

    # the installed package, imported outside the repository: its op and
    # its configs are the wheel's files, not links into the repository
    probe = run_user(python, ['-c', '''
import json, ddetr_plugin, ddetr_plugin._C as C
from ddetr_plugin.utils.package_configs import config_dir
print(json.dumps([ddetr_plugin.__file__, C.__file__, str(config_dir()),
                  config_dir().is_symlink()]))
'''], cwd=tmp_path)
    package, library, configs, linked = json.loads(
        probe.stdout.splitlines()[-1])
    site_packages = str(python.parents[1] / 'lib')
    assert package.startswith(site_packages), package
    assert library.startswith(site_packages), library
    assert configs.startswith(site_packages) and not linked


@pytest.mark.slow
@pytest.mark.xdist_group('wheel')  # one worker builds it once
def test_package_config_trains_and_tests_from_another_directory(
        installed, tmp_path):
    """A user's project outside the repository: a config inheriting
    ``ddetr_plugin::`` (the BCCD demo config, shrunk to a tiny model)
    trains for 2 iterations with ``mim train ddetr_plugin``, is
    evaluated with ``mim test ddetr_plugin`` and exported to ONNX with the
    package's ``export_onnx.py``; the 3-line config of the README loads and
    builds its detector there too."""
    python, _ = installed
    try:
        import mim  # noqa: F401
    except ImportError:
        missing_in_ci_fails('openmim (requirements.txt) is not installed')
    project = tmp_path / 'my_project'
    ann_file = bccd_annotations(project / 'data', 4)
    images = shared_data_dir('bccd', 'BCCD', 'JPEGImages')
    config = write_tiny_config(
        project / 'tiny_bccd.py', ann_file, base=BCCD_PACKAGE_CONFIG,
        max_epochs=1, extra=f'''
# the base's image folder is relative to the repository
train_dataloader['dataset']['data_prefix'] = dict(img='{images}/')
val_dataloader['dataset']['data_prefix'] = dict(img='{images}/')
''')
    train = run_user(python, ['-m', 'mim', 'train', 'ddetr_plugin',
                              config.name, '--work-dir', 'work'],
                     cwd=project)
    log = train.stdout + train.stderr
    assert '.mim/tools/train.py' in log  # mim ran the package's script
    checkpoint = project / 'work' / 'epoch_1.pth'
    assert checkpoint.is_file(), log[-3000:]
    test = run_user(python, ['-m', 'mim', 'test', 'ddetr_plugin',
                             config.name, '--checkpoint', checkpoint,
                             '--work-dir', 'test'], cwd=project)
    assert 'coco/bbox_mAP' in test.stdout + test.stderr, (
        test.stdout[-3000:])
    # ... and exports to ONNX with the package's own tool
    export_tool = next(python.parents[1].glob(
        'lib/python*/site-packages/ddetr_plugin/.mim/tools/deployment/'
        'export_onnx.py'))
    run_user(python, [export_tool, config.name, checkpoint, '--out',
                      'model.onnx'], cwd=project)
    assert (project / 'model.onnx').stat().st_size > 100_000

    three = project / 'my_config.py'
    three.write_text(THREE_LINES)
    assert len(THREE_LINES.splitlines()) == 3
    built = run_user(python, ['-c', f'''
import ddetr_plugin
from mmengine.config import Config
from mmengine.registry import init_default_scope
from ddetr_plugin.registry import MODELS
cfg = Config.fromfile({three.name!r})
init_default_scope(cfg.default_scope)
model = MODELS.build(cfg.model)
scheduler = cfg.param_scheduler[0]
print(type(model).__name__, model.bbox_head.num_classes,
      cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval,
      scheduler.end, scheduler.milestones[0])
'''], cwd=project)
    # the base's model and validation, the user's schedule
    assert built.stdout.split()[-6:] == ['DeformableDETR', '3', '24', '1',
                                         '24', '22']


@pytest.mark.slow
@pytest.mark.xdist_group('wheel')  # one worker builds it once
def test_installed_tools_name_the_config_folder_for_a_wrong_path(
        installed, tmp_path):
    python, _ = installed
    train = next(python.parents[1].glob(
        'lib/python*/site-packages/ddetr_plugin/.mim/tools/train.py'))
    proc = run_user(python, [
        train, 'ddetr_plugin::deformable_detr/'
        'deformable-detr-refine_mobilenetv2_1xb4-12e_bccd.py'],
        cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert str(train.parents[1] / 'configs') in proc.stderr
    assert ('closest: ddetr_plugin::deformable_detr/'
            'deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py'
            in proc.stderr), proc.stderr[-2000:]
