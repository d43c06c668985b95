"""ddetr_plugin: Deformable DETR (arXiv 2010.04159) as an MMDetection 3.x plugin.

Importing the package loads the compiled operator library
(``torch.ops.ddetr_plugin``) and allow-lists the exact types of mmengine
Runner checkpoints for torch's safe (``weights_only``) loading. Model
components register themselves in the ``ddetr_plugin`` registry scope when
mmengine first resolves a name there (``default_scope='ddetr_plugin'`` in a
config), see ``ddetr_plugin.registry``.
"""
from . import ops
from .engine import register_safe_checkpoint_types
from .version import __version__

register_safe_checkpoint_types()

__all__ = ['ops', '__version__']
