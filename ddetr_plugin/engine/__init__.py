"""Run-time support for mmengine: safe checkpoint loading, and the runner,
hooks (:mod:`.hooks`, one per module) and optimizer wrapper of
``configs/_base_/default_runtime.py`` (multi-process training, crash-safe
checkpoints, exact resume, non-finite loss checks, mixed precision on CPU
and CUDA, validation pictures). Importing it registers them in the
``ddetr_plugin`` scope."""
from .amp_optim_wrapper import CPUAmpOptimWrapper
from .checkpoint import register_safe_checkpoint_types, safe_checkpoint_globals
from .hooks import (CheckFiniteLossHook, CrashSafeCheckpointHook,
                    FixedImagesVisualizationHook, PretrainedClassesHook,
                    SamplingPointsVisualizationHook)
from .pretrained_loaders import register_pretrained_loaders
from .runner import DeformableDETRRunner

# Hugging Face .safetensors and original-repository files
# (see .pretrained_loaders)
register_pretrained_loaders()

__all__ = [
    'CPUAmpOptimWrapper', 'CheckFiniteLossHook', 'CrashSafeCheckpointHook',
    'DeformableDETRRunner', 'FixedImagesVisualizationHook',
    'PretrainedClassesHook', 'SamplingPointsVisualizationHook',
    'register_pretrained_loaders',
    'register_safe_checkpoint_types', 'safe_checkpoint_globals'
]
