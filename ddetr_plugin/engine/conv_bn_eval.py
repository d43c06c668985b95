"""mmengine's ``efficient_conv_bn_eval`` switch wherever a model runs.

With ``efficient_conv_bn_eval = ['backbone']`` in a config (our
``configs/_base_/default_runtime.py`` sets it), mmengine traces the named
modules with ``torch.fx`` and runs every convolution followed by a batch
norm in eval mode as one convolution whose weights and bias have the norm
folded in (``W * gamma / sqrt(var + eps)``, ``beta + (b - mean) * gamma /
sqrt(var + eps)``; Xiong et al., "Tune-Mode ConvBN Blocks For Efficient
Transfer Learning", arXiv 2305.11624): the norm's pass over the activations
goes, forward and backward. A norm in training mode (batch statistics)
runs as before. Gradients still reach the convolution's and the norm's
parameters, the state_dict keys do not change, and the outputs are the
same to float rounding (relative differences about 1e-6).

mmengine's Runner turns it on in ``train()`` only;
:func:`turn_on_conv_bn_eval_from_config` does the same for
``DeformableDETRRunner.val``/``test``, ``tools/infer.py`` and the
benchmarks, which build the model without ``Runner.train``.
"""
from typing import List, Optional

from mmengine.config import Config
from mmengine.model.efficient_conv_bn_eval import \
    turn_on_efficient_conv_bn_eval
from torch import nn


def turn_on_conv_bn_eval_from_config(model: nn.Module,
                                     cfg: Config) -> Optional[List[str]]:
    """Apply the config's ``efficient_conv_bn_eval`` to ``model``.

    Args:
        model (nn.Module): the detector (not a DDP wrapper).
        cfg (Config): its config; ``efficient_conv_bn_eval`` is a module
            name or a list of them (e.g. ``['backbone']``), or absent.

    Returns:
        list[str] or None: the modules turned on, None where the config has
        no such key.

    Raises:
        AttributeError: a module name the model does not have.
    """
    modules = cfg.get('efficient_conv_bn_eval', None)
    if not modules:
        return None
    modules = [modules] if isinstance(modules, str) else list(modules)
    turn_on_efficient_conv_bn_eval(model, modules)
    return modules
