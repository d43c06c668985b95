"""``SingleWriterLoggerHook``: only rank 0 writes the test metrics JSON
(mmengine's ``LoggerHook`` has every rank write the same file, which two
processes of ``tools/dist_test.sh`` can interleave into invalid JSON)."""
import json
from types import SimpleNamespace
from unittest import mock

import pytest
from helpers.paths import REPO_ROOT
from mmengine.config import Config
from mmengine.logging import MMLogger

from ddetr_plugin.engine.hooks import SingleWriterLoggerHook
from ddetr_plugin.engine.hooks import single_writer_logger_hook

TAG = {'coco/bbox_mAP': 0.5, 'time': 0.1}


def _runner(log_dir):
    log_processor = SimpleNamespace(
        get_log_after_epoch=lambda runner, n, mode: (dict(TAG), 'log line'))
    return SimpleNamespace(
        log_processor=log_processor,
        test_dataloader=[0, 1],
        logger=MMLogger.get_instance('single_writer_test'),
        log_dir=str(log_dir),
        timestamp='20261202_000000')


@pytest.mark.parametrize('rank', [0, 1])
def test_only_rank_zero_writes_the_test_metrics(tmp_path, rank):
    runner = _runner(tmp_path)
    hook = SingleWriterLoggerHook()
    hook.before_run(runner)
    with mock.patch.object(single_writer_logger_hook, 'is_main_process',
                           return_value=rank == 0):
        hook.after_test_epoch(runner)
    written = sorted(tmp_path.glob('*.json'))
    if rank == 0:
        (path, ) = written
        assert json.loads(path.read_text()) == TAG
    else:
        assert written == [], 'a rank other than 0 wrote the metrics file'


def test_the_runtime_uses_it():
    cfg = Config.fromfile(REPO_ROOT / 'configs' / '_base_' /
                          'default_runtime.py')
    assert cfg.default_hooks.logger.type == 'SingleWriterLoggerHook'
