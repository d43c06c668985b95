"""A trusted checkpoint that safe loading refuses becomes, through
``tools/model_converters/convert_trusted_checkpoint.py``
(:mod:`ddetr_plugin.converters.trusted_checkpoint`), a checkpoint that
loads safely, listing what it dropped; the tool asks for ``--trust-code``
and never overwrites its source."""
import runpy

import pytest
import torch
from helpers.paths import REPO_ROOT
from mmengine.runner import load_checkpoint
from test_checkpoint import ToyModel, old_trusted_checkpoint

from ddetr_plugin.converters.trusted_checkpoint import \
    convert_trusted_checkpoint
from ddetr_plugin.engine.checkpoint import register_safe_checkpoint_types


def test_convert_trusted_checkpoint_tool(tmp_path, capsys):
    register_safe_checkpoint_types()
    src, out = tmp_path / 'old.pth', tmp_path / 'clean.pth'
    state_dict = old_trusted_checkpoint(src)
    tool = runpy.run_path(str(REPO_ROOT / 'tools' / 'model_converters' /
                              'convert_trusted_checkpoint.py'))
    with pytest.raises(SystemExit, match='Pass --trust-code only if'):
        tool['main']([str(src), str(out)])
    assert not out.exists()
    tool['main']([str(src), str(out), '--trust-code'])
    printed = capsys.readouterr().out
    assert "dropped checkpoint['meta']['work_dir'] (pathlib.PosixPath)" in \
        printed
    assert '1 object(s) dropped' in printed
    clean = torch.load(out)  # safe loading accepts it now
    assert clean['meta']['work_dir'] is None
    assert clean['meta']['epoch'] == 3 and clean['meta']['best'] == 0.25
    torch.testing.assert_close(clean['meta']['history'],
                               torch.arange(3.0))
    assert clean['message_hub']['log_scalars']['loss'].current() == 0.5
    for key, value in state_dict.items():
        torch.testing.assert_close(clean['state_dict'][key], value)
    model = ToyModel()
    load_checkpoint(model, str(out), strict=True)


def test_convert_refuses_to_overwrite_its_source(tmp_path):
    path = tmp_path / 'old.pth'
    old_trusted_checkpoint(path)
    with pytest.raises(ValueError, match='not the source'):
        convert_trusted_checkpoint(str(path), str(path))
