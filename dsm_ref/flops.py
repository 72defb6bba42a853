"""FLOPs and parameters: ``torch.utils.flop_counter`` with the formulas it lacks, and the counts of
a token mixer or an image model built on ``meta`` tensors (nothing is computed).

Conventions (the benchmarks store them with every result, see ``dsm_ref.bench.CONVENTIONS``):

- **FLOPs** come from ``torch.utils.flop_counter``: 2 per multiply-add of matmuls, convolutions
  and attention; elementwise ops, norms and reductions count 0. It does not count FFTs, so we
  register formulas for them: **5 N log2 N** per complex N-point transform and **2.5 N log2 N**
  per real one (``rfft``/``irfft``, and the real-input ``fft`` of Makhoul's DCT); a multi-axis
  FFT is counted as row-column 1D transforms (real along the last axis, complex along the others
  over the half spectrum). We also register the CPU flash-attention kernel (which the counter
  misses) and fix the grouped-convolution backward (which it over-counts by the group count).
  **MACs** (the peers' "GFLOPs") are FLOPs / 2.

:data:`EXTRA_FLOP_FORMULAS` is the ``custom_mapping`` for ``FlopCounterMode``;
:func:`count_flops` applies it to any call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "EXTRA_FLOP_FORMULAS",
    "FlopCount",
    "fft_flops",
    "count_flops",
    "count_params",
    "token_mixer_flops",
    "image_model_flops",
]


def fft_flops(n: int, *, real: bool = False) -> float:
    """FLOPs of one ``n``-point FFT: ``5 n log2 n`` (complex) or ``2.5 n log2 n`` (real)."""
    if n <= 1:
        return 0.0
    return (2.5 if real else 5.0) * n * math.log2(n)


def _axes(shape: Sequence[int], dims: Sequence[int]) -> list[int]:
    return sorted(d % len(shape) for d in dims)


def _fft_r2c_flop(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    """``rfftn`` (or a real-input ``fft``): real along the last axis, complex along the others
    over the half spectrum."""
    axes = _axes(x_shape, dim)
    numel = math.prod(x_shape)
    n_last = x_shape[axes[-1]]
    total = numel / n_last * fft_flops(n_last, real=True)
    half = numel / n_last * (n_last // 2 + 1)
    for axis in axes[:-1]:
        total += half / x_shape[axis] * fft_flops(x_shape[axis])
    return round(total)


def _fft_c2r_flop(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    """``irfftn``: complex along the leading axes (half spectrum), real along the last."""
    axes = _axes(x_shape, dim)
    total = 0.0
    for axis in axes[:-1]:
        total += math.prod(x_shape) / x_shape[axis] * fft_flops(x_shape[axis])
    n_last = out_shape[axes[-1]]
    total += math.prod(out_shape) / n_last * fft_flops(n_last, real=True)
    return round(total)


def _fft_c2c_flop(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    """Complex FFT along each of ``dim``."""
    numel = math.prod(x_shape)
    return round(sum(numel / x_shape[a] * fft_flops(x_shape[a]) for a in _axes(x_shape, dim)))


def _sdpa_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    """Two batched matmuls: ``Q K^T`` and ``P V``."""
    b, h, s_q, d_q = q_shape
    s_k, d_v = k_shape[-2], v_shape[-1]
    return 2 * b * h * s_q * s_k * (d_q + d_v)


def _sdpa_backward_flop(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None,
                        **kwargs) -> int:
    """Five batched matmuls, as flop_counter counts the CUDA kernels: recompute ``Q K^T``, then
    ``dP = dO V^T``, ``dV = P^T dO``, ``dQ = dS K``, ``dK = dS^T Q``."""
    b, h, s_q, d_q = q_shape
    s_k, d_v = k_shape[-2], v_shape[-1]
    return 2 * b * h * s_q * s_k * (3 * d_q + 2 * d_v)


def _conv_backward_flop(grad_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                        transposed, _output_padding, _groups, output_mask, out_shape=None,
                        **kwargs) -> int:
    """Each of grad-input and grad-weight costs one forward convolution (groups included: the
    weight ``(C_out, C_in / groups, k, k)`` carries them)."""
    spatial = (x_shape if transposed else grad_shape)[2:]
    forward = 2 * x_shape[0] * math.prod(w_shape) * math.prod(spatial)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    aten = torch.ops.aten
    wanted = {
        "_fft_r2c": _fft_r2c_flop,
        "_fft_c2r": _fft_c2r_flop,
        "_fft_c2c": _fft_c2c_flop,
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_flop,
        "convolution_backward": _conv_backward_flop,
    }
    return {getattr(aten, name): fn for name, fn in wanted.items() if hasattr(aten, name)}


EXTRA_FLOP_FORMULAS = _extra_flop_formulas()
"""``custom_mapping`` for ``FlopCounterMode``: the FFTs, the CPU flash-attention kernel and the
grouped-convolution backward, as described in this module's docstring."""


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call: ``total`` (2 per multiply-add, FFTs included), of which ``fft`` from
    FFTs; ``by_op`` per aten op."""

    total: int
    fft: int
    by_op: dict[str, int]

    @property
    def macs(self) -> float:
        """Multiply-adds, the peers' "FLOPs": ``total / 2``."""
        return self.total / 2


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """Runs ``fn()`` under ``torch.utils.flop_counter`` with the FFT and attention formulas of
    this module, e.g. ``count_flops(lambda: mixer(x))``. Works on ``meta`` tensors (no compute)."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        fn()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    fft = sum(n for op, n in by_op.items() if "_fft_" in op)
    return FlopCount(total=sum(by_op.values()), fft=fft, by_op=by_op)


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module`` (works on ``meta`` modules: no memory is used)."""
    return sum(p.numel() for p in module.parameters())


def token_mixer_flops(build: Callable[[], nn.Module], shape: Sequence[int],
                      train: bool = False) -> FlopCount:
    """FLOPs of one call of the token mixer ``build()`` on tokens of ``shape`` (``(B, H, W, C)``):
    forward, plus backward (input and weight gradients) when ``train``. The mixer is built and
    counted on ``meta`` tensors: nothing is computed."""
    with torch.device("meta"):
        mixer = build()
        x = torch.empty(*shape, requires_grad=train)

    def run():
        y = mixer(x)
        if train:
            y.backward(torch.empty_like(y))

    return count_flops(run)


def image_model_flops(build: Callable[[], nn.Module], img_size: int,
                      train: bool = False) -> FlopCount:
    """FLOPs of one ``3 x img_size x img_size`` image through the model ``build()``: forward,
    plus the cross-entropy loss and backward when ``train``. The model is built and counted on
    ``meta`` tensors: nothing is computed."""
    with torch.device("meta"):
        model = build()
        x = torch.empty(1, 3, img_size, img_size)
        target = torch.zeros(1, dtype=torch.long)
    model.train(train)

    def run():
        if train:
            F.cross_entropy(model(x), target).backward()
        else:
            model(x)

    return count_flops(run)
