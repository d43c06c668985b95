"""``DeformableDETRRunner``: mmengine's Runner made to scale out and to
resume exactly.

Selected by ``runner_type`` in ``configs/_base_/default_runtime.py``, so
``tools/train.py``/``tools/test.py`` (mmdet's scripts) build it. It changes
eight things of ``mmengine.runner.Runner`` (0.10.7) and nothing else:

* every class gets a drawing colour: a dataset ``metainfo.palette`` shorter
  than its ``classes`` (e.g. inherited from a base config) is completed
  with generated colours, with a warning (:mod:`ddetr_plugin.datasets.palette`),
  so drawing at validation or in ``tools/test.py`` cannot fail on it;
* the process group: ``env_cfg.dist_cfg.backend=None`` picks ``gloo``
  without CUDA and ``nccl`` with it, and machines without CUDA start without
  ``torch.cuda.set_device`` (:mod:`.distributed`);
* the DDP wrapper on CPU: ``MMDistributedDataParallel`` without
  ``device_ids`` (mmengine passes ``[LOCAL_RANK]``, which DDP refuses for CPU
  modules);
* checkpoint writes are atomic (:mod:`ddetr_plugin.utils.atomic_file`):
  the file appears under its final name only when complete;
* the training dataloader draws each sample's random augmentation from
  generators seeded by (seed, epoch, sample index) (:mod:`.data_seeding`),
  so the draws depend neither on the dataloader workers (how many, whether
  persistent) nor on a resume;
* every process's random state (:mod:`.random_state`) is saved with each
  checkpoint, in the message hub's runtime info (``random_state``, one entry
  per rank), and restored by :meth:`DeformableDETRRunner.resume`, so an
  interrupted and resumed run continues the same random streams;
* ``compile=True`` compiles the detector's forward, not ``train_step``
  (:meth:`DeformableDETRRunner._maybe_compile`);
* ``efficient_conv_bn_eval`` (the batch norms of the backbone folded into
  their convolutions) also in ``val()`` and ``test()``, not only in
  ``train()`` (:mod:`.conv_bn_eval`).
"""
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import (all_gather_object, get_rank, is_distributed,
                           is_main_process)
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, Runner

from ddetr_plugin.datasets.palette import complete_palettes
from ddetr_plugin.registry import MODEL_WRAPPERS, RUNNERS
from ddetr_plugin.utils.atomic_file import commit_file, temporary_path
from .conv_bn_eval import turn_on_conv_bn_eval_from_config
from .data_seeding import build_seeded_dataloader, seeded_sampler
from .distributed import init_process_group
from .random_state import capture_random_state, restore_random_state

#: Message-hub runtime-info key holding the per-rank random states.
RANDOM_STATE_KEY = 'random_state'


@RUNNERS.register_module()
class DeformableDETRRunner(Runner):
    """mmengine's ``Runner`` with CPU-capable DDP, atomic checkpoints and
    exact resume (see the module docstring). Same arguments as ``Runner``.
    """

    def __init__(self, *args, **kwargs) -> None:
        """``Runner.__init__`` after completing short palettes.

        The dataloader configs passed by keyword (as ``Runner.from_cfg``
        passes them) get one colour per class (:func:`complete_palettes`,
        changed in place, so the dumped config shows the colours used);
        each completion is logged as a warning.
        """
        completed = []
        for split in ('train_dataloader', 'val_dataloader',
                      'test_dataloader'):
            completed += complete_palettes(kwargs.get(split), split)
        super().__init__(*args, **kwargs)
        for message in completed:
            self.logger.warning(message)

    def setup_env(self, env_cfg: Dict) -> None:
        """Create the process group, then mmengine's set-up.

        Args:
            env_cfg (dict): As for ``Runner``; ``dist_cfg.backend`` may be
                ``None`` (or absent): ``gloo`` without CUDA, ``nccl`` with
                it.
        """
        if self.distributed and not is_distributed():
            init_process_group(self.launcher, **env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: Optional[Dict], model):
        """Wrap for DDP; without CUDA, with no ``device_ids``.

        Args:
            model_wrapper_cfg (dict, optional): ``model_wrapper_cfg`` of the
                config (default: ``MMDistributedDataParallel`` with
                ``broadcast_buffers=False`` and the config's
                ``find_unused_parameters``, default False).
            model (nn.Module): The model.

        Returns:
            nn.Module: The wrapped model (the model itself when not
            distributed).
        """
        if (not self.distributed or is_model_wrapper(model)
                or torch.cuda.is_available()):
            return super().wrap_model(model_wrapper_cfg, model)
        wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=self.cfg.get('find_unused_parameters',
                                                False))
        wrapper_cfg.update(model_wrapper_cfg or {})
        return MODEL_WRAPPERS.build(
            wrapper_cfg, default_args=dict(module=model))

    def val(self) -> dict:
        """``Runner.val`` with the config's ``efficient_conv_bn_eval``
        (mmengine applies it in ``train()`` only).

        Returns:
            dict: the validation metrics.
        """
        self._turn_on_conv_bn_eval()
        return super().val()

    def test(self) -> dict:
        """``Runner.test`` with the config's ``efficient_conv_bn_eval``
        (mmengine applies it in ``train()`` only).

        Returns:
            dict: the test metrics.
        """
        self._turn_on_conv_bn_eval()
        return super().test()

    def _turn_on_conv_bn_eval(self) -> None:
        """Fold the batch norms of the config's ``efficient_conv_bn_eval``
        modules (:mod:`.conv_bn_eval`) into their convolutions."""
        model = self.model.module if is_model_wrapper(self.model) \
            else self.model
        modules = turn_on_conv_bn_eval_from_config(model, self.cfg)
        if modules:
            self.logger.info('Enabling the "efficient_conv_bn_eval" feature '
                             f'for sub-modules: {modules}')

    def _maybe_compile(self, target: str) -> None:
        """``compile`` of the config (mmengine's switch: True, or
        ``torch.compile``'s keyword arguments) compiles the detector's
        ``forward`` in place (``nn.Module.compile``; the state_dict keys do
        not change), instead of mmengine's ``torch.compile`` of
        ``model.train_step``: that also traces the optimizer step, on which
        torch 2.13's dynamo fails with our optimizer wrappers
        (``InternalTorchDynamoError`` in ``_set_capturable``), and the
        matching (scipy) cuts the graph there anyway. Costs and gains on CPU:
        docs/benchmarks.md ("torch.compile").

        Args:
            target (str): the method mmengine would compile
                (``'train_step'``); the forward is compiled whatever it is.
        """
        compile_cfg = self.cfg.get('compile', None)
        if compile_cfg is None or compile_cfg is False:
            return
        compile_cfg = {} if compile_cfg is True else dict(compile_cfg)
        model = self.model.module if is_model_wrapper(self.model) \
            else self.model
        if getattr(model, '_compiled_call_impl', None) is None:
            model.compile(**compile_cfg)
            self.logger.info('The detector\'s forward is compiled '
                             f'(torch.compile, {compile_cfg}); the first '
                             'iterations are slow.')

    def build_train_loop(self, loop):
        """``Runner.build_train_loop`` on a per-sample seeded dataloader.

        The training dataloader config is built by
        :func:`.data_seeding.build_seeded_dataloader` (mmengine's builder
        with the dataset and sampler wrapped), so every random transform of
        a sample draws from ``(seed, epoch, index)``. Arguments and return
        as for ``Runner.build_train_loop``.
        """
        if isinstance(self._train_dataloader, dict):
            self._train_dataloader = build_seeded_dataloader(
                self._train_dataloader,
                seed=self.seed,
                diff_rank_seed=self._randomness_cfg.get(
                    'diff_rank_seed', False))
        return super().build_train_loop(loop)

    def save_checkpoint(self, out_dir: str, filename: str,
                        file_client_args: Optional[dict] = None,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        meta: Optional[dict] = None, by_epoch: bool = True,
                        backend_args: Optional[dict] = None) -> None:
        """``Runner.save_checkpoint``, atomic, with every rank's random state.

        Called on every rank (as ``CheckpointHook`` does): the ranks' random
        states are gathered, then the main process writes
        ``out_dir/.<filename>.tmp`` and renames it to ``out_dir/filename``
        after ``fsync``. Remote file backends (``backend_args`` or
        ``file_client_args`` naming one) are written by mmengine as before.
        Arguments as for ``Runner.save_checkpoint``.
        """
        self.message_hub.update_info(RANDOM_STATE_KEY,
                                     all_gather_object(capture_random_state()))
        if not is_main_process():
            return
        save = super().save_checkpoint
        kwargs = dict(
            file_client_args=file_client_args,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=backend_args)
        local = file_client_args is None and isinstance(
            get_file_backend(out_dir, backend_args=backend_args),
            LocalBackend)
        if not local:
            save(out_dir, filename, **kwargs)
            return
        path = osp.join(out_dir, filename)
        temporary = temporary_path(path)
        save(out_dir, osp.basename(temporary), **kwargs)
        commit_file(temporary, path)

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location='default') -> None:
        """``Runner.resume``, then restore this rank's random state.

        A checkpoint written by mmengine's own Runner holds no random state:
        a warning says that the run continues from the seed instead. With a
        different number of processes than the saved run, every rank takes
        rank 0's state (warned). Arguments as for ``Runner.resume``.
        """
        super().resume(filename, resume_optimizer, resume_param_scheduler,
                       map_location)
        # mmengine adopts the checkpoint's seed after the training dataloader
        # was built with this run's: its shuffle and per-sample draws follow
        sampler = (seeded_sampler(self._train_loop.dataloader)
                   if isinstance(self._train_loop, BaseLoop) else None)
        if sampler is not None and not self._randomness_cfg.get(
                'diff_rank_seed', False):
            sampler.reseed(self.seed)
        states = self.message_hub.runtime_info.get(RANDOM_STATE_KEY)
        if not states:
            self.logger.warning(
                f'{filename} holds no random state (not saved by '
                'DeformableDETRRunner): the resumed run draws new random '
                'numbers and will not repeat an uninterrupted run exactly')
            return
        if len(states) != self.world_size:
            self.logger.warning(
                f'{filename} was saved by {len(states)} processes, this run '
                f'has {self.world_size}: every process takes rank 0\'s '
                'random state')
            states = [states[0]] * self.world_size
        restore_random_state(states[get_rank()])
