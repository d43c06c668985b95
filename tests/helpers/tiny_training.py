"""A tiny training set-up shared by the distributed, resume, AMP and
non-finite-loss tests: BCCD images in COCO json (written to a temp folder
by our converter), a config that inherits the real BCCD demo config and
shrinks the model (1 encoder + 1 decoder layer, 64 channels, 2 levels,
20 queries) and the images (128x96), and helpers that run the real tools in
subprocesses.

Only the first images of BCCD's train split are used; they are all 640x480,
so every batch has the same padded size whatever its composition.
"""
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from . import tool_server
from .paths import (BCCD_CLASSES, BCCD_CONFIG, REPO_ROOT, TESTS,
                    shared_data_dir)
from .paths import TOOLS  # noqa: F401  (the tests import it from here too)

#: the BCCD demo config in an installed package's configs
#: (``ddetr_plugin/.mim/configs``), as a base that works from any directory
BCCD_PACKAGE_CONFIG = ('ddetr_plugin::deformable_detr/'
                       f'{BCCD_CONFIG.name}')

_TINY = '''
_base_ = {base!r}
embed_dims = 64
attn = dict(embed_dims=embed_dims, num_heads=4, num_levels=2, num_points=2,
            dropout={dropout})
ffn = dict(embed_dims=embed_dims, feedforward_channels=128,
           ffn_drop={dropout})
model = dict(
    with_box_refine={with_box_refine},
    as_two_stage={as_two_stage},
    # out_indices 7 uses MobileNetV2's last conv (the demo config leaves it
    # unused): with find_unused_parameters=False, DDP then fails on any
    # parameter of ours that a variant does not use
    backbone=dict(init_cfg=None, out_indices=(4, 7)),
    neck=dict(in_channels=[96, 1280], out_channels=embed_dims, num_outs=2),
    transformer=dict(
        num_queries=20,
        num_feature_levels=2,
        positional_encoding=dict(num_feats=embed_dims // 2),
        encoder=dict(num_layers=1,
                     layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=1, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4,
                               attn_drop={dropout},
                               dropout_layer=dict(type='Dropout',
                                                  drop_prob={dropout})),
            cross_attn_cfg=attn, ffn_cfg=ffn))),
    bbox_head=dict(embed_dims=embed_dims),
    test_cfg=dict(max_per_img=20))
find_unused_parameters = False
scale = (128, 96)
ann_file = {ann_file!r}
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=ann_file, indices={train_images},
                 pipeline=[
                     dict(type='LoadImageFromFile'),
                     dict(type='LoadAnnotations', with_bbox=True),
                     dict(type='RandomFlip', prob=[{flip}, {flip}],
                          direction=['horizontal', 'vertical']),
                     dict(type='Resize', scale=scale, keep_ratio=True),
                     dict(type='PackDetInputs')]))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=ann_file, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=ann_file, classwise=False)
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_begin={val_begin})
param_scheduler = [dict(type='MultiStepLR', begin=0, end={max_epochs},
                        by_epoch=True, milestones=[1], gamma=0.1)]
randomness = dict(seed=0, deterministic=True)
# mmdet's plain visualization hook, not drawing; no drawing hooks
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(max_keep_ckpts=1),
                     visualization=dict(_delete_=True,
                                        type='DetVisualizationHook'))
custom_hooks = []
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(vis_backends=vis_backends)
'''


def bccd_annotations(folder: Path, num_images: int) -> Path:
    """The first ``num_images`` of BCCD's train split as COCO json.

    Converted by our VOC converter into ``folder``, then cut to those
    images and their boxes (so COCO evaluation covers exactly them).

    Returns:
        Path: ``folder/annotations/first_<num_images>.json``.
    """
    from ddetr_plugin.datasets.voc_to_coco import convert_voc_to_coco
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # BCCD's two zero-size boxes
        stats = convert_voc_to_coco(str(shared_data_dir('bccd', 'BCCD')),
                                    str(folder), splits=('train', ),
                                    classes=BCCD_CLASSES)
    coco = json.loads(Path(stats['train']['ann_file']).read_text())
    coco['images'] = coco['images'][:num_images]
    kept = {image['id'] for image in coco['images']}
    coco['annotations'] = [a for a in coco['annotations']
                           if a['image_id'] in kept]
    path = folder / 'annotations' / f'first_{num_images}.json'
    path.write_text(json.dumps(coco))
    return path


def write_tiny_config(path: Path, ann_file: Path, *, dropout=0.0, flip=0.0,
                      batch_size=2, train_images=4, max_epochs=3,
                      val_begin=1, with_box_refine=True, as_two_stage=False,
                      extra='', base=None) -> Path:
    """Write a tiny config inheriting the BCCD demo config to ``path``.

    Args:
        path (Path): The ``.py`` file to write.
        ann_file (Path): COCO json of :func:`bccd_annotations` (training
            uses its first ``train_images``, validation and test all).
        dropout (float): Every dropout probability.
        flip (float): Probability of each of the two flips.
        batch_size (int): Training images per process and iteration.
        train_images (int): How many images are trained on.
        max_epochs (int): Epochs (lr x0.1 after epoch 1).
        val_begin (int): First validated epoch (> max_epochs: none).
        with_box_refine, as_two_stage (bool): The model variant.
        extra (str): Config lines appended at the end.
        base (str, optional): What the config inherits instead of the
            repository's BCCD demo config file, e.g. the same config of an
            installed package, ``BCCD_PACKAGE_CONFIG``.

    Returns:
        Path: ``path``.
    """
    path.write_text(_TINY.format(
        base=str(base or BCCD_CONFIG), ann_file=str(ann_file), dropout=dropout,
        flip=flip, batch_size=batch_size, train_images=train_images,
        max_epochs=max_epochs, val_begin=val_begin,
        with_box_refine=with_box_refine, as_two_stage=as_two_stage) + extra)
    return path


def validation_runner(cfg, work_dir: Path):
    """A Runner of ``cfg`` that only validates, writing to ``work_dir``.

    Training, testing and checkpointing are removed from ``cfg`` (in
    place), and the visualizer gets a name of its own: mmengine reuses a
    visualizer of the same name made by an earlier test in this process
    (with that test's ``save_dir``).
    """
    from mmengine.runner import Runner
    cfg.work_dir = str(work_dir)
    cfg.visualizer.name = f'visualizer_{Path(work_dir).parent.name}'
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler', 'test_dataloader', 'test_cfg',
                'test_evaluator', 'auto_scale_lr'):
        cfg[key] = None  # validation only
    cfg.default_hooks.checkpoint = None  # save_best needs a training run
    return Runner.from_cfg(cfg)


def tool_env(threads=1, **extra) -> dict:
    """Environment of a tool subprocess: ``tests/`` importable (for the
    hooks of ``helpers.fault_injection``), ``threads`` OpenMP threads."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(
                   [str(TESTS), str(REPO_ROOT),
                    os.environ.get('PYTHONPATH', '')]))
    env.update({key: str(value) for key, value in extra.items()})
    return env


def run_tool(*args, timeout=300, check=True, env=None, cwd=REPO_ROOT):
    """Run ``args`` (a tool script and its arguments, or ``bash`` and a
    script) from ``cwd`` (the repository root), with ``env``
    (:func:`tool_env` by default); return the completed process (text
    stdout and stderr).

    A Python script runs in a process forked from this test process's
    tool server (``helpers.tool_server``: the same as a fresh interpreter,
    without its 9 s of imports), unless ``DDETR_TEST_FRESH_PROCESSES=1``."""
    command = [str(a) for a in args]
    if command[0].endswith('.py') and tool_server.enabled():
        # forked from a server with torch/mmengine/mmdet imported
        proc = tool_server.ToolServer.get(tool_env()).run(
            command, cwd, env or tool_env(), timeout)
    else:
        if command[0].endswith('.py'):
            command.insert(0, sys.executable)
        proc = subprocess.run(command, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout,
                              env=env or tool_env())
    if check:
        assert proc.returncode == 0, (proc.stdout[-4000:] +
                                      proc.stderr[-6000:])
    return proc


def start_tool(*args, log: Path, env=None, cwd=REPO_ROOT,
               new_session=False):
    """Start the tool script ``args[0]`` with its arguments, stdout and
    stderr to the file ``log``; return its process (``subprocess.Popen``,
    or the same interface for a process forked by the tool server, see
    :func:`run_tool`)."""
    command = [str(a) for a in args]
    env = env or tool_env()
    if tool_server.enabled():
        return tool_server.ToolServer.get(tool_env()).start(
            command, cwd, env, log, new_session=new_session)
    with open(log, 'w') as out:
        return subprocess.Popen([sys.executable] + command, cwd=cwd,
                                env=env, stdout=out,
                                stderr=subprocess.STDOUT,
                                start_new_session=new_session)


def free_port() -> int:
    """A TCP port nobody listens on now, for torchrun's rendezvous
    (``PORT`` of ``tools/dist_train.sh``); also used by
    ``benchmarks/bench_distributed.py``.

    Returns:
        int: the port, on 127.0.0.1 (free when this returns; another
        process may take it before torchrun does).
    """
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def load_checkpoint(path: Path) -> dict:
    """A Runner checkpoint, loaded with torch's safe default."""
    import ddetr_plugin  # noqa: F401  (allow-lists the Runner types)
    return torch.load(path, map_location='cpu')


def last_checkpoint(work_dir: Path) -> Path:
    """The file ``work_dir/last_checkpoint`` names."""
    return Path((work_dir / 'last_checkpoint').read_text().strip())


def scalar_records(work_dir: Path) -> list:
    """Every JSON record of every ``vis_data/scalars.json`` in
    ``work_dir``, run by run."""
    return [json.loads(line)
            for path in sorted(work_dir.glob('*/vis_data/scalars.json'))
            for line in path.read_text().splitlines()]
