"""Orthonormal DCT-II and its inverse (DCT-III) for PyTorch tensors.

Defined in notebook 01 (the DCT from scratch).

The orthonormal DCT-II of a length-``N`` signal ``x`` is

    X[k] = s_k * sum_n x[n] * cos(pi * k * (2n + 1) / (2N)),   s_0 = sqrt(1/N), s_k = sqrt(2/N),

i.e. ``X = C @ x`` with an orthogonal matrix ``C`` (``C @ C.T == I``), so the inverse (the
orthonormal DCT-III) is ``x = C.T @ X``. This matches ``scipy.fft.dct(x, type=2, norm="ortho")``.

Two implementations share one signature:

- ``method="matmul"`` (default): one matmul with a cached ``C`` per (n, dtype, device). Exact, fast
  for the token grids of a vision backbone (7..56), runs in bf16/fp16 on GPU, exports to ONNX.
- ``method="fft"``: Makhoul's reordering (1980): an N-point complex FFT of the even/odd
  re-ordered signal and a twiddle, O(N log N). For teaching and benchmarking.

Half-precision inputs (bf16/fp16) are computed in float32 and returned in the input dtype, so the
error stays near float32's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .cache import cached_constant

__all__ = [
    "dct_matrix",
    "dct",
    "idct",
    "dct2",
    "idct2",
    "dct_fft",
    "idct_fft",
    "dct2_fft",
    "idct2_fft",
    "METHODS",
]

METHODS = ("matmul", "fft")
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _check_input(x: Tensor, dims: Sequence[int], method: str) -> list[int]:
    """Validates ``x`` and ``dims``; returns the dims as non-negative ints."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"the DCT needs a real floating-point tensor (float64/float32/bfloat16/float16), "
            f"got dtype {x.dtype}"
        )
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    normalized = []
    for dim in dims:
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise TypeError(f"dims must be ints, got {dim!r}")
        if not -x.ndim <= dim < x.ndim:
            raise ValueError(
                f"dim {dim} is out of range for a tensor of shape {tuple(x.shape)} "
                f"(expected -{x.ndim} <= dim < {x.ndim})"
            )
        d = dim % x.ndim
        if x.shape[d] == 0:
            raise ValueError(
                f"cannot take the DCT along dim {dim}: it has length 0 "
                f"(tensor shape {tuple(x.shape)}); expected a length >= 1"
            )
        normalized.append(d)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"dims {tuple(dims)} repeat an axis of a {x.ndim}-d tensor")
    return normalized


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF_DTYPES else dtype


def _build_matrix(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    mat = torch.cos(math.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
    mat[0] /= math.sqrt(2.0)
    return mat.to(dtype=dtype, device=device)


def dct_matrix(
    n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """The orthonormal DCT-II matrix ``C`` of size ``(n, n)``: ``X = C @ x``, ``x = C.T @ X``.

    Row ``k`` is the ``k``-th cosine basis vector. Cached per (n, dtype, device): the returned
    tensor is shared, do not modify it in place. Matrices built while a tracer or exporter runs
    (fake or functional tensors) are used but not cached.
    """
    if isinstance(n, Tensor):  # a traced shape (ONNX export): the size is fixed in the graph
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return cached_constant(("dct", n, dtype, device), lambda: _build_matrix(n, dtype, device))


def _apply_matrix(x: Tensor, mat: Tensor, dim: int) -> Tensor:
    """Computes ``sum_i mat[k, i] * x[..., i, ...]`` along ``dim``, without moving axes.

    ``x`` is viewed as ``(P, n, T)`` (P: dims before, T: dims after) and multiplied as
    ``mat @ x``; for the last dim it is ``x @ mat.T``. A contiguous input is never copied.
    """
    if dim == x.ndim - 1:
        return x @ mat.T
    n = x.shape[dim]
    trailing = math.prod(x.shape[dim + 1 :])
    return (mat @ x.reshape(-1, n, trailing)).reshape(x.shape)


# Channels-first grids (the two transformed dims are the last two) of at most this many
# coefficients take the 2D DCT as one matmul with the Kronecker product of the two axis matrices
# (HW x HW): more multiply-adds (HW instead of H + W per value), but one matmul instead of a
# batch of B*C tiny ones along H. Measured on 2 CPU cores at B*C = 8192: 3-10x faster for 4x4 to
# 8x8. Channels-last grids keep the separable path: there it is as fast or faster from 7x7 on.
KRONECKER_MAX_SIZE = 64


def _kronecker_matrix(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``kron(C_h, C_w)``, ``(h*w, h*w)``: the 2D DCT-II of a row-major flattened ``h x w`` grid."""
    return cached_constant(
        ("dct_kron", h, w, dtype, device),
        lambda: torch.kron(dct_matrix(h, dtype=dtype, device=device),
                           dct_matrix(w, dtype=dtype, device=device)),
    )


def _matmul_transform(x: Tensor, dims: list[int], inverse: bool) -> Tensor:
    compute = _compute_dtype(x.dtype)
    y = x.to(compute)
    if sorted(dims) == [x.ndim - 2, x.ndim - 1]:
        h, w = x.shape[-2:]
        if h * w <= KRONECKER_MAX_SIZE:
            mat = _kronecker_matrix(h, w, compute, x.device)
            flat = y.reshape(*x.shape[:-2], h * w)
            return (flat @ (mat if inverse else mat.T)).reshape(x.shape).to(x.dtype)
    for d in dims:
        mat = dct_matrix(x.shape[d], dtype=compute, device=x.device)
        y = _apply_matrix(y, mat.T if inverse else mat, d)
    return y.to(x.dtype)


def _twiddle(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``s_k * exp(-i pi k / 2n)`` with the orthonormal scale ``s_k``, shape ``(n,)``."""
    k = torch.arange(n, dtype=dtype, device=device)
    scale = torch.full((n,), math.sqrt(2.0 / n), dtype=dtype, device=device)
    scale[0] = math.sqrt(1.0 / n)
    return torch.polar(scale, -math.pi * k / (2 * n))


def _fft_dct_last(x: Tensor) -> Tensor:
    """Makhoul's DCT-II along the last dim: reorder, FFT, twiddle, real part."""
    n = x.shape[-1]
    reordered = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spectrum = torch.fft.fft(reordered, dim=-1)
    return (spectrum * _twiddle(n, x.dtype, x.device)).real


def _fft_idct_last(coeffs: Tensor) -> Tensor:
    """Inverse of :func:`_fft_dct_last` along the last dim (orthonormal DCT-III)."""
    n = coeffs.shape[-1]
    # W[k] = X[k] - i X[n-k] (X[n] = 0) undoes the "real part"; dividing by the twiddle
    # recovers the FFT of the reordered signal.
    mirrored = torch.cat([torch.zeros_like(coeffs[..., :1]), coeffs[..., 1:].flip(-1)], dim=-1)
    spectrum = torch.complex(coeffs, -mirrored) / _twiddle(n, coeffs.dtype, coeffs.device)
    reordered = torch.fft.ifft(spectrum, dim=-1).real
    x = torch.empty_like(reordered)
    half = (n + 1) // 2
    x[..., ::2] = reordered[..., :half]
    x[..., 1::2] = reordered[..., half:].flip(-1)
    return x


def _fft_transform(x: Tensor, dims: list[int], inverse: bool) -> Tensor:
    compute = _compute_dtype(x.dtype)
    y = x.to(compute)
    one_dim = _fft_idct_last if inverse else _fft_dct_last
    for d in dims:
        y = one_dim(y.movedim(d, -1)).movedim(-1, d)
    return y.to(x.dtype)


def _transform(x: Tensor, dims: Sequence[int], inverse: bool, method: str) -> Tensor:
    normalized = _check_input(x, dims, method)
    if method == "fft":
        return _fft_transform(x, normalized, inverse)
    return _matmul_transform(x, normalized, inverse)


def dct(x: Tensor, dim: int = -1, *, method: str = "matmul") -> Tensor:
    """Orthonormal DCT-II along ``dim``. ``x: (..., N, ...) -> (..., N, ...)``, same dtype."""
    return _transform(x, (dim,), inverse=False, method=method)


def idct(x: Tensor, dim: int = -1, *, method: str = "matmul") -> Tensor:
    """Orthonormal DCT-III along ``dim``, the exact inverse of :func:`dct`."""
    return _transform(x, (dim,), inverse=True, method=method)


def dct2(x: Tensor, dims: Sequence[int] = (-2, -1), *, method: str = "matmul") -> Tensor:
    """Separable 2D orthonormal DCT-II over ``dims``.

    Channels-first images ``(B, C, H, W)`` use the default ``dims=(-2, -1)``; channels-last
    ``(B, H, W, C)`` use ``dims=(-3, -2)``. Matches ``scipy.fft.dctn(x, type=2, norm="ortho",
    axes=dims)``.
    """
    return _transform(x, tuple(dims), inverse=False, method=method)


def idct2(x: Tensor, dims: Sequence[int] = (-2, -1), *, method: str = "matmul") -> Tensor:
    """Inverse of :func:`dct2` (separable orthonormal DCT-III over ``dims``)."""
    return _transform(x, tuple(dims), inverse=True, method=method)


def dct_fft(x: Tensor, dim: int = -1) -> Tensor:
    """:func:`dct` through Makhoul's FFT reordering."""
    return dct(x, dim, method="fft")


def idct_fft(x: Tensor, dim: int = -1) -> Tensor:
    """:func:`idct` through Makhoul's FFT reordering."""
    return idct(x, dim, method="fft")


def dct2_fft(x: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """:func:`dct2` through Makhoul's FFT reordering."""
    return dct2(x, dims, method="fft")


def idct2_fft(x: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """:func:`idct2` through Makhoul's FFT reordering."""
    return idct2(x, dims, method="fft")
