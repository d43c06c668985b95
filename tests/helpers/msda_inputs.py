"""Random inputs of the MSDA operator, the same on every device."""
import torch

from ddetr_plugin.ops import level_start_index


def make_msda_inputs(batch=2, num_queries=5, num_heads=2, head_dim=4,
                     shapes=((6, 8), (3, 4)), num_points=3,
                     dtype=torch.float64, device='cpu', spread=(-0.2, 1.2),
                     seed=0):
    """Random inputs of the MSDA operator (shapes in ``csrc/msda.h``).

    Drawn in float64 on the CPU from a generator seeded with ``seed`` (so the
    same arguments give the same values on every device), then cast to
    ``dtype`` and moved to ``device``.

    Args:
        batch, num_queries, num_heads, head_dim, num_points (int): sizes.
        shapes (sequence of (int, int)): ``(H_l, W_l)`` of each level.
        dtype (torch.dtype): floating dtype of value, locations and weights.
        device (str | torch.device): where the tensors are put.
        spread ((float, float)): sampling locations are uniform in this
            range of normalised coordinates; the default reaches outside the
            map on every side.
        seed (int): generator seed.

    Returns:
        tuple: ``(value, spatial_shapes, level_start_index,
        sampling_locations, attention_weights)``: (B, S, M, D) ``dtype``,
        (L, 2) int64, (L,) int64, (B, Q, M, L, P, 2) ``dtype``,
        (B, Q, M, L, P) ``dtype`` softmax-normalised over the points.
    """
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long).reshape(-1, 2)
    num_levels = len(shapes)
    value = torch.randn(batch, int(spatial_shapes.prod(1).sum()), num_heads,
                        head_dim, generator=gen, dtype=torch.float64)
    low, high = spread
    locations = torch.rand(batch, num_queries, num_heads, num_levels,
                           num_points, 2, generator=gen,
                           dtype=torch.float64) * (high - low) + low
    weights = torch.rand(batch, num_queries, num_heads, num_levels,
                         num_points, generator=gen,
                         dtype=torch.float64).softmax(-1)
    return (value.to(device, dtype), spatial_shapes.to(device),
            level_start_index(spatial_shapes).to(device),
            locations.to(device, dtype), weights.to(device, dtype))
