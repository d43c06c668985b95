"""Dropout layers with counter-based masks (:func:`ddetr_plugin.ops.
counter_dropout`), and the swap that puts them in place of ``nn.Dropout``
(and of ``nn.ReLU`` + ``nn.Dropout`` in an FFN, and of the attention
weights' dropout inside ``nn.MultiheadAttention``)."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
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


class CounterDropoutMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose dropout on the attention weights is
    counter dropout (:func:`ddetr_plugin.ops.counter_dropout`) instead of
    torch's serial Bernoulli draws: the same parameters, keys and
    arithmetic as torch's ``need_weights`` path (``F.
    multi_head_attention_forward``: scaled ``q``, ``baddbmm`` with the
    mask, softmax, dropout, ``bmm``, output projection), so the outputs
    equal torch's wherever the dropout is inactive (eval, ``dropout=0``)
    and, in training, torch's with its dropout swapped for counter
    dropout. It runs only in training with ``dropout > 0``, on the CPU, for
    batched sequence-first inputs of the plain layout (packed input
    projection, no ``bias_k``/``bias_v``, no ``add_zero_attn``, not
    ``is_causal``, not ``batch_first``); everything else is torch's
    ``forward``.

    Args and returns: those of ``nn.MultiheadAttention``; ``query`` (L, N,
    E), ``key``/``value`` (S, N, E), ``attn_mask`` (L, S) or (N * heads,
    L, S), bool (True: not attended) or float (added), ``key_padding_mask``
    (N, S) bool (True: padded). Returns ``(output (L, N, E), weights)``,
    the weights averaged over heads (N, L, S) or per head (N, heads, L, S)
    if ``need_weights``, else None.
    """

    def forward(self,
                query: torch.Tensor,
                key: torch.Tensor,
                value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None,
                need_weights: bool = True,
                attn_mask: Optional[torch.Tensor] = None,
                average_attn_weights: bool = True,
                is_causal: bool = False
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if not (self.training and self.dropout > 0.0
                and query.device.type == 'cpu' and query.dim() == 3
                and self._qkv_same_embed_dim and self.bias_k is None
                and not self.add_zero_attn and not is_causal
                and not self.batch_first):
            return super().forward(
                query, key, value, key_padding_mask=key_padding_mask,
                need_weights=need_weights, attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal)
        target_len, batch, embed_dim = query.shape
        source_len = key.shape[0]
        heads, head_dim = self.num_heads, self.head_dim
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        # (L, N, E) -> (L, N * heads, head_dim) -> (N * heads, L, head_dim)
        q = F.linear(query, w_q, b_q).view(target_len, batch * heads,
                                           head_dim).transpose(0, 1)
        k = F.linear(key, w_k, b_k).view(source_len, batch * heads,
                                         head_dim).transpose(0, 1)
        v = F.linear(value, w_v, b_v).view(source_len, batch * heads,
                                           head_dim).transpose(0, 1)
        mask = self._additive_mask(attn_mask, key_padding_mask, q.dtype,
                                   batch, source_len)
        q_scaled = q * math.sqrt(1.0 / float(head_dim))
        if mask is not None:
            weights = torch.baddbmm(mask, q_scaled, k.transpose(-2, -1))
        else:
            weights = torch.bmm(q_scaled, k.transpose(-2, -1))
        # (N * heads, L, S)
        weights = counter_dropout(weights.softmax(-1), self.dropout)
        # (N * heads, L, head_dim) -> (L * N, E)
        output = torch.bmm(weights, v).transpose(0, 1).reshape(
            target_len * batch, embed_dim)
        output = F.linear(output, self.out_proj.weight, self.out_proj.bias)
        output = output.view(target_len, batch, embed_dim)
        if not need_weights:
            return output, None
        weights = weights.view(batch, heads, target_len, source_len)
        return output, weights.mean(1) if average_attn_weights else weights

    def _additive_mask(self, attn_mask: Optional[torch.Tensor],
                       key_padding_mask: Optional[torch.Tensor],
                       dtype: torch.dtype, batch: int,
                       source_len: int) -> Optional[torch.Tensor]:
        """``attn_mask`` and ``key_padding_mask`` as one float mask added to
        the attention logits (-inf where not attended), broadcastable to
        (N * heads, L, S); None if both are None."""

        def additive(mask):
            if mask is None or mask.dtype != torch.bool:
                return mask
            return torch.zeros_like(mask, dtype=dtype).masked_fill_(
                mask, float('-inf'))

        mask = additive(attn_mask)
        if key_padding_mask is not None:
            # (N, S) -> (N * heads, 1, S)
            padding = additive(key_padding_mask).view(
                batch, 1, 1, source_len).expand(-1, self.num_heads, -1,
                                                -1).reshape(
                                                    -1, 1, source_len)
            mask = padding if mask is None else mask + padding
        return mask


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
    attention). An ``nn.MultiheadAttention`` with ``dropout > 0`` (its
    dropout is a float argument, not a module) becomes a
    :class:`CounterDropoutMultiheadAttention`, the same module with
    counter dropout on its attention weights, and counts as one.

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
    for attention in list(module.modules()):
        if type(attention) is nn.MultiheadAttention and attention.dropout > 0:
            # the same module and parameters, counter dropout on the
            # attention weights
            attention.__class__ = CounterDropoutMultiheadAttention
            replaced += 1
    return replaced
