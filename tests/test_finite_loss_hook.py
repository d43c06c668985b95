"""A NaN loss stops training at once with a message naming the iteration
and the loss term, and the last good checkpoint stays loadable: a real
training subprocess (``tools/train.py``) whose classification loss is made
NaN in iteration 3 (the first of epoch 2) by
``helpers.fault_injection.NaNLossHook``; ``CheckFiniteLossHook`` of the
default runtime stops it."""
import re

import pytest
import torch
from helpers.tiny_training import (TOOLS, bccd_annotations, last_checkpoint,
                                   load_checkpoint, run_tool,
                                   write_tiny_config)

pytestmark = pytest.mark.slow


def test_nan_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    ann_file = bccd_annotations(tmp_path, 4)
    config = write_tiny_config(
        tmp_path / 'nan.py', ann_file, max_epochs=3, val_begin=4,
        extra='''
custom_imports = dict(imports=['helpers.fault_injection'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='NaNLossHook', iteration=3)]
''')
    work_dir = tmp_path / 'work'
    proc = run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir,
                    check=False)
    assert proc.returncode != 0
    (message, ) = re.findall(r'FloatingPointError: (.*)', proc.stderr)
    assert message.startswith('non-finite loss at iteration 3 (epoch 2, '
                              'batch 1 of the epoch): loss=nan, '
                              'loss_cls=nan (values of process 0')
    assert 'loss_bbox' not in message and 'loss_iou' not in message
    assert f'the last checkpoint {work_dir / "epoch_1.pth"} is intact' \
        in message
    assert 'BloodImage_' in message  # the images of the batch
    # nothing was saved after the bad step; the last checkpoint loads
    assert not (work_dir / 'epoch_2.pth').exists()
    assert last_checkpoint(work_dir) == work_dir / 'epoch_1.pth'
    checkpoint = load_checkpoint(work_dir / 'epoch_1.pth')
    assert checkpoint['meta']['iter'] == 2
    assert all(torch.isfinite(value).all()
               for value in checkpoint['state_dict'].values())
