"""Exercises of notebook 01, the DCT from scratch: checks and solutions.

1. ``dct_basis_image(u, v, height, width) -> (H, W)``: the 2D basis image of coefficient
   ``(u, v)``, an outer product of two scaled cosines (separability and the scales ``s_k``);
   checked against ``dsm_ref.dct.idct2`` of a one-hot spectrum.
2. ``idct_from_definition(coefficients (N,)) -> (N,)``: the orthonormal DCT-III, the inverse,
   written from its formula; checked against ``dsm_ref.dct.idct``.
3. ``coefficients_for_energy(image (H, W), fraction) -> int``: how many of the largest DCT
   coefficients keep a given share of the energy (Parseval, energy compaction); checked
   against ``dsm_ref.spectrum.energy_compaction``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..dct import dct, dct2, idct, idct2
from ..spectrum import energy_compaction
from ._common import Mismatch, as_tensor, call, expect_close, expect_equal, run_check, same

__all__ = [
    "check_dct_basis_image", "solution_dct_basis_image",
    "check_idct_from_definition", "solution_idct_from_definition",
    "check_coefficients_for_energy", "solution_coefficients_for_energy",
]

# float32 answers are welcome: a tolerance near float32's precision, far below any real mistake
_TOL = dict(atol=1e-6, rtol=1e-5)

_SCALE_HINT = ("Each factor needs its orthonormal scale: s_0 = sqrt(1/N), s_k = sqrt(2/N) for "
               "k >= 1, with N the length of that axis.")


def _scale(k: int, n: int) -> float:
    return math.sqrt((1 if k == 0 else 2) / n)


# --- 1. basis images -----------------------------------------------------------------------------

def solution_dct_basis_image(u: int, v: int, height: int, width: int) -> Tensor:
    """``B_uv[m, n] = s_u cos(pi u (2m + 1) / 2H) * s_v cos(pi v (2n + 1) / 2W)``, float64."""
    m = torch.arange(height, dtype=torch.float64)
    n = torch.arange(width, dtype=torch.float64)
    column = _scale(u, height) * torch.cos(math.pi * u * (2 * m + 1) / (2 * height))  # (H,)
    row = _scale(v, width) * torch.cos(math.pi * v * (2 * n + 1) / (2 * width))         # (W,)
    return torch.outer(column, row)


def _one_hot_basis(u: int, v: int, height: int, width: int) -> Tensor:
    spectrum = torch.zeros(height, width, dtype=torch.float64)
    spectrum[u, v] = 1.0
    return idct2(spectrum)


def check_dct_basis_image(function: Callable) -> bool:
    """``function(u, v, height, width)`` must return the ``(H, W)`` basis image of DCT
    coefficient ``(u, v)``: ``idct2`` of a spectrum with a single 1 at ``(u, v)``."""

    def cases() -> str:
        for u, v, h, w in [(0, 0, 8, 8), (2, 5, 8, 8), (1, 0, 4, 6), (0, 3, 4, 6), (3, 1, 5, 3),
                           (0, 4, 1, 7), (6, 6, 7, 7)]:
            case = f"(u, v) = ({u}, {v}) of a {h} x {w} block"
            expected = _one_hot_basis(u, v, h, w)
            got = as_tensor(call(function, case, u, v, h, w), case)
            if got.shape == expected.shape and not same(got, expected, **_TOL):
                if h == w and u != v and same(got, expected.T, **_TOL):
                    raise Mismatch(f"On {case} your image is the transpose of the right one: u is "
                                   "the vertical frequency (rows, along H), v the horizontal one "
                                   "(columns, along W).")
                ratio = float((got * expected).sum() / expected.pow(2).sum())
                if (math.isfinite(ratio) and ratio > 0 and abs(ratio - 1) > 1e-3
                        and same(got, ratio * expected, **_TOL)):
                    raise Mismatch(f"On {case} your image is {ratio:.4g} times the right one. "
                                   f"{_SCALE_HINT}")
            expect_close(got, expected, case, "B_uv[m, n] = s_u cos(pi u (2m+1) / 2H) * "
                         "s_v cos(pi v (2n+1) / 2W): an outer product of a column and a row.",
                         **_TOL)
        return ("Every basis image is the outer product of two scaled cosines, and equals "
                "dsm_ref.dct.idct2 of a one-hot spectrum (7 cases, square and not).")

    return run_check("dct_basis_image", function, cases)


# --- 2. the inverse, the DCT-III -----------------------------------------------------------------

def solution_idct_from_definition(coefficients: Tensor) -> Tensor:
    """``x_n = sum_k s_k X_k cos(pi k (2n + 1) / 2N)``: the transpose of the DCT-II matrix."""
    n_samples = coefficients.shape[-1]
    k = torch.arange(n_samples, dtype=torch.float64)[None, :]  # frequency, columns
    n = torch.arange(n_samples, dtype=torch.float64)[:, None]  # sample, rows
    scales = torch.full((1, n_samples), math.sqrt(2 / n_samples), dtype=torch.float64)
    scales[0, 0] = math.sqrt(1 / n_samples)
    basis = scales * torch.cos(math.pi * k * (2 * n + 1) / (2 * n_samples))  # (N samples, N freqs)
    return basis @ coefficients.to(torch.float64)


def check_idct_from_definition(function: Callable) -> bool:
    """``function(X)`` for ``X`` of shape ``(N,)`` must return the orthonormal DCT-III of ``X``,
    the inverse of ``dsm_ref.dct.dct``."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(1)
        signals = {
            "a length-1 spectrum": torch.tensor([2.5], dtype=torch.float64),
            "a length-2 spectrum": torch.tensor([1.0, -3.0], dtype=torch.float64),
            "a DC-only spectrum of length 6": torch.tensor([1.0, 0, 0, 0, 0, 0],
                                                           dtype=torch.float64),
            "a random spectrum of length 5": torch.randn(5, generator=generator,
                                                         dtype=torch.float64),
            "a random spectrum of length 16": torch.randn(16, generator=generator,
                                                          dtype=torch.float64),
        }
        for case, spectrum in signals.items():
            before = spectrum.clone()
            expected = idct(spectrum)
            got = as_tensor(call(function, case, spectrum), case)
            if not torch.equal(spectrum, before):
                raise Mismatch(f"On {case} your function changed its input in place; work on a "
                               "copy.")
            if got.shape == expected.shape and not same(got, expected, **_TOL):
                if same(got, dct(spectrum), **_TOL):
                    raise Mismatch(f"On {case} you returned the forward DCT-II of X. The inverse "
                                   "sums over the frequencies k for each sample n: "
                                   "x_n = sum_k s_k X_k cos(pi k (2n+1) / 2N).")
            expect_close(got, expected, case, "x_n = sum_k s_k X_k cos(pi k (2n+1) / 2N), with "
                         "s_0 = sqrt(1/N) and s_k = sqrt(2/N): the transpose of the DCT matrix.",
                         **_TOL)
            roundtrip = as_tensor(call(function, case, dct(spectrum)), case)
            expect_close(roundtrip, spectrum, f"the round trip idct(dct(x)) for {case}",
                         "The inverse must undo dsm_ref.dct.dct.", **_TOL)
        return ("It equals dsm_ref.dct.idct for lengths 1 to 16 and undoes the DCT-II: the "
                "inverse of an orthonormal transform is its transpose.")

    return run_check("idct_from_definition", function, cases)


# --- 3. energy compaction ------------------------------------------------------------------------

def solution_coefficients_for_energy(image: Tensor, fraction: float) -> int:
    """The smallest ``k`` whose ``k`` largest DCT coefficients hold at least ``fraction`` of the
    energy; by Parseval the energy of the spectrum is the energy of the image."""
    energy = dct2(image.to(torch.float64)).pow(2).flatten().sort(descending=True).values
    kept = energy.cumsum(0) / energy.sum()
    return int((kept < fraction).sum()) + 1


def _expected_count(image: Tensor, fraction: float, order: str = "largest") -> int:
    kept = energy_compaction(image, order=order)
    return int((kept < fraction).sum()) + 1


def _smooth_image(h: int, w: int, generator: torch.Generator) -> Tensor:
    noise = torch.randn(h, w, generator=generator, dtype=torch.float64)
    return noise.cumsum(0).cumsum(1) / (h * w)  # integrated noise: most energy at low frequencies


def check_coefficients_for_energy(function: Callable) -> bool:
    """``function(image, fraction)`` must return how many of the largest DCT coefficients of the
    ``(H, W)`` image are needed to keep at least ``fraction`` of its energy."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(0)
        smooth = _smooth_image(16, 16, generator)
        one_hot = torch.zeros(8, 8, dtype=torch.float64)
        one_hot[3, 2] = 1.0
        images = [
            ("a smooth 16 x 16 image, fraction 0.9", smooth, 0.9),
            ("a smooth 16 x 16 image, fraction 0.99", smooth, 0.99),
            ("a smooth 12 x 20 image, fraction 0.95", _smooth_image(12, 20, generator), 0.95),
            ("white noise 8 x 12, fraction 0.5", torch.randn(8, 12, generator=generator,
                                                              dtype=torch.float64), 0.5),
            ("a constant 6 x 6 image, fraction 0.999", torch.full((6, 6), 0.7,
                                                                   dtype=torch.float64), 0.999),
            ("the basis image (3, 2) of an 8 x 8 block, fraction 0.9", idct2(one_hot), 0.9),
        ]
        for case, image, fraction in images:
            expected = _expected_count(image, fraction)
            got = call(function, case, image.clone(), fraction)
            try:
                got = int(got)
            except (TypeError, ValueError):
                raise Mismatch(f"On {case} your function returned {got!r}, expected the integer "
                               f"{expected}.") from None
            hint = ("Sort the squared coefficients (the energy) from largest to smallest, take the "
                    "cumulative share of the total, and return the first count k that reaches "
                    "the fraction.")
            if got != expected:
                if got == expected - 1:
                    hint = ("Off by one: return a count of coefficients (k >= 1), not the index "
                            "of the last one kept.")
                elif got == _expected_count(image, fraction, "zigzag"):
                    hint = ("That is the count in zig-zag order (a fixed low-pass); keep the "
                            "largest coefficients first.")
                elif got == _count_by_magnitude(image, fraction):
                    hint = ("Energy is the square of a coefficient: rank and sum Y**2, not |Y|.")
            expect_equal(got, expected, case, hint)
        return ("It matches dsm_ref.spectrum.energy_compaction(order='largest') on smooth, "
                "noisy, constant and single-coefficient images.")

    return run_check("coefficients_for_energy", function, cases)


def _count_by_magnitude(image: Tensor, fraction: float) -> int:
    magnitude = dct2(image.to(torch.float64)).abs().flatten().sort(descending=True).values
    kept = magnitude.cumsum(0) / magnitude.sum()
    return int((kept < fraction).sum()) + 1
