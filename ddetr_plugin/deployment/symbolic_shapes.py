"""Keep feature-map sizes symbolic while ``torch.export`` traces the model.

The transformer builds ``spatial_shapes`` with ``torch.as_tensor`` from the
feature maps' sizes and reads them back with ``tolist()`` (encoder reference
points, two-stage proposals, the reference MSDA); ``torch.linspace`` then
takes a size as its number of steps. Traced with dynamic height and width,
``tolist()`` loses where the numbers came from (data-dependent symbols) and
``linspace`` fixes its step count, so the graph would only work at the export
size. :class:`SymbolicSpatialShapes` is a ``TorchFunctionMode`` used only
around the export call (the model code is unchanged) that keeps the link.
"""
from typing import Any, Dict, Tuple

import torch
from torch.overrides import TorchFunctionMode


def _has_symbolic_size(data: Any) -> bool:
    """Whether the (nested) list ``data`` holds a ``torch.SymInt``."""
    if isinstance(data, (list, tuple)):
        return any(_has_symbolic_size(item) for item in data)
    return isinstance(data, torch.SymInt)


def _is_sizes(data: Any) -> bool:
    """Whether ``data`` is a non-empty (nested) list of Python or symbolic
    ints (sizes), e.g. ``[feat.shape[-2:] for feat in mlvl_feats]``."""
    if isinstance(data, (list, tuple)):
        return len(data) > 0 and all(_is_sizes(item) for item in data)
    return isinstance(data, (int, torch.SymInt)) and not isinstance(
        data, bool)


def _nested_list(data: Any) -> Any:
    if isinstance(data, (list, tuple)):
        return [_nested_list(item) for item in data]
    return data


def _stack_sizes(data: Any, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """``torch.as_tensor(data)`` built from scalars, so that symbolic sizes
    in ``data`` stay symbolic."""
    if isinstance(data, list):
        return torch.stack(
            [_stack_sizes(item, dtype, device) for item in data])
    return torch.scalar_tensor(data, dtype=dtype, device=device)


class SymbolicSpatialShapes(TorchFunctionMode):
    """A torch function mode that lets sizes survive a tensor round trip.

    While active:

    * ``torch.as_tensor``, ``torch.tensor`` and ``Tensor.new_tensor`` of
      (nested) lists of ints (sizes, ``torch.SymInt`` or not), e.g.
      ``[feat.shape[-2:] for feat in mlvl_feats]``, are remembered with
      their values; with symbolic sizes they are built by stacking scalar
      tensors (no specialisation);
    * ``unbind`` and ``item`` on such a tensor (what ``tolist()`` runs) give
      back the original sizes, so ``for H, W in spatial_shapes.tolist()``
      sees the symbols of the input's height and width (or, for a static
      export, the export sizes, where the traced fake tensor has no
      values);
    * ``torch.linspace(start, end, steps)`` with a symbolic ``steps``
      becomes ``start + arange(steps) * (end - start) / max(steps - 1, 1)``
      (equal up to rounding in the last bit).

    Everything else runs unchanged. Outside ``torch.export`` it changes
    nothing: the values given back are those the tensors hold.
    """

    def __init__(self) -> None:
        super().__init__()
        # id(tensor) -> (tensor, the Python sizes it was built from)
        self._sizes: Dict[int, Tuple[torch.Tensor, Any]] = {}

    def _known(self, tensor: Any) -> Any:
        entry = self._sizes.get(id(tensor))
        if entry is not None and entry[0] is tensor:
            return entry[1]
        return None

    def _remember(self, data, func, args, kwargs, dtype, device):
        """Build the tensor of sizes ``data`` and remember its values."""
        sizes = _nested_list(data)
        if _has_symbolic_size(sizes):
            out = _stack_sizes(sizes, dtype, device)
        else:
            out = func(*args, **kwargs)
        self._sizes[id(out)] = (out, sizes)
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, '__name__', None)
        if func in (torch.as_tensor, torch.tensor) and _is_sizes(args[0]):
            return self._remember(args[0], func, args, kwargs,
                                  kwargs.get('dtype') or torch.int64,
                                  kwargs.get('device'))
        if func is torch.Tensor.new_tensor and _is_sizes(args[1]):
            return self._remember(args[1], func, args, kwargs,
                                  kwargs.get('dtype') or args[0].dtype,
                                  kwargs.get('device') or args[0].device)
        if func is torch.linspace and isinstance(
                args[2] if len(args) > 2 else kwargs.get('steps'),
                torch.SymInt):
            start, end, steps = args[:3]
            step = (end - start) / torch.sym_max(steps - 1, 1)
            return start + torch.arange(
                steps, dtype=kwargs.get('dtype'),
                device=kwargs.get('device')) * step
        if name == 'item' and self._known(args[0]) is not None:
            return self._known(args[0])
        out = func(*args, **kwargs)
        if name == 'unbind' and self._known(args[0]) is not None:
            for part, sizes in zip(out, self._known(args[0])):
                self._sizes[id(part)] = (part, sizes)
        return out
