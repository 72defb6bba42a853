"""Frequency grids, band masks and spectral filtering on the 2D DCT.

Defined in notebook 02 (the spectrum, interactively). Pure functions: the widgets of the course
are thin views over them, and :class:`dsm_ref.dswg.DynamicSpectrumWeights` uses the same
rectangular bands (:func:`block_band_index`).

Conventions: a DCT coefficient ``(ky, kx)`` of an ``H x W`` image has the frequency
``(ky / H, kx / W)`` in half-cycles per sample, so each axis runs over ``[0, 1)``. The radial
frequency is ``sqrt((ky/H)**2 + (kx/W)**2) / sqrt(2)``, also in ``[0, 1)``: 0 is the mean (DC),
values near 1 the finest checkerboard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .dct import dct2, idct2

__all__ = [
    "radial_frequency",
    "radial_mask",
    "lowpass_mask",
    "highpass_mask",
    "zigzag_order",
    "zigzag_bands",
    "block_band_index",
    "block_bands",
    "band_gains_to_weights",
    "filter_spectrum",
    "log_spectrum",
    "energy_compaction",
]


def _check_size(h: int, w: int) -> None:
    for name, n in (("h", h), ("w", w)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be an int >= 1, got {n!r}")


def radial_frequency(h: int, w: int, *, device: torch.device | str | None = None) -> Tensor:
    """Normalised radial frequency of each DCT coefficient, ``(h, w)`` in ``[0, 1)``."""
    _check_size(h, w)
    fy = torch.arange(h, dtype=torch.float32, device=device) / h
    fx = torch.arange(w, dtype=torch.float32, device=device) / w
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / math.sqrt(2.0)


def radial_mask(
    h: int, w: int, low: float = 0.0, high: float = 1.0, *, device: torch.device | str | None = None
) -> Tensor:
    """Band-pass mask ``(h, w)``: 1.0 where ``low <= radial frequency < high``, else 0.0.

    ``high > 1`` keeps everything above ``low``; the DC term has frequency 0.
    """
    if not low <= high:
        raise ValueError(f"expected low <= high, got low={low}, high={high}")
    radius = radial_frequency(h, w, device=device)
    return ((radius >= low) & (radius < high)).float()


def lowpass_mask(h: int, w: int, cutoff: float, **kwargs) -> Tensor:
    """Keeps the coefficients with radial frequency ``< cutoff``; ``(h, w)``."""
    return radial_mask(h, w, 0.0, cutoff, **kwargs)


def highpass_mask(h: int, w: int, cutoff: float, **kwargs) -> Tensor:
    """Keeps the coefficients with radial frequency ``>= cutoff``; ``(h, w)``."""
    return radial_mask(h, w, cutoff, math.inf, **kwargs)


def zigzag_order(h: int, w: int) -> Tensor:
    """Position of each coefficient in the JPEG zig-zag scan, ``(h, w)`` long in ``[0, h*w)``.

    Coefficients are visited by anti-diagonal ``ky + kx`` (low to high frequency), alternating
    direction on each diagonal as JPEG does.
    """
    _check_size(h, w)
    ky, kx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    diagonal = ky + kx
    # Along even diagonals JPEG walks up (kx increasing), along odd ones down (ky increasing).
    along = torch.where(diagonal % 2 == 0, kx, ky)
    key = diagonal * (h + w) + along
    order = torch.empty(h * w, dtype=torch.long)
    order[key.flatten().argsort()] = torch.arange(h * w)
    return order.reshape(h, w)


def zigzag_bands(h: int, w: int, n_bands: int) -> Tensor:
    """Splits the zig-zag scan into ``n_bands`` runs of (nearly) equal length; ``(h, w)`` ids."""
    if not 1 <= n_bands <= h * w:
        raise ValueError(f"n_bands must be in [1, h*w={h * w}], got {n_bands}")
    return zigzag_order(h, w) * n_bands // (h * w)


def block_band_index(n: int, length: int, *, device: torch.device | str | None = None) -> Tensor:
    """Band of each of ``n`` frequencies when one axis is cut into ``length`` bands; ``(n,)``.

    Frequency ``k`` falls in band ``floor(k * length / n)``: the bands partition the axis into
    contiguous runs, as nearest-neighbour upsampling from ``length`` to ``n`` would. If
    ``n < length`` some bands are empty.
    """
    if n < 1 or length < 1:
        raise ValueError(f"expected n >= 1 and length >= 1, got n={n}, length={length}")
    return torch.arange(n, device=device) * length // n


def block_bands(h: int, w: int, length: int) -> Tensor:
    """``L x L`` grid of rectangular bands: ids ``(h, w)`` in ``[0, L*L)``, row-major."""
    _check_size(h, w)
    return block_band_index(h, length)[:, None] * length + block_band_index(w, length)[None, :]


def band_gains_to_weights(gains: Tensor, band_ids: Tensor) -> Tensor:
    """Per-coefficient weights from per-band gains.

    ``gains: (..., n_bands)``, ``band_ids: (H, W)`` long -> ``(..., H, W)``.
    """
    if band_ids.dtype != torch.long:
        raise TypeError(f"band_ids must be a long tensor, got {band_ids.dtype}")
    n_bands = int(band_ids.max()) + 1
    if gains.shape[-1] < n_bands:
        raise ValueError(
            f"gains has {gains.shape[-1]} bands in its last dim, band_ids needs {n_bands}"
        )
    return gains[..., band_ids]


def filter_spectrum(image: Tensor, weights: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """Re-weights the DCT spectrum of ``image``: ``idct2(dct2(image) * weights)``.

    ``image: (..., H, W)`` (or any layout, with ``dims`` naming H and W), ``weights``
    broadcastable to ``image``'s spectrum, e.g. ``(H, W)``. Real weights on the DCT are a global,
    zero-phase convolution of the symmetrically extended image: no wrap-around at the borders.
    """
    spectrum = dct2(image, dims)
    try:
        return idct2(spectrum * weights, dims)
    except RuntimeError as err:
        raise ValueError(
            f"weights of shape {tuple(weights.shape)} do not broadcast to the spectrum of shape "
            f"{tuple(spectrum.shape)}"
        ) from err


def log_spectrum(image: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """``log(1 + |dct2(image)|)``, the usual view of a spectrum's magnitude; same shape."""
    return torch.log1p(dct2(image, dims).abs())


def energy_compaction(image: Tensor, order: str = "zigzag") -> Tensor:
    """Fraction of the energy kept by the first ``k`` DCT coefficients, ``k = 1 .. H*W``.

    ``image: (..., H, W)`` -> ``(H*W,)``, energies summed over leading dims. ``order="zigzag"``
    keeps coefficients in zig-zag order (what a fixed low-pass does); ``order="largest"``
    keeps the largest first (the best any basis selection can do).
    """
    if image.ndim < 2:
        raise ValueError(f"expected an image (..., H, W), got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    energy = dct2(image.to(torch.float64)).pow(2).reshape(-1, h * w).sum(0)
    if order == "zigzag":
        energy = energy[zigzag_order(h, w).flatten().argsort()]
    elif order == "largest":
        energy = energy.sort(descending=True).values
    else:
        raise ValueError(f"order must be 'zigzag' or 'largest', got {order!r}")
    return energy.cumsum(0) / energy.sum()
