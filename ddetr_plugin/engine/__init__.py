"""Run-time support for mmengine: safe checkpoint loading and the loaders
and hook for pretrained weights of every layout. Importing it registers
them in the ``ddetr_plugin`` scope."""
from .checkpoint import register_safe_checkpoint_types, safe_checkpoint_globals
from .pretrained import PretrainedClassesHook, register_pretrained_loaders

# Hugging Face .safetensors and original-repository files (see .pretrained)
register_pretrained_loaders()

__all__ = [
    'PretrainedClassesHook', 'register_pretrained_loaders',
    'register_safe_checkpoint_types', 'safe_checkpoint_globals'
]
