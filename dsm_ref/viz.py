"""Plotting helpers and widget builders for the notebooks: thin views over :mod:`dsm_ref.spectrum`.

Defined in notebook 02 (the spectrum, interactively); notebook 01 uses the FFT helpers.

The computing functions (:func:`radial_filter`, :func:`band_filter`, :func:`band_energy`,
:func:`fft_radial_frequency`, :func:`fft_filter`) are pure and tested; the drawing functions
turn their results into matplotlib figures, and the widget builders wire the drawing functions
to sliders. ``ipywidgets`` (the ``course`` extra) is imported only by the widget builders.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import spectrum

__all__ = [
    "fft_radial_frequency",
    "fft_filter",
    "radial_filter",
    "band_filter",
    "band_energy",
    "show_panels",
    "show_band_energy",
    "radial_filter_widget",
    "band_gain_widget",
    "show_study",
]

# Images are in [0, 1]; their DCT coefficients are mostly << 1, where log1p is nearly linear.
# The "log spectrum" panels show the spectrum of the image in 8-bit units (0..255) instead.
LOG_SPECTRUM_SCALE = 255.0

# How each named panel is drawn (imshow keyword arguments); other names are auto-scaled.
PANEL_STYLES: dict[str, dict[str, Any]] = {
    "image": {"cmap": "gray", "vmin": 0.0, "vmax": 1.0},
    "log spectrum": {"cmap": "magma"},
    "mask": {"cmap": "gray", "vmin": 0.0, "vmax": 1.0},
    "weights": {"cmap": "viridis", "vmin": 0.0},
    "filtered": {"cmap": "gray"},
}


def fft_radial_frequency(h: int, w: int, *, device: torch.device | str | None = None) -> Tensor:
    """Radial frequency of each 2D FFT coefficient in :func:`spectrum.radial_frequency`'s units.

    ``(h, w)`` in ``[0, 1]``, in ``torch.fft.fft2`` order (DC at ``[0, 0]``). An FFT bin ``k`` of
    an ``n``-point axis is ``|k| / n`` cycles per sample, i.e. ``2 |k| / n`` half-cycles: DCT
    coefficient ``2k`` has the same frequency as FFT bin ``k``.
    """
    fy = torch.fft.fftfreq(h, device=device).abs() * 2
    fx = torch.fft.fftfreq(w, device=device).abs() * 2
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / math.sqrt(2.0)


def fft_filter(image: Tensor, weights: Tensor) -> Tensor:
    """Re-weights the 2D FFT spectrum: ``real(ifft2(fft2(image) * weights))``.

    ``image: (..., H, W)``, ``weights`` broadcastable to ``(..., H, W)`` in FFT order. The
    circular counterpart of :func:`spectrum.filter_spectrum`: the image is treated as periodic,
    so what leaves one border comes back at the opposite one (wrap-around).
    """
    return torch.fft.ifft2(torch.fft.fft2(image) * weights).real


def radial_filter(image: Tensor, low: float, high: float) -> dict[str, Tensor]:
    """Band-pass by radius on the DCT: the four panels a filtering widget shows.

    ``image: (H, W)`` in ``[0, 1]`` -> ``{"image", "log spectrum", "mask", "filtered"}``, each
    ``(H, W)``; the log spectrum is that of ``image * LOG_SPECTRUM_SCALE`` (8-bit units).
    ``low = 0`` is a low-pass, ``high >= 1`` a high-pass (see :func:`spectrum.radial_mask`).
    """
    h, w = image.shape[-2:]
    mask = spectrum.radial_mask(h, w, low, high, device=image.device).to(image.dtype)
    return {
        "image": image,
        "log spectrum": spectrum.log_spectrum(image * LOG_SPECTRUM_SCALE),
        "mask": mask,
        "filtered": spectrum.filter_spectrum(image, mask),
    }


def band_filter(
    image: Tensor, band_ids: Tensor, gains: Sequence[float] | Tensor
) -> dict[str, Tensor]:
    """Per-band gains on the DCT: ``{"image", "log spectrum", "weights", "filtered"}``.

    ``image: (H, W)``, ``band_ids: (H, W)`` long (e.g. :func:`spectrum.block_bands` or
    :func:`spectrum.zigzag_bands`), ``gains: (n_bands,)``.
    """
    gains_t = torch.as_tensor(gains, dtype=image.dtype, device=image.device)
    weights = spectrum.band_gains_to_weights(gains_t, band_ids.to(image.device))
    return {
        "image": image,
        "log spectrum": spectrum.log_spectrum(image * LOG_SPECTRUM_SCALE),
        "weights": weights,
        "filtered": spectrum.filter_spectrum(image, weights),
    }


def band_energy(image: Tensor, band_ids: Tensor, *, exclude_dc: bool = False) -> Tensor:
    """Fraction of the DCT energy of ``image`` in each band, ``(n_bands,)``, summing to 1.

    ``image: (..., H, W)`` (energies summed over leading dims), ``band_ids: (H, W)`` long.
    ``exclude_dc=True`` drops the mean (coefficient ``(0, 0)``), which otherwise dominates band 0.
    """
    h, w = image.shape[-2:]
    if band_ids.shape != (h, w):
        raise ValueError(f"band_ids has shape {tuple(band_ids.shape)}, the image is {h} x {w}")
    energy = spectrum.dct2(image.to(torch.float64)).pow(2).reshape(-1, h, w).sum(0)
    full = energy.sum()
    if exclude_dc:
        energy[0, 0] = 0.0
    per_band = torch.bincount(band_ids.flatten().cpu(), weights=energy.flatten().cpu())
    total = per_band.sum()
    if total == 0 or total <= 1e-20 * full:  # a constant image's AC energy is rounding noise
        raise ValueError(
            "the image has no energy to distribute (all zero, or constant with exclude_dc)"
        )
    return per_band / total


def _to_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def show_panels(
    rows: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
    *,
    row_titles: Sequence[str] | None = None,
    size: float = 2.2,
    dpi: int = 80,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
):
    """Draws panels (name -> ``(H, W)`` tensor) as one row per mapping; returns the figure.

    Panels named in :data:`PANEL_STYLES` (or ``styles``) use that style; other panels are
    auto-scaled in gray. The figure is not shown: display it, or let the inline backend do so.
    """
    import matplotlib.pyplot as plt

    rows = [rows] if isinstance(rows, Mapping) else list(rows)
    n_cols = max(len(r) for r in rows)
    style_table = {**PANEL_STYLES, **(styles or {})}
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(size * n_cols, size * len(rows)), dpi=dpi, squeeze=False
    )
    for r, panels in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.set_axis_off()
                continue
            name, values = list(panels.items())[c]
            ax.imshow(_to_numpy(values), **style_table.get(name, {"cmap": "gray"}))
            ax.set_title(name, fontsize=9)
        if row_titles is not None:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=9)
    fig.tight_layout()
    return fig


def show_band_energy(
    profiles: Mapping[str, Tensor], length: int, *, size: float = 2.0, dpi: int = 80
):
    """Draws band-energy profiles of an ``L x L`` block grid as log10 heatmaps; returns the figure.

    ``profiles``: name -> ``(L*L,)`` fractions from :func:`band_energy` with
    ``spectrum.block_bands(h, w, L)``. Row = vertical frequency band, column = horizontal.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        len(profiles),
        figsize=(size * len(profiles) + 1.0, size * 1.1),
        dpi=dpi,
        squeeze=False,
        layout="constrained",
    )
    for ax, (name, fractions) in zip(axes[0], profiles.items(), strict=True):
        grid = np.log10(np.maximum(_to_numpy(fractions).reshape(length, length), 1e-8))
        im = ax.imshow(grid, cmap="viridis", vmin=-5, vmax=0)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(length))
        ax.set_yticks(range(length))
        ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="log10 energy fraction")
    return fig


def _display_and_close(fig) -> None:
    """Shows ``fig`` as a JPEG (photographic panels: several times smaller than a PNG, which
    keeps the widget state that a notebook stores small) and closes it."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=fig.dpi, pil_kwargs={"quality": 90})
    plt.close(fig)
    display(Image(data=buffer.getvalue(), format="jpeg"))


def radial_filter_widget(image: Tensor, low: float = 0.0, high: float = 0.2, step: float = 0.01):
    """Range slider over the radial frequency -> :func:`radial_filter` panels of ``image``.

    ``image: (H, W)``. Returns an ``ipywidgets.interactive``; display it (the last expression of
    a cell). Keep ``H, W`` near 128-192 so that one update stays well under a second on a CPU.
    """
    import ipywidgets as widgets

    def update(band: tuple[float, float]) -> None:
        _display_and_close(show_panels(radial_filter(image, *band)))

    slider = widgets.FloatRangeSlider(
        value=(low, high),
        min=0.0,
        max=1.0,
        step=step,
        description="radius",
        continuous_update=False,
        readout_format=".2f",
    )
    return widgets.interactive(update, band=slider)


def band_gain_widget(
    image: Tensor,
    band_ids: Tensor,
    gains: Sequence[float] | None = None,
    *,
    max_gain: float = 2.0,
    labels: Sequence[str] | None = None,
):
    """One gain slider per band -> :func:`band_filter` panels of ``image``.

    ``image: (H, W)``, ``band_ids: (H, W)`` long with ``n_bands`` ids. ``gains`` start values
    (default all 1: the identity), ``labels`` the slider descriptions (default ``band i``).
    Returns an ``ipywidgets.interactive``.
    """
    import ipywidgets as widgets

    n_bands = int(band_ids.max()) + 1
    gains = [1.0] * n_bands if gains is None else list(gains)
    labels = [f"band {i}" for i in range(n_bands)] if labels is None else list(labels)
    if len(gains) != n_bands or len(labels) != n_bands:
        raise ValueError(f"expected {n_bands} gains and labels, got {len(gains)} and {len(labels)}")
    sliders = {
        f"g{i}": widgets.FloatSlider(
            value=g, min=0.0, max=max_gain, step=0.05, description=label, continuous_update=False
        )
        for i, (g, label) in enumerate(zip(gains, labels, strict=True))
    }

    def update(**kwargs: float) -> None:
        values = [kwargs[f"g{i}"] for i in range(n_bands)]
        _display_and_close(show_panels(band_filter(image, band_ids, values)))

    return widgets.interactive(update, **sliders)


def show_study(records: Sequence[Mapping[str, Any]], *, size: float = 3.2, dpi: int = 80):
    """One ablation study on one or more datasets: accuracy per arm (dots: seeds, bar: mean +-
    std) above, paired difference to the reference arm (same seed) below; returns the figure.

    ``records``: study records of :func:`dsm_ref.ablation.run_study`, one per dataset.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(records), figsize=(size * 1.4 * len(records), size * 1.6),
                             dpi=dpi, squeeze=False, layout="constrained")
    for column, record in enumerate(records):
        names = [arm["name"] for arm in record["arms"]]
        positions = np.arange(len(names))
        top, bottom = axes[0, column], axes[1, column]
        for x, arm in zip(positions, record["arms"], strict=True):
            seeds = [run["test_top1"] for run in arm["runs"]]
            summary = arm["test_top1"]
            top.errorbar(x, summary["mean"], yerr=summary["std"], fmt="s", color="C0",
                         capsize=4, markersize=7)
            top.scatter([x] * len(seeds), seeds, color="C1", s=14, zorder=3)
        top.set_title(f"{record['study']} on {record['dataset']}", fontsize=10)
        top.set_ylabel("test top-1 (%)")
        paired = {p["arm"]: p for p in record["paired_differences"]}
        for x, name in zip(positions, names, strict=True):
            if name not in paired:
                continue
            diff = paired[name]
            bottom.errorbar(x, diff["mean"], yerr=diff["std"], fmt="o", color="C2", capsize=4)
            bottom.scatter([x] * len(diff["diffs"]), diff["diffs"], color="C1", s=14, zorder=3)
        bottom.axhline(0.0, color="gray", linewidth=1)
        bottom.set_ylabel(f"minus {record['reference']} (points)")
        for ax in (top, bottom):
            ax.set_xticks(positions, names, rotation=25, ha="right", fontsize=8)
            ax.set_xlim(-0.5, len(names) - 0.5)
            ax.grid(axis="y", alpha=0.3)
    return fig
