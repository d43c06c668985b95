"""Test-only hook loaded into training subprocesses
(``custom_imports=['helpers.autocast_probe']``) by ``tests/test_amp.py``.

``AutocastProbeHook`` records, for every training iteration, what each
``nn.Linear`` of the model saw during the forward pass: whether CPU autocast
was enabled (``torch.is_autocast_enabled('cpu')``) and the dtype of its
output (bfloat16 under ``--amp``, float32 without). One JSON line per
iteration is appended to ``out_file``: ``{"iter": 1-based iteration,
"calls": number of Linear forwards, "autocast": sorted distinct flags,
"dtypes": sorted distinct output dtypes}``. Recording changes nothing in
the run (no random draw, no tensor touched).
"""
import json

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from ddetr_plugin.registry import HOOKS


@HOOKS.register_module()
class AutocastProbeHook(Hook):
    """Append what the model's Linear layers saw in each training iteration
    to ``out_file`` (JSON lines, see the module docstring)."""

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file
        self._seen = None

    def _record(self, module, args, output) -> None:
        if self._seen is not None:
            self._seen['calls'] += 1
            self._seen['autocast'].add(torch.is_autocast_enabled('cpu'))
            self._seen['dtypes'].add(str(output.dtype))

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert linears, 'the model has no nn.Linear'
        for module in linears:
            module.register_forward_hook(self._record)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._seen = dict(calls=0, autocast=set(), dtypes=set())

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        seen, self._seen = self._seen, None
        record = dict(iter=runner.iter + 1, calls=seen['calls'],
                      autocast=sorted(seen['autocast']),
                      dtypes=sorted(seen['dtypes']))
        with open(self.out_file, 'a') as file:
            file.write(json.dumps(record) + '\n')
