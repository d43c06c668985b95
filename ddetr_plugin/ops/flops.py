"""FLOP count of the MSDA op for mmengine's ``FlopAnalyzer``.

mmengine's complexity analysis (``mmengine.analysis``, run by mmdet's
``tools/analysis_tools/get_flops.py``) traces the model with ``torch.jit``
and counts the operators it has a handle for; an operator without one is
reported as unsupported and counted as 0. Our compiled op
``ddetr_plugin::multi_scale_deformable_attn`` is counted by
:func:`msda_flop_jit` (flops) and by mmengine's ``generic_activation_jit``
(activations: its output elements, ``B * N_q * M * D``, as mmengine counts
those of ``aten::linear`` and ``aten::matmul``), which
:func:`register_complexity_handles` (run when ``ddetr_plugin`` is imported)
adds to the analyzers' default handles.

Counting convention: mmengine's (and fvcore's), one fused multiply-add is
one flop (``aten::linear`` of an (N, C_in) input: ``N * C_in * C_out``;
bilinear ``aten::grid_sampler``: 4 per output element).
"""
from typing import Any, List

#: the traced name of the compiled MSDA op (``csrc/msda.cpp``)
MSDA_OP = 'ddetr_plugin::multi_scale_deformable_attn'
#: multiply-adds per sampled point and channel: 4 bilinear corners, then
#: the attention weight
MACS_PER_SAMPLE = 5


def msda_flops(batch: int, num_queries: int, num_heads: int,
               num_levels: int, num_points: int, head_dim: int) -> int:
    """Multiply-adds of one multi-scale deformable attention call.

    Each of the ``B * N_q * M * L * K`` sampling points (batch, query,
    head, level, point) reads a ``D``-channel value bilinearly from its 4
    neighbouring pixels (4 multiply-adds per channel) and adds it to the
    output weighted by its attention weight (1 more)::

        flops = 5 * B * N_q * M * L * K * D

    The per-point arithmetic that does not depend on ``D`` (the pixel
    coordinates and the 4 bilinear weights) is not counted, as mmengine's
    ``aten::grid_sampler`` handle does not count it either; the value and
    offset projections around the op are ``aten::linear`` and counted by
    mmengine. Neither depends on the feature maps' size ``S``: the op's
    cost is linear in the number of queries, not in ``S``.

    Args:
        batch (int): B.
        num_queries (int): N_q, queries (encoder: every token, S).
        num_heads (int): M.
        num_levels (int): L, feature levels.
        num_points (int): K, sampling points per head and level.
        head_dim (int): D, channels per head (embed_dims / M).

    Returns:
        int: the multiply-adds.
    """
    return (MACS_PER_SAMPLE * batch * num_queries * num_heads * num_levels *
            num_points * head_dim)


def msda_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """mmengine ``FlopAnalyzer`` handle of :data:`MSDA_OP`.

    Args:
        inputs (list[torch._C.Value]): the traced op's inputs: ``value``
            (B, S, M, D), ``spatial_shapes``, ``level_start_index``,
            ``sampling_locations`` (B, N_q, M, L, K, 2),
            ``attention_weights``.
        outputs (list[torch._C.Value]): its output (B, N_q, M * D).

    Returns:
        int: :func:`msda_flops` of the traced shapes.

    Raises:
        ValueError: the trace has no complete shape for ``value`` or
            ``sampling_locations``, or they do not have 4 and 6 dims.
    """
    from mmengine.analysis.jit_handles import get_shape
    value, locations = get_shape(inputs[0]), get_shape(inputs[3])
    if value is None or locations is None or len(value) != 4 \
            or len(locations) != 6:
        raise ValueError(
            f'{MSDA_OP}: cannot count flops without the shapes of value '
            f'(B, S, num_heads, head_dim) and sampling_locations (B, '
            f'num_queries, num_heads, num_levels, num_points, 2), got '
            f'{value} and {locations}')
    batch, num_queries, num_heads, num_levels, num_points, _ = locations
    return msda_flops(batch, num_queries, num_heads, num_levels, num_points,
                      value[3])


#: operator name -> handle, for ``FlopAnalyzer(...).set_op_handle(**...)``
FLOP_HANDLES = {MSDA_OP: msda_flop_jit}


def register_complexity_handles() -> None:
    """Add our op to mmengine's default flop and activation handles.

    Every ``FlopAnalyzer`` and ``ActivationAnalyzer`` built afterwards
    (also inside ``get_model_complexity_info``, which mmdet's
    ``get_flops.py`` calls and which takes no handles) counts our op:
    :data:`FLOP_HANDLES`, and the output elements as activations. Entries
    already there are kept.
    """
    from mmengine.analysis import complexity_analysis
    from mmengine.analysis.jit_handles import generic_activation_jit
    for name, handle in FLOP_HANDLES.items():
        complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.setdefault(
            name, handle)
        complexity_analysis._DEFAULT_SUPPORTED_ACT_OPS.setdefault(
            name, generic_activation_jit())
