"""Exercises of notebook 07, complexity and speed: checks and solutions.

1. ``matmul_dct2_flops(height, width, channels) -> float``: FLOPs of the 2D DCT of one image's
   channels-last tokens ``(1, H, W, C)`` as two matrix products (the default route); checked
   against ``dsm_ref.flops.count_flops`` of ``dsm_ref.dct.dct2(method="matmul")``.
2. ``fft_dct2_flops(height, width, channels) -> float``: FLOPs of the same DCT by Makhoul's FFT
   route, with the course's rule (2.5 N log2 N per real, 5 N log2 N per complex transform);
   checked against the counter on ``dct2(method="fft")``.
3. ``first_grid_dct_costlier(kernel_size) -> int``: the smallest square grid from which the
   matmul-DCT mixer costs more FLOPs than a ``k x k`` depthwise convolution mixer; checked
   against the counter on ``DynamicSpectrumMixer(dynamic=False)`` and ``DepthwiseConvMixer``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..dct import dct2
from ..flops import count_flops, fft_flops
from ..mixers import DepthwiseConvMixer, DynamicSpectrumMixer
from ._common import Mismatch, call, expect_equal, run_check

__all__ = [
    "check_matmul_dct2_flops", "solution_matmul_dct2_flops",
    "check_fft_dct2_flops", "solution_fft_dct2_flops",
    "check_first_grid_dct_costlier", "solution_first_grid_dct_costlier",
]

_GRIDS = [(56, 56, 64), (7, 7, 16), (6, 10, 3), (13, 22, 8), (1, 5, 3), (2, 1, 1), (1, 1, 1)]


def _counted_dct2(height: int, width: int, channels: int, method: str) -> float:
    tokens = torch.zeros(1, height, width, channels)  # small: counted on real CPU tensors
    return count_flops(lambda: dct2(tokens, dims=(1, 2), method=method)).total


def _number(value, case: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Mismatch(f"On {case} your function returned {value!r}, not a number.") from None


def _agrees(got: float, expected: float) -> bool:
    """The counter rounds each op's FLOPs to an integer: allow that much."""
    return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1.0)


# --- 1. the matmul route -------------------------------------------------------------------------

def solution_matmul_dct2_flops(height: int, width: int, channels: int) -> float:
    """``C_H`` along H for every column and channel, ``C_W`` along W for every row and channel:
    ``H*W*C*(H + W)`` multiply-adds, 2 FLOPs each."""
    return 2.0 * height * width * channels * (height + width)


def check_matmul_dct2_flops(function: Callable) -> bool:
    """``function(height, width, channels)`` must return the FLOPs (2 per multiply-add) of
    ``dct2`` by matmuls of channels-last tokens ``(1, H, W, C)``."""

    def cases() -> str:
        for h, w, c in _GRIDS:
            case = f"a {h} x {w} grid with C = {c}"
            expected = _counted_dct2(h, w, c, "matmul")
            got = _number(call(function, case, h, w, c), case)
            if _agrees(got, expected):
                continue
            hint = ("Two matrix products: C_H (H x H) on each of the W*C columns, C_W (W x W) on "
                    "each of the H*C rows; one multiply-add is 2 FLOPs.")
            if _agrees(2 * got, expected):
                hint = "You counted multiply-adds; the counter counts 2 FLOPs per multiply-add."
            elif _agrees(got, 2.0 * (h * w) ** 2 * c):
                hint = ("That is one (HW x HW) Kronecker matrix; the separable route does two "
                        "small products, H + W multiply-adds per value instead of H*W.")
            elif h != w and any(_agrees(got, 4.0 * h * w * c * n) for n in (h, w)):
                hint = ("On a grid that is not square the two products differ: H*H*W*C "
                        "multiply-adds along H, H*W*W*C along W.")
            raise Mismatch(f"On {case} the counter gives {expected:,.0f} FLOPs, you gave "
                           f"{got:,.0f}. {hint}")
        return "It matches the FLOP counter on 7 grids, square, oblong and 1 x 1."

    return run_check("matmul_dct2_flops", function, cases)


# --- 2. the FFT route ----------------------------------------------------------------------------

def solution_fft_dct2_flops(height: int, width: int, channels: int) -> float:
    """One ``rfft2`` of the reordered grid: a real FFT of length W on each of the H*C rows, then
    a complex FFT of length H on each of the (W // 2 + 1)*C columns of the half spectrum."""
    real = height * channels * fft_flops(width, real=True)
    complex_ = (width // 2 + 1) * channels * fft_flops(height)
    return real + complex_


def check_fft_dct2_flops(function: Callable) -> bool:
    """``function(height, width, channels)`` must return the FLOPs of ``dct2`` by the FFT route
    (Makhoul's reordering) of ``(1, H, W, C)``, counted with the course's FFT rule."""

    def cases() -> str:
        for h, w, c in _GRIDS:
            case = f"a {h} x {w} grid with C = {c}"
            expected = _counted_dct2(h, w, c, "fft")
            got = _number(call(function, case, h, w, c), case)
            if _agrees(got, expected):
                continue
            hint = ("A real FFT (2.5 N log2 N) of length W on each of the H*C rows, then a complex "
                    "FFT (5 N log2 N) of length H on each of the (W // 2 + 1)*C columns left; a "
                    "length-1 FFT costs 0.")
            full = h * c * fft_flops(w) + w * c * fft_flops(h)
            swapped = w * c * fft_flops(h, real=True) + (h // 2 + 1) * c * fft_flops(w)
            if _agrees(got, full):
                hint = ("You counted complex FFTs over the whole grid. The input is real: the FFT "
                        "along W is a real one (2.5 N log2 N) and leaves W // 2 + 1 columns.")
            elif h != w and _agrees(got, swapped):
                hint = ("The real FFT runs along the last axis, W; the complex one along H, over "
                        "the W // 2 + 1 columns of the half spectrum.")
            elif _agrees(2 * got, expected):
                hint = "The rule counts FLOPs, not multiply-adds: do not halve it."
            raise Mismatch(f"On {case} the counter gives {expected:,.1f} FLOPs, you gave "
                           f"{got:,.1f}. {hint}")
        return ("It matches the FLOP counter on 7 grids; at 56 x 56 with C = 64 the FFT route "
                "needs about 7.6 times fewer FLOPs than the matmuls.")

    return run_check("fft_dct2_flops", function, cases)


# --- 3. global mixing against a local convolution ------------------------------------------------

def solution_first_grid_dct_costlier(kernel_size: int) -> int:
    """dct2 + idct2 by matmuls cost ``2 * 2 n^3 C`` multiply-adds on an ``n x n`` grid, the
    depthwise conv ``k^2 n^2 C``; the projections are the same. ``4 n > k^2`` first holds at
    ``n = floor(k^2 / 4) + 1``."""
    return kernel_size**2 // 4 + 1


def _mixer_flops(kind: str, n: int, kernel_size: int) -> float:
    """FLOPs of one call of the mixer on ``(1, n, n, 8)`` tokens (small: real CPU tensors)."""
    channels = 8
    if kind == "dct":
        mixer = DynamicSpectrumMixer(channels, (n, n), dynamic=False)
    else:
        mixer = DepthwiseConvMixer(channels, kernel_size=kernel_size)
    tokens = torch.zeros(1, n, n, channels)
    with torch.no_grad():
        return count_flops(lambda: mixer(tokens)).total


def _dct_costlier(n: int, kernel_size: int) -> bool:
    return _mixer_flops("dct", n, kernel_size) > _mixer_flops("conv", n, kernel_size)


def check_first_grid_dct_costlier(function: Callable) -> bool:
    """``function(kernel_size)`` must return the smallest ``n`` such that the static DSM mixer
    (matmul DCT) on ``n x n`` tokens needs more FLOPs than a depthwise ``k x k`` conv mixer."""

    def cases() -> str:
        for k in (1, 3, 5, 7, 9):
            case = f"kernel size {k}"
            got = call(function, case, k)
            try:
                got = int(got)
            except (TypeError, ValueError):
                raise Mismatch(f"On {case} your function returned {got!r}, not a grid size.") \
                    from None
            # The DCT's cost grows like n^3, the conv's like n^2: one crossing, found where the
            # counter says the DCT is costlier at n and not at n - 1.
            expected = solution_first_grid_dct_costlier(k)
            assert _dct_costlier(expected, k) and (expected == 1
                                                   or not _dct_costlier(expected - 1, k)), k
            hint = ("The mixer runs dct2 and idct2 (4 n^3 C multiply-adds in all), the "
                    "convolution k^2 n^2 C; the projections cancel.")
            if got == expected - 1:
                hint = ("Off by one: that is the last grid where the DCT is still cheaper; return "
                        "the first where it costs more.")
            elif got == k**2 // 2 + 1:
                hint = "You counted only dct2; the mixer also runs idct2 on the way back."
            expect_equal(got, expected, case, hint)
        return ("It matches the FLOP counter for kernels 1 to 9: a 7 x 7 depthwise conv is "
                "cheaper than the matmul DCT from 13 x 13 tokens on, for any C.")

    return run_check("first_grid_dct_costlier", function, cases)
