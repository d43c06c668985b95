"""Run-time support for mmengine (safe checkpoint loading)."""
from .checkpoint import register_safe_checkpoint_types, safe_checkpoint_globals

__all__ = ['register_safe_checkpoint_types', 'safe_checkpoint_globals']
