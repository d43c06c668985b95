"""Dropout layers with counter-based masks (:func:`ddetr_plugin.ops.
counter_dropout`), and the swap that puts them in place of ``nn.Dropout``."""
import torch
from torch import nn

from ddetr_plugin.ops import counter_dropout


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


def use_counter_dropout(module: nn.Module) -> int:
    """Replace every ``nn.Dropout`` in ``module`` by a :class:`CounterDropout`
    of the same ``p``, in place: ``nn.Dropout`` and its subclasses that keep
    its ``forward`` (mmcv's ``Dropout``, the ``dropout_layer`` of mmcv's
    attention). The dropout inside ``nn.MultiheadAttention`` (a float
    argument, not a module) stays torch's.

    Args:
        module (nn.Module): e.g. a transformer.

    Returns:
        int: the number of layers replaced.
    """
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.Dropout)
                    and not isinstance(child, CounterDropout)
                    and type(child).forward is nn.Dropout.forward):
                setattr(parent, name, CounterDropout(child.p))
                replaced += 1
    return replaced
