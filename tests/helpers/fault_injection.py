"""Test-only hooks loaded into training subprocesses (``custom_imports``).

* ``WaitForKillHook`` makes the process stop at a chosen moment, write a
  marker file and wait there, so the test can ``kill -9`` it exactly then:
  ``'iteration'`` (after the forward pass of the 2nd iteration of an epoch,
  before backward and the optimizer step), ``'validation'`` (after the 2nd
  validation batch following an epoch) or ``'save'`` (while that epoch's
  checkpoint is being committed: written to its temporary file, not yet
  renamed).
* ``NaNLossHook`` makes the first classification loss term computed in a
  chosen iteration (the first decoder layer's: ``d0.loss_cls``, or
  ``loss_cls`` with one decoder layer) NaN.
* ``PauseAfterValidationHook`` holds training after a chosen epoch's
  validation until the test lets it go on (e.g. once it has killed the
  MLflow server).
"""
import os
import time
from pathlib import Path

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ddetr_plugin.registry import HOOKS


def _wait_for_kill(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(600)  # the test sends SIGKILL long before
    raise RuntimeError(f'nobody killed the process waiting at {marker}')


@HOOKS.register_module()
class WaitForKillHook(Hook):
    """Wait at ``moment`` of ``epoch`` (1-based) after writing ``marker``."""

    def __init__(self, moment: str, epoch: int, marker: str) -> None:
        if moment not in ('iteration', 'validation', 'save'):
            raise ValueError(f'unknown moment {moment!r}')
        self.moment, self.epoch, self.marker = moment, epoch, marker

    def before_train(self, runner) -> None:
        if self.moment != 'save':
            return
        fsync = os.fsync
        name = f'.epoch_{self.epoch}.pth.tmp'

        def waiting_fsync(descriptor):
            if os.readlink(f'/proc/self/fd/{descriptor}').endswith(name):
                _wait_for_kill(self.marker)
            fsync(descriptor)

        os.fsync = waiting_fsync  # this test process only

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if (self.moment == 'iteration' and runner.epoch + 1 == self.epoch
                and batch_idx == 1):
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
            model.register_forward_hook(
                lambda *args: _wait_for_kill(self.marker))

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        if (self.moment == 'validation' and runner.epoch == self.epoch
                and batch_idx == 1):
            _wait_for_kill(self.marker)


@HOOKS.register_module()
class NaNLossHook(Hook):
    """Make the first decoder layer's ``loss_cls`` of iteration
    ``iteration`` (1-based) NaN."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 != self.iteration:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        handle = None

        def to_nan(module, inputs, output):
            handle.remove()  # only the first call: decoder layer 0
            return output * float('nan')

        handle = model.bbox_head.loss_cls.register_forward_hook(to_nan)


@HOOKS.register_module()
class PauseAfterValidationHook(Hook):
    """After the validation of ``epoch`` (1-based), once every other hook
    has handled it (lowest priority: the logger and the dashboards have
    sent its metrics), write ``marker`` and wait until ``<marker>.go``
    exists, so the test can do something (e.g. kill a server) exactly
    between two epochs; then training goes on."""

    priority = 'LOWEST'

    def __init__(self, epoch: int, marker: str, timeout: float = 600) -> None:
        self.epoch, self.marker, self.timeout = epoch, marker, timeout

    def after_val_epoch(self, runner, metrics=None) -> None:
        if runner.epoch != self.epoch:
            return
        Path(self.marker).write_text(str(os.getpid()))
        go = Path(f'{self.marker}.go')
        deadline = time.monotonic() + self.timeout
        while not go.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f'nobody wrote {go}')
            time.sleep(0.05)
