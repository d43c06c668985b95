"""Run-time support for mmengine: safe checkpoint loading, and the runner,
hooks and optimizer wrapper of ``configs/_base_/default_runtime.py``
(multi-process training, crash-safe checkpoints, exact resume, non-finite
loss checks, mixed precision on CPU and CUDA). Importing it registers them
in the ``ddetr_plugin`` scope."""
from .amp_optim_wrapper import AmpOptimWrapper
from .checkpoint import register_safe_checkpoint_types, safe_checkpoint_globals
from .checkpoint_hook import CrashSafeCheckpointHook
from .finite_loss_hook import CheckFiniteLossHook
from .pretrained import PretrainedClassesHook, register_pretrained_loaders
from .runner import DDETRRunner

# Hugging Face .safetensors and original-repository files (see .pretrained)
register_pretrained_loaders()

__all__ = [
    'AmpOptimWrapper', 'CheckFiniteLossHook', 'CrashSafeCheckpointHook',
    'DDETRRunner', 'PretrainedClassesHook',
    'register_pretrained_loaders',
    'register_safe_checkpoint_types', 'safe_checkpoint_globals'
]
