"""Checkpoints of every layout load into ``DeformableDETR`` as they are.

:func:`convert_layout_on_load` is a ``load_state_dict`` pre-hook, which
``DeformableDETR`` registers on itself: whatever path loads the weights
(``load_from``, ``init_cfg=dict(type='Pretrained', checkpoint=...)``,
``mmengine.runner.load_checkpoint``, ``load_state_dict``), an mmdet,
original-repository or Hugging Face state_dict is converted to ours first
(:func:`~.layouts.any_to_ddetr`), with a log line naming the layout found.
``PretrainedClassesHook`` (:mod:`ddetr_plugin.engine.hooks`) adds the
fine-tuning on other classes for ``load_from``.
"""
from typing import Mapping

from mmengine.logging import print_log
from torch import Tensor, nn

from .layouts import any_to_ddetr, detect_layout, unwrap_state_dict

#: a neck key of checkpoints whose neck convolutions have biases
NECK_BIAS_KEY = 'neck.input_projs.0.conv.bias'


def check_neck_bias(model: nn.Module, state_dict: Mapping[str, Tensor]
                    ) -> None:
    """Refuse a checkpoint whose neck convolutions have biases for a model
    whose neck convolutions have none.

    Args:
        model (nn.Module): the ``DeformableDETR`` being loaded.
        state_dict (Mapping[str, Tensor]): weights in our layout.

    Raises:
        ValueError: the checkpoint has :data:`NECK_BIAS_KEY` (original and
            Hugging Face weights) and the model does not; the message says
            to set ``model.neck.bias=True``.
    """
    if NECK_BIAS_KEY in state_dict and \
            NECK_BIAS_KEY not in model.state_dict():
        raise ValueError(
            f'the checkpoint has {NECK_BIAS_KEY} (original-repository and '
            'Hugging Face weights have neck convolutions with biases); set '
            'model.neck.bias=True in the config')


def convert_layout_on_load(module: nn.Module, state_dict: dict, prefix: str,
                           *args) -> None:
    """``load_state_dict`` pre-hook: convert ``state_dict`` in place to our
    layout (keys under ``prefix``), logging the layout found.

    Registered by ``DeformableDETR``; a state_dict already in our layout is
    left as it is. An original checkpoint's ``model`` entry is unwrapped.
    A state_dict of no known layout (e.g. partial) is left to torch's own
    missing/unexpected-key report.

    Args:
        module (nn.Module): the module being loaded (torch's pre-hook
            argument).
        state_dict (dict): the whole state_dict given to
            ``load_state_dict``, changed in place.
        prefix (str): the module's key prefix in ``state_dict``.
        *args: torch's other pre-hook arguments (unused).

    Raises:
        ValueError: see :func:`check_neck_bias`.
        KeyError: see the layout's converter.
    """
    own = {k[len(prefix):]: v for k, v in state_dict.items()
           if k.startswith(prefix)}
    weights = unwrap_state_dict(own)
    try:
        layout = detect_layout(weights)
    except ValueError:  # partial or foreign: torch reports the keys
        return
    if layout == 'ddetr' and weights is own:
        return
    converted, layout = any_to_ddetr(weights)
    print_log(f'checkpoint in the {layout} layout: converted to '
              "ddetr_plugin's on load", logger='current')
    check_neck_bias(module, converted)
    for key in own:
        del state_dict[prefix + key]
    state_dict.update({prefix + k: v for k, v in converted.items()})
