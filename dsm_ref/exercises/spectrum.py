"""Exercises of notebook 02, the spectrum interactively: checks and solutions.

1. ``radial_band_mask(height, width, low, high) -> (H, W)``: the band-pass mask by radial
   frequency, 1 where ``low <= r < high``, from the definition of ``r``; checked against
   ``dsm_ref.spectrum.radial_mask``.
2. ``band_energy_after_gains(image (H, W), band_ids (H, W), gains (n_bands,)) -> (n_bands,)``:
   the share of the filtered image's energy in each band, from the image's spectrum alone
   (Parseval: a gain ``g`` multiplies a band's energy by ``g**2``); checked against the band
   energies of ``dsm_ref.spectrum.filter_spectrum`` with ``band_gains_to_weights``.
3. ``mirrored_spectrum(spectrum (..., H, W), dim) -> (..., H, W)``: the DCT spectrum of the
   image mirrored along ``dim``, without going back to pixels (coefficient ``k`` times
   ``(-1)**k``); checked against ``dsm_ref.dct.dct2`` of the flipped image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..dct import dct2, idct2
from ..spectrum import (
    band_gains_to_weights,
    block_bands,
    filter_spectrum,
    radial_mask,
    zigzag_bands,
)
from ._common import Mismatch, as_tensor, call, expect_close, run_check, same

__all__ = [
    "check_radial_band_mask", "solution_radial_band_mask",
    "check_band_energy_after_gains", "solution_band_energy_after_gains",
    "check_mirrored_spectrum", "solution_mirrored_spectrum",
]

# float32 answers are welcome: a tolerance near float32's precision, far below any real mistake
_TOL = dict(atol=1e-6, rtol=1e-5)


# --- 1. the radial band-pass mask ----------------------------------------------------------------

def solution_radial_band_mask(height: int, width: int, low: float, high: float) -> Tensor:
    """``r = sqrt((ky / H)**2 + (kx / W)**2) / sqrt(2)`` for every coefficient ``(ky, kx)``, then
    1.0 where ``low <= r < high``; ``(H, W)`` float64."""
    vertical = torch.arange(height, dtype=torch.float64) / height    # ky / H, (H,)
    horizontal = torch.arange(width, dtype=torch.float64) / width    # kx / W, (W,)
    radius = torch.hypot(vertical[:, None], horizontal[None, :]) / math.sqrt(2.0)
    return ((radius >= low) & (radius < high)).to(torch.float64)


def _radius(height: int, width: int, *, rows: float, cols: float, root2: bool = True) -> Tensor:
    """A radial frequency in float64 with the given denominators (the right ones are H and W)."""
    fy = torch.arange(height, dtype=torch.float64) / rows
    fx = torch.arange(width, dtype=torch.float64) / cols
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return radius / math.sqrt(2.0) if root2 else radius


def _band(radius: Tensor, low: float, high: float, *, closed_low: bool = True,
          open_high: bool = True) -> Tensor:
    above = radius >= low if closed_low else radius > low
    below = radius < high if open_high else radius <= high
    return (above & below).to(torch.float64)


def _mask_hint(got: Tensor, h: int, w: int, low: float, high: float) -> str:
    """The likely mistake behind a wrong mask of the right shape."""
    variants = [
        (_band(_radius(h, w, rows=h, cols=w, root2=False), low, high),
         "Divide by sqrt(2): then r runs over [0, 1), and the finest checkerboard is close to 1."),
        (_band(_radius(h, w, rows=h, cols=w), low, high, open_high=False),
         "The band is low <= r < high: r == high is outside it."),
        (_band(_radius(h, w, rows=h, cols=w), low, high, closed_low=False),
         "The band is low <= r < high: r == low is inside it (the DC term, r = 0, belongs to "
         "every low-pass)."),
    ]
    if h != w:
        variants.append((_band(_radius(h, w, rows=w, cols=h), low, high),
                         "Row ky is the vertical frequency ky / H (H rows), column kx the "
                         "horizontal one kx / W: you divided by the other axis' length."))
    if h > 1 and w > 1:
        variants.append((_band(_radius(h, w, rows=h - 1, cols=w - 1), low, high),
                         "The frequency of coefficient k of an N-point axis is k / N "
                         "half-cycles per pixel, not k / (N - 1): it never reaches 1."))
    for mask, hint in variants:
        if not same(mask, radial_mask(h, w, low, high).to(torch.float64)) and same(got, mask):
            return hint
    return ("r = sqrt((ky / H)**2 + (kx / W)**2) / sqrt(2), and the mask is 1.0 where "
            "low <= r < high, 0.0 elsewhere.")


def check_radial_band_mask(function: Callable) -> bool:
    """``function(height, width, low, high)`` must return the ``(H, W)`` mask that is 1 where
    ``low <= r < high``: ``dsm_ref.spectrum.radial_mask``."""

    def cases() -> str:
        settings = [
            (8, 8, 0.0, 0.3, "a low-pass 0 <= r < 0.3 of an 8 x 8 block"),
            (188, 160, 0.1, 0.3, "a band-pass 0.1 <= r < 0.3 of a 188 x 160 image (the photo)"),
            (5, 9, 0.25, math.inf, "a high-pass r >= 0.25 (high = inf) of a 5 x 9 block"),
            (7, 3, 0.4, 1.0, "a band-pass 0.4 <= r < 1 of a 7 x 3 block"),
            (1, 7, 0.2, 0.5, "a band-pass 0.2 <= r < 0.5 of a 1 x 7 block (one row)"),
            (6, 4, 0.0, 0.0, "the empty range low = high = 0 of a 6 x 4 block"),
            (12, 20, 0.0, 1.0, "the whole range 0 <= r < 1 of a 12 x 20 block"),
        ]
        for h, w, low, high, case in settings:
            expected = radial_mask(h, w, low, high).to(torch.float64)
            got = as_tensor(call(function, case, h, w, low, high), case)
            if got.shape == (w, h) and h != w:
                raise Mismatch(f"On {case} expected shape {(h, w)}, got {(w, h)}: rows are the "
                               "vertical frequencies ky (H of them), columns the horizontal "
                               "ones kx (W).")
            if got.shape == expected.shape:
                # float32 and float64 may disagree on a coefficient a hair from a cutoff
                radius = _radius(h, w, rows=h, cols=w)
                gap = torch.minimum((radius - low).abs(), (radius - high).abs())
                got = torch.where((gap > 0) & (gap < 1e-6), expected, got)
                if not same(got, expected):
                    expect_close(got, expected, case, _mask_hint(got, h, w, low, high))
            expect_close(got, expected, case)
        return ("Your masks equal dsm_ref.spectrum.radial_mask on square, oblong, one-row, "
                "empty and full ranges: a low-pass and the high-pass from the same cutoff "
                "partition the spectrum.")

    return run_check("radial_band_mask", function, cases)


# --- 2. band energies after per-band gains -------------------------------------------------------

def solution_band_energy_after_gains(image: Tensor, band_ids: Tensor, gains: Tensor) -> Tensor:
    """Parseval: the filtered image's energy is ``sum (w X)**2`` over its DCT coefficients, so
    band ``b`` holds ``g_b**2`` times its energy before the gains; shares of the new total."""
    energy = dct2(image.to(torch.float64)).pow(2)                     # (H, W), X**2
    gains = torch.as_tensor(gains, dtype=torch.float64)
    per_band = torch.zeros(len(gains), dtype=torch.float64)
    per_band.index_add_(0, band_ids.flatten(), energy.flatten())      # (n_bands,) before
    after = gains**2 * per_band
    return after / after.sum()


def _band_shares(image: Tensor, band_ids: Tensor, n_bands: int) -> Tensor:
    energy = dct2(image.to(torch.float64)).pow(2)
    per_band = torch.bincount(band_ids.flatten(), weights=energy.flatten(), minlength=n_bands)
    return per_band / per_band.sum()


def _reference_after_gains(image: Tensor, band_ids: Tensor, gains: Tensor) -> Tensor:
    """Filter the image (``filter_spectrum``), then measure its energy in each band."""
    filtered = filter_spectrum(image, band_gains_to_weights(gains, band_ids))
    return _band_shares(filtered, band_ids, len(gains))


def _smooth(h: int, w: int, generator: torch.Generator) -> Tensor:
    noise = torch.randn(h, w, generator=generator, dtype=torch.float64)
    return noise.cumsum(0).cumsum(1) / (h * w)  # integrated noise: most energy at low frequencies


def check_band_energy_after_gains(function: Callable) -> bool:
    """``function(image, band_ids, gains)`` must return the ``(n_bands,)`` shares of the energy
    of ``filter_spectrum(image, band_gains_to_weights(gains, band_ids))`` in each band."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(2)
        settings = [
            ("a smooth 16 x 16 image, 3 x 3 block bands, gains (1, 0.5, 2, 0, 1.5, 1, 0.3, 0.7, "
             "1.2)", _smooth(16, 16, generator), block_bands(16, 16, 3),
             torch.tensor([1.0, 0.5, 2.0, 0.0, 1.5, 1.0, 0.3, 0.7, 1.2], dtype=torch.float64)),
            ("a smooth 12 x 20 image, 6 zig-zag bands, gains (1, 2, 2, 2, 2, 2)",
             _smooth(12, 20, generator), zigzag_bands(12, 20, 6),
             torch.tensor([1.0, 2.0, 2.0, 2.0, 2.0, 2.0], dtype=torch.float64)),
            ("white noise 8 x 12, 4 x 4 block bands, random gains in [0, 2)",
             torch.randn(8, 12, generator=generator, dtype=torch.float64), block_bands(8, 12, 4),
             2 * torch.rand(16, generator=generator, dtype=torch.float64)),
            ("a smooth 9 x 7 image, 2 x 2 block bands, gains (-1, 0.5, -2, 1)",
             _smooth(9, 7, generator), block_bands(9, 7, 2),
             torch.tensor([-1.0, 0.5, -2.0, 1.0], dtype=torch.float64)),
            ("a smooth 10 x 10 image, one band (L = 1), gain 3", _smooth(10, 10, generator),
             block_bands(10, 10, 1), torch.tensor([3.0], dtype=torch.float64)),
        ]
        for case, image, band_ids, gains in settings:
            expected = _reference_after_gains(image, band_ids, gains)
            got = as_tensor(call(function, case, image.clone(), band_ids.clone(), gains.clone()),
                            case)
            hint = ("Band b's energy is the sum of X**2 over its coefficients; after the gains it "
                    "is g_b**2 times that (Parseval). Return each band's share of the new total.")
            if got.shape == expected.shape and not same(got, expected, **_TOL):
                before = _band_shares(image, band_ids, len(gains))
                linear = gains.abs() * before / (gains.abs() * before).sum()
                if torch.isfinite(got).all() and got.sum() > 0 and not math.isclose(
                        float(got.sum()), 1.0, rel_tol=1e-6) and same(got / got.sum(), expected,
                                                                      **_TOL):
                    hint = (f"Your values sum to {float(got.sum()):.4g}: return shares of the "
                            "filtered image's total energy, which sum to 1.")
                elif same(got, before, **_TOL):
                    hint = ("Those are the band energies before the gains; a gain g multiplies "
                            "every coefficient of its band by g.")
                elif same(got, linear, **_TOL):
                    hint = ("Energy is a square: a gain g multiplies a coefficient by g, and its "
                            "energy by g**2.")
            expect_close(got, expected, case, hint, **_TOL)
        return ("Your shares equal those of the filtered images for block and zig-zag bands: the "
                "gains scale each band's energy by g**2 (Parseval), no filtering needed.")

    return run_check("band_energy_after_gains", function, cases)


# --- 3. the spectrum of a mirrored image ---------------------------------------------------------

def solution_mirrored_spectrum(spectrum: Tensor, dim: int) -> Tensor:
    """``x_{N-1-n}`` has the coefficients ``(-1)**k X_k``: the cosine of odd ``k`` is odd about
    the centre of the axis, the one of even ``k`` even. Flip the sign of the odd coefficients."""
    length = spectrum.shape[dim]
    signs = torch.ones(length, dtype=spectrum.dtype)
    signs[1::2] = -1.0                                    # (+1, -1, +1, -1, ...), (N,)
    shape = [1] * spectrum.ndim
    shape[dim] = length
    return spectrum * signs.reshape(shape)


def _signed(spectrum: Tensor, dim: int, first: float) -> Tensor:
    signs = torch.tensor([first * (-1.0) ** k for k in range(spectrum.shape[dim])],
                         dtype=spectrum.dtype)
    shape = [1] * spectrum.ndim
    shape[dim] = spectrum.shape[dim]
    return spectrum * signs.reshape(shape)


def check_mirrored_spectrum(function: Callable) -> bool:
    """``function(spectrum, dim)`` for a ``(..., H, W)`` DCT spectrum must return the spectrum of
    the image flipped along ``dim`` (-1: left-right, -2: upside down)."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(4)
        settings = [
            ("an 8 x 8 spectrum, dim = -1 (left-right)", (8, 8), -1),
            ("a 5 x 9 spectrum, dim = -1 (left-right)", (5, 9), -1),
            ("a 5 x 9 spectrum, dim = -2 (upside down)", (5, 9), -2),
            ("a batch of spectra (2, 6, 7), dim = -1", (2, 6, 7), -1),
            ("a 1 x 7 spectrum, dim = -2 (one row: nothing to mirror)", (1, 7), -2),
            ("a 4 x 1 spectrum, dim = -2", (4, 1), -2),
        ]
        for case, shape, dim in settings:
            spectrum = torch.randn(*shape, generator=generator, dtype=torch.float64)
            before = spectrum.clone()
            expected = dct2(idct2(spectrum).flip(dim))
            got = as_tensor(call(function, case, spectrum, dim), case)
            if not torch.equal(spectrum, before):
                raise Mismatch(f"On {case} your function changed its input in place; work on a "
                               "copy.")
            hint = ("Mirroring an axis of N samples, n -> N-1-n, multiplies coefficient k of that "
                    "axis by (-1)**k.")
            if got.shape == expected.shape and not same(got, expected, **_TOL):
                other = -1 if dim == -2 else -2
                if same(got, spectrum.flip(dim), **_TOL):
                    hint = ("Mirroring the image does not mirror its spectrum: a coefficient keeps "
                            "its frequency, only its sign may change, (-1)**k for coefficient k.")
                elif same(got, _signed(spectrum, dim, -1.0), **_TOL):
                    hint = ("The signs are the wrong way round: the mean (k = 0) does not change "
                            "when the image is mirrored; the odd coefficients change sign.")
                elif same(got, _signed(spectrum, other, 1.0), **_TOL):
                    hint = ("You changed the signs along the other axis: dim = -1 is the "
                            "horizontal frequency kx (columns), dim = -2 the vertical one ky.")
            expect_close(got, expected, case, hint, **_TOL)
        return ("Your spectra equal dct2 of the mirrored images: mirroring flips the sign of "
                "the odd coefficients, so any real weights on the DCT commute with a mirror.")

    return run_check("mirrored_spectrum", function, cases)
