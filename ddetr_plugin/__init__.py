"""ddetr_plugin: Deformable DETR (arXiv 2010.04159) as an MMDetection 3.x plugin.

Importing the package loads the compiled operator library
(``torch.ops.ddetr_plugin``). Model components register themselves in the
``ddetr_plugin`` registry scope when mmengine first resolves a name there
(``default_scope='ddetr_plugin'`` in a config), see ``ddetr_plugin.registry``.
"""
from . import ops
from .version import __version__

__all__ = ['ops', '__version__']
