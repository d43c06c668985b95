"""Test-only hook loaded into training subprocesses by
``tests/test_distributed.py`` (``custom_imports=['helpers.state_probe']``).

``StateProbeHook`` records what a process starts training from: at
``before_train`` (after ``--resume`` has loaded the checkpoint and
``DeformableDETRRunner.resume`` restored the random state, before the
first batch is drawn) every rank writes ``out_dir/rank<rank>.pt`` with
its random state
(:func:`ddetr_plugin.engine.random_state.capture_random_state`), the
model's weights and the names of its trained parameters. Recording draws
no random number.
"""
import os

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ddetr_plugin.engine.random_state import capture_random_state
from ddetr_plugin.registry import HOOKS


@HOOKS.register_module()
class StateProbeHook(Hook):
    """Write this rank's random state, weights and trained-parameter names
    at ``before_train``."""

    priority = 'HIGHEST'  # before any other hook can draw

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(
            dict(random_state=capture_random_state(),
                 state_dict={key: value.detach().clone()
                             for key, value in model.state_dict().items()},
                 parameters=[name for name, param in model.named_parameters()
                             if param.requires_grad]),
            os.path.join(self.out_dir, f'rank{get_rank()}.pt'))
