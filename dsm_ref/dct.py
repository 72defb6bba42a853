"""Orthonormal DCT-II and its inverse (DCT-III) for PyTorch tensors.

Defined in notebook 01 (the DCT from scratch).

The orthonormal DCT-II of a length-``N`` signal ``x`` is

    X[k] = s_k * sum_n x[n] * cos(pi * k * (2n + 1) / (2N)),   s_0 = sqrt(1/N), s_k = sqrt(2/N),

i.e. ``X = C @ x`` with an orthogonal matrix ``C`` (``C @ C.T == I``), so the inverse (the
orthonormal DCT-III) is ``x = C.T @ X``. This matches ``scipy.fft.dct(x, type=2, norm="ortho")``.

Two implementations share one signature, and ``method="auto"`` picks one per grid size and device
(:func:`resolve_method`, from the crossovers measured in :data:`AUTO_CROSSOVER`):

- ``method="matmul"`` (default): one matmul with a cached ``C`` per (n, dtype, device). Exact, fast
  for the token grids of a vision backbone (7..56), exports to ONNX at any input size (under
  ``torch.onnx.export(dynamo=True)`` with dynamic sizes, ``C`` is built inside the graph).
- ``method="fft"``: Makhoul's reordering (1980): a real-input FFT of the even/odd re-ordered
  signal and a twiddle, O(N log N) per axis. A 2D transform takes one ``rfft2`` (inverse: one
  ``irfft2``), Makhoul's order as four quadrant copies (channels-first; channels-last: one
  gather of whole channel rows over the flattened grid), and the twiddles of both axes as two
  passes over the half spectrum; no index gather runs along the last dim, which is slow on CPU.
  Its backward is the inverse transform (the DCT is orthonormal), not a replay of every pass. A
  1D transform takes one ``rfft`` and two slice copies for the order; no axis is moved. On CPU
  it overtakes the matmul near 320 per side channels-first and not below 1024 channels-last,
  always behind scipy (:data:`AUTO_CROSSOVER`). Not exportable (its twiddles
  are complex, which ONNX cannot represent): ``torch.export`` and ``torch.onnx.export`` raise a
  clear error.
- ``method="scipy"``: ``scipy.fft.dctn`` (pocketfft's native real DCT) on CPU tensors, wrapped
  for autograd. The fastest CPU path from about 224 per side; not on GPUs, not traceable by
  ``torch.compile`` (a graph break) or the exporters (a clear error).

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
    "resolve_method",
    "AUTO_CROSSOVER",
]

METHODS = ("auto", "matmul", "fft", "scipy")

# method="auto": per device type, ``(size, method)``: grids whose longest transformed axis is at
# least ``size`` take ``method``, smaller ones the matmul; ``None``: always the matmul. Measured
# on CPU, fp32, one thread, 64 channels (data/bench/cpu_dct.json, made by
# `python -m dsm_ref bench dct --device cpu --threads 1 --sizes 7 14 28 56 112 224 320 448 640
# 768 1024 --target-time 0.2 --min-reps 1 --rounds 9`), time over the matmul's (geometric mean
# of 8 paired rounds), channels-last (channels-first): scipy 2.7 (1.8) at 56, 1.64 (1.14) at
# 112, 0.97 (0.64) at 224, 0.91 (0.49) at 320, 0.23 (0.18) at 1024; our FFT path 3.7 (1.46) at
# 224, 1.9 (1.01) at 448, 1.7 (0.60) at 1024. The matmul's 2N multiply-adds per value run near
# the machine's matmul peak; pocketfft's native DCT (scipy) crosses it at 224 (level
# channels-last, faster channels-first) and wins beyond; our FFT path, whose log2 N work is
# spread over memory-bound passes (reorders, twiddles, layout changes), crosses it near 320
# channels-first and not below 1024 channels-last, and takes 1.9-3.8x (3.9-9.2x) the time of
# GFNet's rfft2 of the same tensor. No crossover is measured on CUDA yet (scripts/gpu_check.sh
# measures it), so CUDA keeps the matmul.
AUTO_CROSSOVER: dict[str, tuple[int, str] | None] = {"cpu": (224, "scipy"), "cuda": None}

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


def _refuse_export(method: str) -> None:
    """The FFT path builds complex constants (twiddles), which ONNX cannot represent, and the
    scipy path leaves torch: the exporters would fail deep inside the conversion, so an export
    stops here with a clear error."""
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
        reason = ("uses complex tensors, which ONNX cannot represent" if method == "fft"
                  else "runs outside torch (scipy.fft)")
        raise NotImplementedError(
            f"the DCT with method={method!r} {reason}, so it cannot be exported; use "
            "dct_method='matmul' or 'auto' (they export at any input size)"
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
    """Orthonormal DCT-II along ``dim`` by Makhoul's method on a real-input FFT: reorder (two
    slice copies), ``rfft``, twiddle; the half spectrum ``z_k`` gives ``X_k = s_k Re z_k`` and
    ``X_(n-k) = -s_(n-k) Im z_k`` (``z_(n-k) = conj`` of ``z_k`` twiddled). No axis is moved."""
    n, ndim = x.shape[dim], x.ndim
    _, _, twiddle, half_scale, _ = _makhoul_constants(n, x.dtype, x.device)
    z = torch.fft.rfft(_reorder_1d(x, dim, inverse=False), dim=dim) * _along(twiddle, dim, ndim)
    low = z.real * _along(half_scale, dim, ndim)  # X_0 .. X_(n//2)
    high = z.imag.narrow(dim, 1, (n - 1) // 2).flip(dim) * -math.sqrt(2.0 / n)
    return torch.cat([low, high], dim=dim)


def _fft_idct(coeffs: Tensor, dim: int) -> Tensor:
    """Inverse of :func:`_fft_dct` (orthonormal DCT-III) along ``dim`` through ``irfft``:
    ``z_k = X_k / s_k - i X_(n-k) / s_(n-k)`` (``X_n = 0``) undoes the real and imaginary
    parts, the conjugate twiddle gives the FFT of the reordered signal, two slice copies undo
    the order."""
    n, ndim = coeffs.shape[dim], coeffs.ndim
    _, _, twiddle, _, scale = _makhoul_constants(n, coeffs.dtype, coeffs.device)
    half = n // 2 + 1
    unscaled = coeffs / _along(scale, dim, ndim)
    mirrored = torch.cat([torch.zeros_like(unscaled.narrow(dim, 0, 1)),
                          unscaled.narrow(dim, n - half + 1, half - 1).flip(dim)], dim=dim)
    z = torch.complex(unscaled.narrow(dim, 0, half), -mirrored)
    reordered = torch.fft.irfft(z * _along(twiddle.conj(), dim, ndim), n=n, dim=dim)
    return _reorder_1d(reordered, dim, inverse=True)


def _reversed(t: Tensor, dim: int, start: int, length: int) -> Tensor:
    """``t.narrow(dim, start, length)`` in reverse order: a flip along the last dim, where a
    gather would pick single elements (slow on CPU), else a gather of whole rows (cheaper than
    the flip's copy there)."""
    if dim == t.ndim - 1:
        return t.narrow(dim, start, length).flip(dim)
    index = cached_constant(("reversed", start, length, torch.device(t.device)),
                            lambda: torch.arange(start + length - 1, start - 1, -1,
                                                 device=t.device))
    return t.index_select(dim, index)


def _partner(spectrum: Tensor, dim: int) -> Tensor:
    """``spectrum`` at the frequency ``(-k) mod n`` along ``dim``: index 0, then the rest
    reversed."""
    n = spectrum.shape[dim]
    if dim != spectrum.ndim - 1:  # one gather of whole rows
        index = cached_constant(("neg_freq", n, torch.device(spectrum.device)),
                                lambda: (-torch.arange(n, device=spectrum.device)) % n)
        return spectrum.index_select(dim, index)
    return torch.cat([spectrum.narrow(dim, 0, 1), spectrum.narrow(dim, 1, n - 1).flip(dim)],
                     dim=dim)


def _full_twiddle(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``exp(-i pi k / 2n)`` for all ``k < n``, complex, cached per size."""
    def build():
        k = torch.arange(n, dtype=torch.float64)
        twiddle = torch.polar(torch.ones(n, dtype=torch.float64), -math.pi * k / (2 * n))
        return twiddle.to(torch.complex128 if dtype == torch.float64 else torch.complex64
                          ).to(device)
    return cached_constant(("twiddle", n, dtype, torch.device(device)), build)


def _index(ndim: int, slices: dict[int, slice]) -> tuple[slice, ...]:
    """An index tuple for an ``ndim``-d tensor: ``slices[d]`` at each dim ``d``, ``:``
    elsewhere."""
    return tuple(slices.get(d, slice(None)) for d in range(ndim))


def _reorder_1d(x: Tensor, dim: int, inverse: bool) -> Tensor:
    """Makhoul's order along ``dim`` (even indices, then the odd ones reversed;
    ``inverse=True``: its inverse) as two slice copies into one output."""
    half = (x.shape[dim] + 1) // 2
    out = torch.empty_like(x)
    parts = ((slice(0, None, 2), slice(0, half), ()),
             (slice(1, None, 2), slice(half, None), (dim,)))
    for strided, block, flip in parts:
        src, dst = (block, strided) if inverse else (strided, block)
        part = x[_index(x.ndim, {dim: src})]
        out[_index(x.ndim, {dim: dst})] = part.flip(flip) if flip else part
    return out


def _reorder(x: Tensor, d1: int, d2: int, inverse: bool) -> Tensor:
    """Makhoul's order on both axes (``inverse=True``: its inverse).

    When the later axis is the last dim (channels-first), a gather would pick single elements
    along it, which is slow on CPU: the grid is written as four quadrant copies (even/odd
    indices on each axis, the odd ones reversed) into one output. Otherwise (channels-last) the
    gather moves whole rows of the trailing dims: one over the flattened grid when the axes are
    adjacent, else one per axis."""
    n1, n2 = x.shape[d1], x.shape[d2]
    if max(d1, d2) == x.ndim - 1:
        h1, h2 = (n1 + 1) // 2, (n2 + 1) // 2
        out = torch.empty_like(x)
        for p1 in (0, 1):
            for p2 in (0, 1):
                strided = {d1: slice(p1, None, 2), d2: slice(p2, None, 2)}
                block = {d1: slice(h1 * p1, h1 if p1 == 0 else None),
                         d2: slice(h2 * p2, h2 if p2 == 0 else None)}
                src, dst = (block, strided) if inverse else (strided, block)
                flip = [d for d, p in ((d1, p1), (d2, p2)) if p]
                part = x[_index(x.ndim, src)]
                out[_index(x.ndim, dst)] = part.flip(flip) if flip else part
        return out
    pick = 1 if inverse else 0
    order1 = _makhoul_constants(n1, x.dtype, x.device)[pick]
    order2 = _makhoul_constants(n2, x.dtype, x.device)[pick]
    if abs(d2 - d1) != 1:
        return x.index_select(d1, order1).index_select(d2, order2)
    (lo, o_lo), (hi, o_hi) = sorted([(d1, order1), (d2, order2)], key=lambda p: p[0])
    flat = cached_constant(("makhoul_grid", inverse, x.shape[lo], x.shape[hi],
                            torch.device(x.device)),
                           lambda: (o_lo[:, None] * x.shape[hi] + o_hi[None, :]).flatten())
    return x.flatten(lo, hi).index_select(lo, flat).unflatten(lo, (x.shape[lo], x.shape[hi]))


def _makhoul_2d_coefficients(n1: int, n2: int, dtype: torch.dtype, device: torch.device
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-frequency complex factors ``(n1, n2 // 2 + 1)`` of the 2D transforms (see
    :func:`_fft_dct2_forward`): ``A = w1 w2 s1 s2 / 2`` and ``B = conj(w1) w2 s1 s2 / 2`` of the
    forward transform; ``G = conj(w1 w2) / (s1 s2)`` and ``H = -i G`` (0 on row 0) of the
    inverse. Cached per size."""
    def build():
        half = n2 // 2 + 1
        w1 = _full_twiddle(n1, torch.float64, device).to(torch.complex128)[:, None]
        w2 = _full_twiddle(n2, torch.float64, device).to(torch.complex128)[None, :half]
        s1 = _makhoul_constants(n1, torch.float64, device)[4][:, None]
        s2 = _makhoul_constants(n2, torch.float64, device)[4][None, :half]
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        forward_a = w1 * w2 * (s1 * s2 / 2)
        forward_b = w1.conj() * w2 * (s1 * s2 / 2)
        inverse_g = (w1 * w2).conj() / (s1 * s2)
        inverse_h = -1j * inverse_g
        inverse_h[0] = 0  # row 0 has no partner in the inverse: X(n1, k2) reads 0
        return tuple(t.to(complex_dtype) for t in
                     (forward_a, forward_b, inverse_g, inverse_h))
    return cached_constant(("makhoul_2d", n1, n2, dtype, torch.device(device)), build)


def _fft_dct2_forward(x: Tensor, d1: int, d2: int) -> Tensor:
    """Orthonormal 2D DCT-II over ``(d1, d2)`` through one ``rfft2`` (Makhoul in 2D).

    With ``V = rfft2`` of the doubly reordered input and ``V'(k1, k2) = V(-k1, k2)`` its row
    partner, ``Z = A V + B V'`` (factors of :func:`_makhoul_2d_coefficients`) holds both halves
    of the output: ``X(k1, k2) = Re Z(k1, k2)`` for ``k2 <= n2 // 2`` and
    ``X(k1, n2 - k2) = -Im Z(k1, k2)`` for ``1 <= k2 <= (n2 - 1) // 2``. Four passes over the half
    spectrum besides the FFT and the gathers, all written in place or into the output.
    """
    n1, n2 = x.shape[d1], x.shape[d2]
    half, high = n2 // 2 + 1, (n2 - 1) // 2
    factor_a, factor_b, _, _ = _makhoul_2d_coefficients(n1, n2, x.dtype, x.device)
    spectrum = torch.fft.rfft2(_reorder(x, d1, d2, inverse=False), dim=(d1, d2))
    partner = _partner(spectrum, d1)
    z = spectrum.mul_(_along2(factor_a, d1, d2, x.ndim))
    z.addcmul_(partner, _along2(factor_b, d1, d2, x.ndim))
    out = torch.empty_like(x)
    out.narrow(d2, 0, half).copy_(z.real)
    if high:  # k2 = high .. 1
        torch.neg(_reversed(z.imag, d2, 1, high), out=out.narrow(d2, half, high))
    return out


def _fft_idct2_forward(coeffs: Tensor, d1: int, d2: int) -> Tensor:
    """Inverse of :func:`_fft_dct2_forward` (2D orthonormal DCT-III) through one ``irfft2``.

    ``R(k1, k2) = X(k1, k2) - i X(k1, n2 - k2)`` (``X(k1, n2) = 0``) on the half spectrum gives
    ``V = G R + H R'`` with ``R'(k1, k2) = R(-k1, k2)``; ``irfft2`` and one inverse gather
    return the signal."""
    n1, n2 = coeffs.shape[d1], coeffs.shape[d2]
    half = n2 // 2 + 1
    _, _, factor_g, factor_h = _makhoul_2d_coefficients(n1, n2, coeffs.dtype, coeffs.device)
    shape = list(coeffs.shape)
    shape[d2] = half
    complex_dtype = torch.complex128 if coeffs.dtype == torch.float64 else torch.complex64
    r = torch.empty(shape, dtype=complex_dtype, device=coeffs.device)
    r.real.copy_(coeffs.narrow(d2, 0, half))
    r.imag.narrow(d2, 0, 1).zero_()
    if half > 1:  # n2 - k2 for k2 = 1 .. half - 1
        mirrored = _reversed(coeffs, d2, n2 - half + 1, half - 1)
        torch.neg(mirrored, out=r.imag.narrow(d2, 1, half - 1))
    partner = _partner(r, d1)
    spectrum = r.mul_(_along2(factor_g, d1, d2, coeffs.ndim))
    spectrum.addcmul_(partner, _along2(factor_h, d1, d2, coeffs.ndim))
    signal = torch.fft.irfft2(spectrum, s=(n1, n2), dim=(d1, d2))
    return _reorder(signal, d1, d2, inverse=True)


def _along2(table: Tensor, d1: int, d2: int, ndim: int) -> Tensor:
    """``(n1, n2')`` -> a view that broadcasts along ``d1`` and ``d2`` of an ``ndim``-d tensor."""
    shape = [1] * ndim
    shape[d1], shape[d2] = table.shape
    return table.reshape(shape) if d1 < d2 else table.T.reshape(shape)


class _FFTDCT2(torch.autograd.Function):
    """2D DCT-II (``inverse=False``) or DCT-III through :func:`_fft_dct2_forward` /
    :func:`_fft_idct2_forward`. Both are orthonormal, so each one's backward is the other: the
    gradient costs one transform, not autograd's replay of every pass."""

    @staticmethod
    def forward(ctx, x: Tensor, d1: int, d2: int, inverse: bool) -> Tensor:
        ctx.dims, ctx.inverse = (d1, d2), inverse
        return (_fft_idct2_forward if inverse else _fft_dct2_forward)(x, d1, d2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        d1, d2 = ctx.dims
        return _FFTDCT2.apply(grad.contiguous(), d1, d2, not ctx.inverse), None, None, None


def _fft_transform(x: Tensor, dims: list[int], inverse: bool) -> Tensor:
    compute = _compute_dtype(x.dtype)
    y = x.to(compute)
    if len(dims) == 2:  # one 2D real FFT instead of one per axis
        return _FFTDCT2.apply(y, dims[0], dims[1], inverse).to(x.dtype)
    one_dim = _fft_idct if inverse else _fft_dct
    for d in dims:
        y = one_dim(y, d)
    return y.to(x.dtype)


def resolve_method(method: str, sizes: Sequence[int], device: torch.device | str) -> str:
    """The path ``method`` takes for a grid of ``sizes`` (the transformed axes) on ``device``:
    ``"matmul"``, ``"fft"`` or ``"scipy"`` as given; ``"auto"`` gives the method of
    :data:`AUTO_CROSSOVER` where the longest axis reaches its size, else ``"matmul"``, and always
    ``"matmul"`` while compiling or exporting and for symbolic sizes (only the matmul exports,
    and scipy cannot be traced)."""
    if method != "auto":
        return method
    crossover = AUTO_CROSSOVER.get(torch.device(device).type)
    if (crossover is None or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
            or not all(isinstance(n, int) for n in sizes)):
        return "matmul"
    size, chosen = crossover
    return chosen if max(sizes) >= size else "matmul"


class _ScipyDCT(torch.autograd.Function):
    """The DCT-II (or, ``inverse=True``, DCT-III) over ``dims`` by ``scipy.fft.dctn`` /
    ``idctn``: pocketfft's native real DCT on a CPU tensor's memory, as many workers as torch
    has threads. Orthonormal, so each one's backward is the other."""

    @staticmethod
    def forward(ctx, x: Tensor, dims: tuple[int, ...], inverse: bool) -> Tensor:
        import scipy.fft

        ctx.dims, ctx.inverse = dims, inverse
        transform = scipy.fft.idctn if inverse else scipy.fft.dctn
        out = transform(x.detach().numpy(), type=2, norm="ortho", axes=dims,
                        workers=torch.get_num_threads())
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return _ScipyDCT.apply(grad, ctx.dims, not ctx.inverse), None, None


def _scipy_transform(x: Tensor, dims: list[int], inverse: bool) -> Tensor:
    if x.device.type != "cpu":
        raise ValueError(f"method='scipy' runs on CPU tensors only, got a tensor on {x.device}; "
                         "use method='matmul' or 'fft' (or 'auto')")
    return _ScipyDCT.apply(x.to(_compute_dtype(x.dtype)), tuple(dims), inverse).to(x.dtype)


def _transform(x: Tensor, dims: Sequence[int], inverse: bool, method: str) -> Tensor:
    normalized = _check_input(x, dims, method)
    method = resolve_method(method, [x.shape[d] for d in normalized], x.device)
    with full_precision(x.device.type):
        if method in ("fft", "scipy"):
            _refuse_export(method)
            transform = _fft_transform if method == "fft" else _scipy_transform
            return transform(x, normalized, inverse)
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
