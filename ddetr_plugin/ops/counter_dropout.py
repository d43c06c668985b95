"""``torch.ops.ddetr_plugin.counter_dropout``: dropout whose mask is a hash of
(seed, element index), computed in the kernel and recomputed in the
backward, never drawn from a random number generator nor stored.

Why: torch's CPU dropout draws one Bernoulli sample per element from a
serial generator, then multiplies by a float mask it keeps for the
backward; in Deformable DETR's encoder (tokens x 1024 FFN activations) that
is 13-16% of a CPU training step (docs/benchmarks.md). This op does the same
job in one vectorised, multi-threaded pass. Semantics
(``csrc/counter_dropout.cpp``, CPU kernel
``csrc/cpu/counter_dropout_kernel.cpp``): each element is kept with
probability ``1 - p`` (to within 2^-32) and scaled by ``1 / (1 - p)``, as
torch's ``dropout``; for ``p`` within 2^-33 of 1, and ``p == 1``, no element
is kept (output ``input * 0``, gradient ``grad * 0``, as torch's CPU
dropout at ``p == 1``: zeros, never a kept element scaled by ~1e10). The
masks differ draw for draw from torch's, so a layer uses it only when asked
(``counter_dropout=True`` of
:class:`~ddetr_plugin.models.layers.DeformableDETRTransformer`). Seeds come
from torch's default CPU generator, so ``torch.manual_seed`` (mmengine's
``randomness.seed``) makes runs reproducible and resumable as before.

``torch.ops.ddetr_plugin.relu_counter_dropout`` is the same dropout of
``relu(input)`` in one pass (:func:`relu_counter_dropout`), for the FFN's
activation and dropout.
"""
import torch
import torch.nn.functional as F

from ddetr_plugin import _C  # noqa: F401  (registers the operator library)

_OP = 'ddetr_plugin::counter_dropout'


@torch.library.register_fake(_OP)
def _counter_dropout_fake(input, p, seed):
    torch._check_type(
        input.is_floating_point(),
        lambda: f'counter_dropout: input must be floating point, got '
        f'{input.dtype}')
    torch._check_value(
        0.0 <= p <= 1.0, lambda: f'counter_dropout: p must be in [0, 1], '
        f'got {p}')
    return torch.empty_like(input, memory_format=torch.contiguous_format)


@torch.library.register_fake('ddetr_plugin::relu_counter_dropout')
def _relu_counter_dropout_fake(input, p, seed):
    return _counter_dropout_fake(input, p, seed)


@torch.library.register_fake('ddetr_plugin::relu_counter_dropout_backward')
def _relu_counter_dropout_backward_fake(grad_output, output, p):
    torch._check(
        grad_output.shape == output.shape,
        lambda: 'relu_counter_dropout_backward: grad_output of shape '
        f'{tuple(grad_output.shape)} for an output of shape '
        f'{tuple(output.shape)}')
    return _counter_dropout_fake(output, p, 0)


def _setup_context(ctx, inputs, output):
    _, ctx.p, ctx.seed = inputs


def _backward(ctx, grad_output):
    # d output / d input = the same mask and scale: the op on grad_output
    return torch.ops.ddetr_plugin.counter_dropout(grad_output, ctx.p,
                                                  ctx.seed), None, None


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


def _relu_setup_context(ctx, inputs, output):
    ctx.p = inputs[1]
    ctx.save_for_backward(output)


def _relu_backward(ctx, grad_output):
    # the gradient passes where the output is > 0: kept, and input > 0
    output, = ctx.saved_tensors
    return torch.ops.ddetr_plugin.relu_counter_dropout_backward(
        grad_output, output, ctx.p), None, None


torch.library.register_autograd(
    'ddetr_plugin::relu_counter_dropout', _relu_backward,
    setup_context=_relu_setup_context)


def counter_dropout(input: torch.Tensor, p: float = 0.5,
                    training: bool = True) -> torch.Tensor:
    """Dropout with counter-based masks on the CPU (see the module docstring).

    Same contract as ``torch.nn.functional.dropout(input, p, training)``:
    the identity when not training or ``p == 0``, ``input * 0`` (zeros
    for finite input) when ``p == 1`` or within 2^-33 of 1; elsewhere each
    element is zeroed with probability ``p`` and the others are scaled by
    ``1 / (1 - p)``. On devices other than the CPU it is
    torch's ``dropout`` (its CUDA kernel already fuses a counter-based
    generator).

    Args:
        input (Tensor): any shape, floating point (float32/64, float16,
            bfloat16).
        p (float): probability of zeroing an element, in [0, 1].
        training (bool): apply dropout.

    Returns:
        Tensor: the shape and dtype of ``input``, contiguous (``input``
        itself when not training or ``p == 0``).

    Raises:
        ValueError: ``p`` outside [0, 1].
        TypeError: non-floating ``input``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f'counter_dropout: p must be in [0, 1], got {p}')
    if not training or p == 0.0:
        return input
    if p == 1.0 or input.device.type != 'cpu':
        # p == 1: torch's input * 0, which the op also gives, without
        # drawing a seed (torch's dropout draws nothing either)
        return F.dropout(input, p, True)
    # one 63-bit draw of torch's CPU generator per call
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    return torch.ops.ddetr_plugin.counter_dropout(input, p, seed)


def relu_counter_dropout(input: torch.Tensor, p: float = 0.5,
                         training: bool = True) -> torch.Tensor:
    """``counter_dropout(relu(input), p, training)`` in one pass.

    The FFN's activation and dropout (Vaswani et al.'s position-wise FFN,
    as mmcv's ``FFN`` stacks ``ReLU`` and ``Dropout``) fused: on the CPU in
    training the op reads the input once, writes the output once, and keeps
    no ReLU output beside the dropout's; its backward reads only the output
    (the gradient passes where the output is > 0). The same seed draw,
    mask and scale as :func:`counter_dropout`, so the output equals
    ``counter_dropout(torch.relu(input), p, training)`` bit for bit from
    the same random state, and so do the gradients for finite inputs and
    gradients (the fused backward gives 0 where the input is NaN, which
    torch's ReLU backward passes, and where a dropped element's gradient
    is inf or NaN, which the two steps multiply by 0). Not differentiable
    twice.

    Args:
        input (Tensor): any shape, floating point.
        p (float): probability of zeroing an element, in [0, 1].
        training (bool): apply dropout; otherwise only the ReLU.

    Returns:
        Tensor: the shape and dtype of ``input``.

    Raises:
        ValueError: ``p`` outside [0, 1].
        TypeError: non-floating ``input``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(
            f'relu_counter_dropout: p must be in [0, 1], got {p}')
    if not training or p == 0.0:
        return F.relu(input)
    if p == 1.0 or input.device.type != 'cpu':
        return F.dropout(F.relu(input), p, True)
    # the draw of counter_dropout: the same mask from the same state
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    return torch.ops.ddetr_plugin.relu_counter_dropout(input, p, seed)
