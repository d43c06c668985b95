"""``ddetr_plugin::`` configs (``ddetr_plugin.utils.package_configs``):
registered with mmengine on import, resolved from any directory as bases
and as the config itself, and a wrong path named with the package's config
folder and the closest configs, also by ``tools/train.py`` and
``tools/test.py`` (subprocesses)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import mmengine.hub
import pytest
from helpers.paths import BCCD_CONFIG, REPO_ROOT, TOOLS
from helpers.tiny_training import run_tool
from mmengine.config import Config
from mmengine.config import utils as config_utils

import ddetr_plugin  # noqa: F401  (registers the scope)
from ddetr_plugin.utils.package_configs import (LOOKUP_MODULE,
                                                ConfigNotFoundError,
                                                available_configs,
                                                closest_configs, config_dir,
                                                find_missing_package_base,
                                                load_config, resolve_config)

R50 = 'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'
BCCD = f'deformable_detr/{BCCD_CONFIG.name}'


def _without_scopes(value):
    """``value`` without the ``_scope_`` keys mmengine adds."""
    if isinstance(value, dict):
        return {k: _without_scopes(v) for k, v in value.items()
                if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_scopes(v) for v in value)
    return value


@pytest.fixture(autouse=True)
def package_configs():
    """The package's config folder exists (setup.py links it for the
    editable install of ``make install``, copies it into a wheel)."""
    assert config_dir().is_dir(), f'{config_dir()} is missing'


def test_importing_the_package_registers_its_scope_with_mmengine():
    assert config_utils.MODULE2PACKAGE['ddetr_plugin'] == LOOKUP_MODULE
    assert R50 in available_configs() and BCCD in available_configs()
    assert '_base_/default_runtime.py' in available_configs()


def test_a_base_from_the_package_resolves_from_any_directory(tmp_path):
    """A user's process in another directory (no repository on
    ``sys.path``: run from the repository root, pkg_resources would find
    the editable install's metadata there and hide a wrong look-up)."""
    (tmp_path / 'mine.py').write_text(
        f"_base_ = 'ddetr_plugin::{R50}'\n"
        'model = dict(bbox_head=dict(num_classes=5))\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, '-c', """
import json, ddetr_plugin
from mmengine.config import Config
print(json.dumps(Config.fromfile('mine.py').to_dict()))
"""], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads(proc.stdout.splitlines()[-1])
    reference = Config.fromfile(REPO_ROOT / 'configs' / R50)
    reference.model.bbox_head.num_classes = 5
    assert cfg['model']['bbox_head']['num_classes'] == 5
    # mmengine marks what a package's base defines with that package's
    # scope (so it builds there whatever the default scope)
    assert cfg['model']['_scope_'] == 'ddetr_plugin'
    assert _without_scopes(cfg) == json.loads(json.dumps(
        reference.to_dict()))


def test_the_config_itself_may_be_a_package_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config(f'ddetr_plugin::{BCCD}') == str(config_dir() /
                                                          BCCD)
    assert resolve_config('local.py') == 'local.py'  # others unchanged
    cfg = load_config(f'ddetr_plugin::{BCCD}',
                      {'train_cfg.max_epochs': 2})
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.model.transformer.num_queries == 100
    # mmengine's own entry point for package configs agrees
    hub = mmengine.hub.get_config(f'ddetr_plugin::{BCCD}')
    assert hub.model.to_dict() == cfg.model.to_dict()


def test_a_wrong_package_path_names_the_folder_and_the_closest():
    typo = 'deformable_detr/deformable-detr_r50_16xb2-50e_cocoo.py'
    with pytest.raises(ConfigNotFoundError) as error:
        load_config(f'ddetr_plugin::{typo}')
    message = str(error.value)
    assert str(config_dir()) in message
    assert f'closest: ddetr_plugin::{R50}' in message
    assert closest_configs(typo)[0] == R50


@pytest.mark.parametrize('base,closest', [
    # a file that is not there: mmengine's FileNotFoundError
    ('deformable_detr/deformable-detr_r50_16xb2-12e_coco.py', R50),
    # no folder: mmengine's ValueError about the path's form
    ('deformable-detr_r50_16xb2-50e_coco.py', R50),
    # the right file name in a wrong folder
    (f'h_deformable_detr/{BCCD_CONFIG.name}', BCCD),
])
def test_a_wrong_base_names_the_config_that_inherits_it(tmp_path, base,
                                                        closest):
    mine = tmp_path / 'mine.py'
    mine.write_text(f"_base_ = ['ddetr_plugin::{base}']\n")
    with pytest.raises(Exception) as plain:  # what mmengine says
        Config.fromfile(mine)
    assert not isinstance(plain.value, ConfigNotFoundError)
    with pytest.raises(ConfigNotFoundError) as error:
        load_config(str(mine))
    message = str(error.value)
    assert f'ddetr_plugin::{base} (a base of {mine})' in message
    assert str(config_dir()) in message
    assert f'ddetr_plugin::{closest}' in message.split('closest: ')[1]
    # mmengine's own error stays attached
    assert isinstance(error.value.__cause__, type(plain.value))


def test_a_wrong_base_two_files_up_is_found(tmp_path):
    (tmp_path / 'base.py').write_text(
        "_base_ = 'ddetr_plugin::deformable_detr/nothing.py'\n")
    (tmp_path / 'mine.py').write_text("_base_ = './base.py'\n")
    assert find_missing_package_base(str(tmp_path / 'mine.py')) == (
        'ddetr_plugin::deformable_detr/nothing.py', str(tmp_path / 'base.py'))
    assert find_missing_package_base(str(REPO_ROOT / 'configs' / R50)) \
        is None


def test_other_errors_are_not_rewritten(tmp_path):
    (tmp_path / 'mine.py').write_text("_base_ = './missing_local.py'\n")
    with pytest.raises(FileNotFoundError) as error:
        load_config(str(tmp_path / 'mine.py'))
    assert not isinstance(error.value, ConfigNotFoundError)
    assert 'missing_local.py' in str(error.value)


@pytest.mark.parametrize('tool,where', [('train.py', 'config'),
                                        ('test.py', 'base')])
def test_tools_exit_naming_the_config_folder(tool, where, tmp_path):
    """A wrong ``ddetr_plugin::`` path as CONFIG (train.py) or as a base of
    CONFIG (test.py): status 1, the message, no traceback."""
    wrong = f'ddetr_plugin::deformable_detr/{BCCD_CONFIG.stem}x.py'
    config = wrong
    if where == 'base':
        config = str(tmp_path / 'mine.py')
        Path(config).write_text(f'_base_ = {wrong!r}\n')
    args = [TOOLS / tool, config]
    if tool == 'test.py':
        args.append(tmp_path / 'none.pth')
    proc = run_tool(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert str(config_dir()) in proc.stderr
    assert f'closest: ddetr_plugin::{BCCD}' in proc.stderr
    if where == 'base':
        assert f'(a base of {config})' in proc.stderr
    assert 'Traceback' not in proc.stderr
