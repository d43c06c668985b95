"""``CheckFiniteLossHook``: stop training at the first NaN or inf loss.

mmdet's ``CheckInvalidLossHook`` checks only the total loss, every 50
iterations by default, with a bare ``assert``; by then up to 49 optimizer
steps may have written NaN into the weights, and an epoch checkpoint saved
meanwhile would hold them. This hook checks every loss term after every
iteration, on every process together (so all ranks stop at the same
iteration instead of leaving the others waiting in a collective), and
raises with the iteration, the non-finite terms and the images of the
batch. No checkpoint is written after the bad step: the last checkpoint
(named in the message) predates it and stays loadable.
"""
from typing import Optional

import torch
from mmengine.dist import all_reduce, is_distributed
from mmengine.hooks import Hook

from ddetr_plugin.registry import HOOKS


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` on the first non-finite loss term.

    Runs after every training iteration, before the other hooks
    (``VERY_HIGH`` priority), on the ``log_vars`` returned by
    ``model.train_step``: ``loss`` and every term (``loss_cls``,
    ``loss_bbox``, ``loss_iou``, ``d0.loss_cls``, ...), scalar tensors or
    numbers.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Check ``outputs``; raise naming the iteration and the terms.

        Raises:
            FloatingPointError: Some term is NaN or infinite on some
                process. The message gives the 1-based iteration and epoch,
                the batch, the bad terms with this process's values, the
                image files of this process's batch and the last checkpoint.
        """
        if not outputs:
            return
        names = list(outputs)
        values = torch.stack([
            torch.as_tensor(outputs[name]).detach().double().mean().cpu()
            for name in names
        ])
        bad = (~torch.isfinite(values)).to(torch.int64)
        if is_distributed():
            all_reduce(bad, op='sum')
        if not bad.any():
            return
        terms = ', '.join(f'{name}={values[i].item()}'
                          for i, name in enumerate(names) if bad[i])
        samples = (data_batch or {}).get('data_samples') or []
        images = [sample.metainfo.get('img_path', '?') for sample in samples
                  if hasattr(sample, 'metainfo')]
        last = runner.message_hub.get_info('last_ckpt')
        raise FloatingPointError(
            f'non-finite loss at iteration {runner.iter + 1} (epoch '
            f'{runner.epoch + 1}, batch {batch_idx + 1} of the epoch): '
            f'{terms} (values of process {runner.rank}; with several '
            'processes a term may be non-finite on another one only). '
            'Training stopped before any checkpoint was written with these '
            'weights; '
            + (f'the last checkpoint {last} is intact, resume from it with '
               '--resume after fixing the cause (learning rate, clip_grad, '
               'the data). '
               if last else 'no checkpoint had been written yet. ')
            + f'Images of this batch: {images}')
