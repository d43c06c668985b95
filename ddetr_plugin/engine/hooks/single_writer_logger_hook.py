"""``SingleWriterLoggerHook``: mmengine's ``LoggerHook`` whose test metrics
file is written by one process.

mmengine 0.10's ``LoggerHook.after_test_epoch`` writes the test metrics to
``<work_dir>/<timestamp>/<timestamp>.json`` with ``mmengine.dump`` on every
rank. With ``tools/dist_test.sh`` all ranks share that path and open it for
writing at the same moment: the file can end up as one rank's line followed
by the tail of another's (seen as ``... "time": 0.029}}``), which no JSON
reader parses. The metrics are the same on every rank (the evaluator
broadcasts them), so rank 0 alone writes them here; every rank still logs
the line.
"""
import os.path as osp
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.fileio import dump
from mmengine.hooks import LoggerHook

from ddetr_plugin.registry import HOOKS


@HOOKS.register_module()
class SingleWriterLoggerHook(LoggerHook):
    """mmengine's ``LoggerHook`` (same arguments), with the test metrics
    JSON written by rank 0 only.

    Args:
        *args, **kwargs: see mmengine's ``LoggerHook``.
    """

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        """Log the test metrics; rank 0 writes them to
        ``<log_dir>/<timestamp>.json`` as one JSON line (mmengine's
        content).

        Args:
            runner (Runner): the runner of the test.
            metrics (dict, optional): unused (read from the log processor,
                as mmengine).
        """
        tag, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test')
        runner.logger.info(log_str)
        if is_main_process():
            dump(tag, osp.join(runner.log_dir, self.json_log_path))
