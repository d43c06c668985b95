# Runtime of every config: our registry scope first, then mmdet's/mmengine's.
default_scope = 'ddetr_plugin'
# mmengine's Runner plus: gloo/nccl picked for the machine, DDP on CPU,
# atomic checkpoints, random state saved and restored on resume
# (ddetr_plugin/engine/runner.py)
runner_type = 'ddetr_plugin.engine.DeformableDETRRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # mmengine's LoggerHook; under tools/dist_test.sh one process writes
    # the test metrics JSON (mmengine's has every rank write it)
    logger=dict(type='SingleWriterLoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # saved after the epoch's validation, atomically, old files removed last
    checkpoint=dict(type='CrashSafeCheckpointHook', interval=1),
    # stops at the first NaN/inf loss term, naming it and the iteration
    check_finite_loss=dict(type='CheckFiniteLossHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # before the first iteration: the test split's pipeline, test_step,
    # evaluator and drawing on its 2 smallest images, so a mistake that
    # tools/test.py would meet fails now, not after the schedule
    dry_run_test=dict(type='DryRunTestHook'),
    visualization=dict(type='DetVisualizationHook'))

# mmengine's switch: every convolution of the backbone followed by a batch
# norm in eval mode (norm_eval=True, and at inference) runs as one
# convolution with the norm folded into its weights; the same function
# (float rounding), no norm pass over the activations. DeformableDETRRunner
# also applies it in val/test (docs/benchmarks.md, "Batch norms folded")
efficient_conv_bn_eval = ['backbone']

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # backend=None: gloo without CUDA, nccl with it; set it to override
    dist_cfg=dict(backend=None),
)

vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend')
]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
