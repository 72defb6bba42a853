"""Memoised constants of a forward pass (DCT matrices, band layouts), keyed by what they depend
on: built once per size, dtype and device, then shared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["cached_constant"]

_CONSTANTS: dict[tuple, Any] = {}
T = TypeVar("T", Tensor, tuple)


def cached_constant(key: tuple, build: Callable[[], T]) -> T:
    """``build()`` (a tensor or a tuple of tensors), memoised under ``key``, which must name
    everything the value depends on (size, dtype, device).

    For constants of a forward pass (DCT matrices, band layouts). Built outside inference mode,
    so a constant first made under ``torch.inference_mode()`` can still be saved for backward in
    a later training step. Constants built while a tracer or exporter runs (fake or functional
    tensors) are returned but not cached, and so are constants of a symbolic size (an export
    with dynamic height and width): those are built into the graph from the size. The returned
    tensor is shared: never modify it in place.
    """
    if any(isinstance(part, torch.SymInt) for part in key):
        return build()
    value = _CONSTANTS.get(key)
    if value is None:
        with torch.inference_mode(False), torch.no_grad():
            value = build()
        tensors = value if isinstance(value, tuple) else (value,)
        if all(type(t) is Tensor for t in tensors) and not torch.compiler.is_compiling():
            _CONSTANTS[key] = value
    return value
