"""Dropout layers with counter-based masks (:func:`ddetr_plugin.ops.
counter_dropout`), and the swap that puts them in place of ``nn.Dropout``
(and of ``nn.ReLU`` + ``nn.Dropout`` in an FFN)."""
import torch
from torch import nn

from ddetr_plugin.ops import counter_dropout, relu_counter_dropout


class CounterDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, no parameters or buffers) whose masks are a
    hash of (seed, element index) on the CPU: one vectorised pass instead of
    torch's serial Bernoulli draws and a stored mask. Same keep probability
    and scaling; different draws than ``nn.Dropout``. On other devices it is
    ``nn.Dropout``. ``inplace`` is not supported (the op writes a new
    tensor).

    Args:
        p (float): probability of zeroing an element, in [0, 1].

    Raises:
        ValueError: ``p`` outside [0, 1].
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p=p)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Args: input (Tensor): any shape, floating point.

        Returns: Tensor, the shape and dtype of ``input``."""
        return counter_dropout(input, self.p, self.training)


class ReLUCounterDropout(CounterDropout):
    """``nn.ReLU`` followed by :class:`CounterDropout` of the same ``p``, in
    one pass (:func:`ddetr_plugin.ops.relu_counter_dropout`): the same
    output, bit for bit, without the ReLU's output tensor in between. In
    eval mode (or ``p == 0``) it is the ReLU.

    Args:
        p (float): probability of zeroing an element, in [0, 1].

    Raises:
        ValueError: ``p`` outside [0, 1].
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Args: input (Tensor): any shape, floating point.

        Returns: Tensor, the shape and dtype of ``input``."""
        return relu_counter_dropout(input, self.p, self.training)


def _fuse_relu_dropout(sequential: nn.Sequential) -> int:
    """Replace each ``nn.ReLU`` directly followed by a :class:`CounterDropout`
    in ``sequential`` (mmcv's FFN: ``Linear, ReLU, Dropout``) by one
    :class:`ReLUCounterDropout` at the ReLU's index; the parameter-free
    layers after it move up by one, so state_dict keys do not change.
    Returns the number fused."""
    fused, index = 0, 0
    while index + 1 < len(sequential):
        first, second = sequential[index], sequential[index + 1]
        if (type(first) is nn.ReLU and type(second) is CounterDropout):
            sequential[index] = ReLUCounterDropout(second.p)
            del sequential[index + 1]
            fused += 1
        index += 1
    return fused


def use_counter_dropout(module: nn.Module) -> int:
    """Replace every ``nn.Dropout`` in ``module`` by a :class:`CounterDropout`
    of the same ``p``, in place: ``nn.Dropout`` and its subclasses that keep
    its ``forward`` (mmcv's ``Dropout``, the ``dropout_layer`` of mmcv's
    attention). The dropout inside ``nn.MultiheadAttention`` (a float
    argument, not a module) stays torch's.

    Then, within every ``nn.Sequential``, an ``nn.ReLU`` directly
    followed by such a dropout (mmcv's FFN: ``Linear, ReLU, Dropout``)
    becomes one :class:`ReLUCounterDropout`: the same outputs and
    gradients, one pass instead of two, and no ReLU output kept for the
    backward. State_dict keys do not change (neither layer has
    parameters or buffers).

    Args:
        module (nn.Module): e.g. a transformer.

    Returns:
        int: the number of dropout layers replaced (fused ones included).
    """
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.Dropout)
                    and not isinstance(child, CounterDropout)
                    and type(child).forward is nn.Dropout.forward):
                setattr(parent, name, CounterDropout(child.p))
                replaced += 1
    for sequential in list(module.modules()):
        if isinstance(sequential, nn.Sequential):
            _fuse_relu_dropout(sequential)
    return replaced
