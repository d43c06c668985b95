"""ddetr_plugin: Deformable DETR (arXiv 2010.04159) as an MMDetection 3.x plugin.

Importing the package loads the compiled operator library
(``torch.ops.ddetr_plugin``), allow-lists the exact types of mmengine
Runner checkpoints for torch's safe (``weights_only``) loading, registers
the ``ddetr_plugin::<path>`` configs of the package's ``.mim/configs`` with
mmengine (``utils.package_configs``) and the FLOP and activation counts of
the MSDA op with mmengine's complexity analysis (``ops.flops``). Model
components register themselves in the ``ddetr_plugin`` registry scope when
mmengine first resolves a name there (``default_scope='ddetr_plugin'`` in a
config), see ``ddetr_plugin.registry``.

Layers, bottom to top: a subpackage imports only its own layer and the
ones listed before it (``tests/test_layering.py`` checks every import, also
those inside functions, and that no modules import each other in a
circle):

1. ``registry``, ``version``, ``utils`` (crash-safe file writes), and the
   compiled ``_C``: nothing of ours;
2. ``ops``: the compiled operators and their PyTorch references;
3. ``converters``: checkpoint layouts (mmdet, original repository, Hugging
   Face, third-party backbones) to ours, and the load pre-hook that applies
   them;
4. ``models``: the detector's components (ops, converters' load hook);
5. ``datasets``: annotation conversion and checks, training transforms, the
   test-time preprocessing;
6. ``evaluation``: metrics (COCO's, keeping its precision-recall curves);
7. ``visualization``: pictures of what a model does (models, datasets), the
   per-class precision-recall curves, the MLflow visualizer backend;
8. ``engine``: what mmengine's Runner runs: runner, hooks, optimizer
   wrapper, safe checkpoint loading and the loaders of released checkpoints;
9. ``deployment``: ONNX export of a detector;
10. ``apis``: inference with either backend (PyTorch, the exported ONNX
    file).

This root module sits above them all.
"""
from . import ops
from .engine import register_safe_checkpoint_types
from .ops.flops import register_complexity_handles
from .utils.package_configs import register_config_scope
from .version import __version__

register_safe_checkpoint_types()
register_config_scope()
register_complexity_handles()

__all__ = ['ops', '__version__']
