"""``CrashSafeCheckpointHook``: checkpoints that survive ``kill -9``.

mmengine 0.10.7's ``CheckpointHook`` saves an epoch's checkpoint before the
epoch's validation, deletes the oldest checkpoint (``max_keep_ckpts``) and
the previous best checkpoint (``save_best``) *before* writing their
replacements, and writes ``last_checkpoint`` in place. A process killed in
between can leave ``last_checkpoint`` naming a deleted or half-written file,
the best checkpoint gone, or (killed during validation) a checkpoint whose
message hub lacks that epoch's metrics and best score, which a resumed run
never recomputes. This subclass keeps mmengine's options and file names and
changes the order:

1. a due checkpoint waits until the epoch (or iteration) is over including
   its validation, so it carries the validation metrics, ``best_score`` and
   the random state after validation; it is written at the start of the
   next epoch/iteration, by the best-checkpoint save of the same step, or
   at the end of training;
2. the checkpoint is written atomically
   (``DeformableDETRRunner.save_checkpoint``), then ``last_checkpoint`` is
   replaced atomically;
3. only then are replaced files deleted (the oldest of ``max_keep_ckpts``,
   the previous best checkpoint).

A run killed at any moment therefore resumes (``--resume``) from the last
epoch whose training and validation both finished, and ``last_checkpoint``
always names a complete file.
"""
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from ddetr_plugin.registry import HOOKS
from ddetr_plugin.utils.atomic_file import write_text_atomically


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe ordering (see the
    module docstring). Same arguments; needs a runner whose
    ``save_checkpoint`` writes atomically (``DeformableDETRRunner``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferring = False
        # (step, meta) of a due checkpoint waiting for its validation
        self._pending: Optional[Tuple[int, dict]] = None
        # replaced files, deleted once a newer checkpoint is committed
        self._obsolete: List[str] = []
        # best checkpoint paths before the best-checkpoint save under way
        self._previous_best: Optional[dict] = None

    def after_train_epoch(self, runner) -> None:
        """Schedule the epoch's checkpoint (written after validation)."""
        self._deferring = True
        try:
            super().after_train_epoch(runner)
        finally:
            self._deferring = False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Schedule an iteration checkpoint (written after validation)."""
        self._deferring = True
        try:
            super().after_train_iter(runner, batch_idx, data_batch, outputs)
        finally:
            self._deferring = False

    def before_train_epoch(self, runner) -> None:
        """Write the checkpoint of the finished epoch, if still due."""
        self._write_pending(runner)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        """Write the checkpoint of the finished iteration, if still due."""
        self._write_pending(runner)

    def after_train(self, runner) -> None:
        """Write the last due checkpoint, then mmengine's publishing."""
        self._write_pending(runner)
        super().after_train(runner)

    def _write_pending(self, runner) -> None:
        if self._pending is not None:
            self._save_checkpoint_with_step(runner, *self._pending)

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        """Write checkpoint ``step``: file, ``last_checkpoint``, clean-up.

        While an epoch/iteration is finishing (``after_train_*``), only
        records the step; the write happens in :meth:`_write_pending` or
        when the best-checkpoint save re-saves the same step.
        """
        if self._deferring:
            self._pending = (step, meta)
            return
        if self._pending is not None and self._pending[0] == step:
            self._pending = None
        self._settle_best()  # when mmengine re-saves inside the best save
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                self._obsolete.append(
                    self.file_backend.join_path(
                        self.out_dir,
                        self.filename_tmpl.format(
                            self.keep_ckpt_ids.popleft())))
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        obsolete, self._obsolete = self._obsolete, []
        if not is_main_process():
            return
        write_text_atomically(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for path in obsolete:
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed checkpoints
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's best-checkpoint save, deleting the previous best only
        after the next checkpoint that records the new one is committed."""
        if not self.save_best:
            return
        self._previous_best = self._best_paths()
        # hidden, so that mmengine does not delete them now
        self._set_best_paths(dict.fromkeys(self._previous_best))
        super()._save_best_checkpoint(runner, metrics)
        self._settle_best()

    def _best_paths(self) -> dict:
        if len(self.key_indicators) == 1:
            return {None: self.best_ckpt_path}
        return dict(self.best_ckpt_path_dict)

    def _set_best_paths(self, paths: dict) -> None:
        if len(self.key_indicators) == 1:
            self.best_ckpt_path = paths[None]
        else:
            self.best_ckpt_path_dict = dict(paths)

    def _settle_best(self) -> None:
        """After a best-checkpoint save: queue the replaced best files for
        deletion and unhide the paths that were not replaced."""
        if self._previous_best is None:
            return
        current = self._best_paths()
        for key, old in self._previous_best.items():
            if current[key] is None:
                current[key] = old
            elif old and old != current[key]:
                self._obsolete.append(old)
        self._set_best_paths(current)
        self._previous_best = None
