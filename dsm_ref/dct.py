"""Orthonormal DCT-II and its inverse (DCT-III) for PyTorch tensors.

Defined in notebook 01 (the DCT from scratch).

The orthonormal DCT-II of a length-``N`` signal ``x`` is

    X[k] = s_k * sum_n x[n] * cos(pi * k * (2n + 1) / (2N)),   s_0 = sqrt(1/N), s_k = sqrt(2/N),

i.e. ``X = C @ x`` with an orthogonal matrix ``C`` (``C @ C.T == I``), so the inverse (the
orthonormal DCT-III) is ``x = C.T @ X``. This matches ``scipy.fft.dct(x, type=2, norm="ortho")``.

Two implementations share one signature:

- ``method="matmul"`` (default): one matmul with a cached ``C`` per (n, dtype, device). Exact, fast
  for the token grids of a vision backbone (7..56), exports to ONNX at any input size (under
  ``torch.onnx.export(dynamo=True)`` with dynamic sizes, ``C`` is built inside the graph).
- ``method="fft"``: Makhoul's reordering (1980): a real-input FFT of the even/odd re-ordered
  signal and a twiddle, O(N log N). A 2D transform takes one ``rfft2`` (inverse: one
  ``irfft2``) with the order applied by one gather per axis, a 1D transform one ``rfft``; no
  axis is moved. Slower than the matmul at the sizes measured (BENCHMARKS.md). Not exportable
  (its twiddles are complex, which ONNX cannot represent): ``torch.export`` and
  ``torch.onnx.export`` raise a clear error.

Half-precision inputs (bf16/fp16) are computed in float32 and returned in the input dtype, so the
error stays near float32's. Under ``torch.autocast`` the transform runs with autocast turned off
(:func:`full_precision`): a float32 input stays float32 through the matmul or FFT instead of being
cast to bf16/fp16 (which gave a relative error of ~4e-3 for bf16 on CPU).
"""

from __future__ import annotations

import contextlib
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
    "full_precision",
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


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """A context that turns ``torch.autocast`` off on ``device_type`` while it is on (a no-op
    otherwise), so the ops inside run in their inputs' dtypes. The DCT and the DSWG's gate run in
    it: their float32 promise would otherwise not hold under autocast."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _refuse_export() -> None:
    """The FFT path builds complex constants (twiddles), which ONNX cannot represent: the
    exporters fail deep inside the conversion, so an export stops here with a clear error."""
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
        raise NotImplementedError(
            "the DCT with method='fft' uses complex tensors, which ONNX cannot represent, so it "
            "cannot be exported; use dct_method='matmul' (it exports at any input size)"
        )


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF_DTYPES else dtype


def _build_matrix(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Tensor ops only (no math on n), so a symbolic n (an export with dynamic sizes) builds the
    # matrix inside the graph.
    k = torch.arange(n, dtype=torch.float64, device=device).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64, device=device).unsqueeze(0)
    size = torch.ones_like(k).sum()  # n as a tensor
    scale = torch.sqrt(torch.where(k == 0, torch.ones_like(k), 2 * torch.ones_like(k)) / size)
    return (torch.cos(math.pi * k * (2 * i + 1) / (2 * size)) * scale).to(dtype)


def dct_matrix(
    n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """The orthonormal DCT-II matrix ``C`` of size ``(n, n)``: ``X = C @ x``, ``x = C.T @ X``.

    Row ``k`` is the ``k``-th cosine basis vector. Cached per (n, dtype, device): the returned
    tensor is shared, do not modify it in place. Matrices built while a tracer or exporter runs
    (fake or functional tensors) are used but not cached; a symbolic ``n`` (``torch.export`` or
    ``torch.onnx.export(dynamo=True)`` with dynamic sizes) builds the matrix inside the graph.
    """
    if isinstance(n, Tensor):  # a traced shape (TorchScript ONNX export): fixed in the graph
        n = int(n)
    if isinstance(n, torch.SymInt):
        pass
    elif not isinstance(n, int) or isinstance(n, bool) or n < 1:
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


def _makhoul_constants(n: int, dtype: torch.dtype, device: torch.device
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Makhoul's order (even indices, then the odd ones reversed) and its inverse, ``(n,)``;
    the unit twiddles ``exp(-i pi k / 2n)`` and the orthonormal scales ``s_k`` of the half
    spectrum ``k < n // 2 + 1``; the scales of all ``n`` coefficients. Cached per size."""
    def build():
        order = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])
        half = n // 2 + 1
        scale = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
        scale[0] = math.sqrt(1.0 / n)
        return (order.to(device), torch.argsort(order).to(device),
                _full_twiddle(n, dtype, device)[:half], scale[:half].to(dtype).to(device),
                scale.to(dtype).to(device))
    return cached_constant(("makhoul", n, dtype, torch.device(device)), build)


def _along(vector: Tensor, dim: int, ndim: int) -> Tensor:
    """``(n,)`` -> a view that broadcasts along ``dim`` of an ``ndim``-d tensor."""
    shape = [1] * ndim
    shape[dim] = vector.shape[0]
    return vector.view(shape)


def _fft_dct(x: Tensor, dim: int) -> Tensor:
    """Orthonormal DCT-II along ``dim`` by Makhoul's method on a real-input FFT: reorder (one
    gather), ``rfft``, twiddle; the half spectrum ``z_k`` gives ``X_k = s_k Re z_k`` and
    ``X_(n-k) = -s_(n-k) Im z_k`` (``z_(n-k) = conj`` of ``z_k`` twiddled). No axis is moved."""
    n, ndim = x.shape[dim], x.ndim
    order, _, twiddle, half_scale, _ = _makhoul_constants(n, x.dtype, x.device)
    z = torch.fft.rfft(x.index_select(dim, order), dim=dim) * _along(twiddle, dim, ndim)
    low = z.real * _along(half_scale, dim, ndim)  # X_0 .. X_(n//2)
    high = z.imag.narrow(dim, 1, (n - 1) // 2).flip(dim) * -math.sqrt(2.0 / n)
    return torch.cat([low, high], dim=dim)


def _fft_idct(coeffs: Tensor, dim: int) -> Tensor:
    """Inverse of :func:`_fft_dct` (orthonormal DCT-III) along ``dim`` through ``irfft``:
    ``z_k = X_k / s_k - i X_(n-k) / s_(n-k)`` (``X_n = 0``) undoes the real and imaginary
    parts, the conjugate twiddle gives the FFT of the reordered signal, one gather undoes the
    order."""
    n, ndim = coeffs.shape[dim], coeffs.ndim
    _, inverse_order, twiddle, _, scale = _makhoul_constants(n, coeffs.dtype, coeffs.device)
    half = n // 2 + 1
    unscaled = coeffs / _along(scale, dim, ndim)
    mirrored = torch.cat([torch.zeros_like(unscaled.narrow(dim, 0, 1)),
                          unscaled.narrow(dim, n - half + 1, half - 1).flip(dim)], dim=dim)
    z = torch.complex(unscaled.narrow(dim, 0, half), -mirrored)
    reordered = torch.fft.irfft(z * _along(twiddle.conj(), dim, ndim), n=n, dim=dim)
    return reordered.index_select(dim, inverse_order)


def _flip_index(n: int, device: torch.device) -> Tensor:
    """``(-k) mod n`` for ``k < n``: the frequency index of the conjugate partner."""
    return cached_constant(("neg_freq", n, torch.device(device)),
                           lambda: (-torch.arange(n, device=device)) % n)


def _full_twiddle(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``exp(-i pi k / 2n)`` for all ``k < n``, complex, cached per size."""
    def build():
        k = torch.arange(n, dtype=torch.float64)
        twiddle = torch.polar(torch.ones(n, dtype=torch.float64), -math.pi * k / (2 * n))
        return twiddle.to(torch.complex128 if dtype == torch.float64 else torch.complex64
                          ).to(device)
    return cached_constant(("twiddle", n, dtype, torch.device(device)), build)


def _mirror(t: Tensor, dim: int, count: int) -> Tensor:
    """``count`` entries along ``dim``: 0 at index 0, then ``t[n - k]`` for ``k = 1 .. count-1``
    (the partner ``n - k`` of each frequency, with ``t[n] = 0``)."""
    n = t.shape[dim]
    return torch.cat([torch.zeros_like(t.narrow(dim, 0, 1)),
                      t.narrow(dim, n - count + 1, count - 1).flip(dim)], dim=dim)


def _fft_dct2(x: Tensor, d1: int, d2: int) -> Tensor:
    """Orthonormal 2D DCT-II over ``(d1, d2)`` through one real 2D FFT (Makhoul in 2D).

    With ``V = rfft2`` of the doubly reordered input, ``P = w2 V(k1, k2)`` and
    ``Q = conj(w2) conj(V(-k1, k2))`` for ``k2 <= n2 // 2`` (``V(k1, -k2) = conj V(-k1, k2)`` for
    a real input): ``X(k1, k2) = Re(w1 (P + Q)) / 2`` and ``X(k1, n2 - k2) = -Im(w1 (P - Q)) / 2``,
    times the orthonormal scales (``w = exp(-i pi k / 2n)``)."""
    n1, n2, ndim = x.shape[d1], x.shape[d2], x.ndim
    order1, _, _, _, scale1 = _makhoul_constants(n1, x.dtype, x.device)
    order2, _, w2, half_scale2, _ = _makhoul_constants(n2, x.dtype, x.device)
    v = x.index_select(d1, order1).index_select(d2, order2)
    spectrum = torch.fft.rfft2(v, dim=(d1, d2))  # (.., n1, .., n2 // 2 + 1, ..)
    partner = spectrum.index_select(d1, _flip_index(n1, x.device)).conj()
    # The orthonormal scales ride on the twiddles: s2(k2) (= s2(n2 - k2) for k2 >= 1) on w2,
    # s1(k1) / 2 on w1, so no pass over the output is spent on scaling.
    w2 = _along(w2 * half_scale2, d2, ndim)
    p, q = spectrum * w2, partner * w2.conj()
    w1 = _along(_full_twiddle(n1, x.dtype, x.device) * (scale1 * 0.5), d1, ndim)
    low = (w1 * (p + q)).real
    high = -(w1 * (p - q)).imag.narrow(d2, 1, (n2 - 1) // 2).flip(d2)
    return torch.cat([low, high], dim=d2)


def _fft_idct2(coeffs: Tensor, d1: int, d2: int) -> Tensor:
    """Inverse of :func:`_fft_dct2` (2D orthonormal DCT-III) through one ``irfft2``:
    ``V(k1, k2) = conj(w1 w2) [X(k1, k2) - X(-k1, -k2) - i (X(k1, -k2) + X(-k1, k2))]`` on the
    unscaled coefficients (an index ``n`` reads 0), then one gather per axis undoes the order."""
    n1, n2, ndim = coeffs.shape[d1], coeffs.shape[d2], coeffs.ndim
    _, inverse1, _, _, scale1 = _makhoul_constants(n1, coeffs.dtype, coeffs.device)
    _, inverse2, w2, _, scale2 = _makhoul_constants(n2, coeffs.dtype, coeffs.device)
    half = n2 // 2 + 1
    unscaled = coeffs / (_along(scale1, d1, ndim) * _along(scale2, d2, ndim))
    a = unscaled.narrow(d2, 0, half)              # X(k1, k2)
    c = _mirror(unscaled, d2, half)               # X(k1, -k2)
    b, d = _mirror(c, d1, n1), _mirror(a, d1, n1)  # X(-k1, -k2), X(-k1, k2)
    w = (_along(_full_twiddle(n1, coeffs.dtype, coeffs.device), d1, ndim)
         * _along(w2, d2, ndim)).conj()
    spectrum = w * torch.complex(a - b, -(c + d))
    v = torch.fft.irfft2(spectrum, s=(n1, n2), dim=(d1, d2))
    return v.index_select(d1, inverse1).index_select(d2, inverse2)


def _fft_transform(x: Tensor, dims: list[int], inverse: bool) -> Tensor:
    compute = _compute_dtype(x.dtype)
    y = x.to(compute)
    if len(dims) == 2:  # one 2D real FFT instead of one per axis
        return (_fft_idct2 if inverse else _fft_dct2)(y, *dims).to(x.dtype)
    one_dim = _fft_idct if inverse else _fft_dct
    for d in dims:
        y = one_dim(y, d)
    return y.to(x.dtype)


def _transform(x: Tensor, dims: Sequence[int], inverse: bool, method: str) -> Tensor:
    normalized = _check_input(x, dims, method)
    with full_precision(x.device.type):
        if method == "fft":
            _refuse_export()
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
