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
from .stats import paired_comparison

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
    "show_budget_curve",
    "show_band_selection",
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
    std) above, paired difference to the reference arm (same seed, bar: 95 % t-interval)
    below; returns the figure.

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
            comparison = paired_comparison(name, diff["diffs"], [0.0] * len(diff["diffs"]))
            low, high = comparison.ci95
            error = ([[comparison.mean - low], [high - comparison.mean]]
                     if comparison.n > 1 else None)
            bottom.errorbar(x, comparison.mean, yerr=error, fmt="o", color="C2", capsize=4)
            bottom.scatter([x] * len(diff["diffs"]), diff["diffs"], color="C1", s=14, zorder=3)
        bottom.axhline(0.0, color="gray", linewidth=1)
        bottom.set_ylabel(f"minus {record['reference']} (points)")
        for ax in (top, bottom):
            ax.set_xticks(positions, names, rotation=25, ha="right", fontsize=8)
            ax.set_xlim(-0.5, len(names) - 0.5)
            ax.grid(axis="y", alpha=0.3)
    return fig


def show_budget_curve(curve: Mapping[str, Any], *, dpi: int = 80):
    """Test top-1 of each arm at each budget of a :func:`dsm_ref.ablation.run_budget_curve`
    record (dots: single seeds, line: mean), budgets ordered by training images seen."""
    import matplotlib.pyplot as plt

    budgets = sorted((tuple(b) for b in curve["budgets"]), key=lambda b: (b[0] * b[1], b[0]))
    labels = [f"{n // 1000}k x {e}" if n >= 1000 else f"{n} x {e}" for n, e in budgets]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=dpi, layout="constrained")
    positions = np.arange(len(budgets))
    for colour, arm in enumerate(curve["arms"]):
        means = []
        for x, (n_train, epochs) in zip(positions, budgets, strict=True):
            values = [r["test_top1"] for r in curve["rows"] if r["arm"] == arm
                      and r["n_train"] == n_train and r["epochs"] == epochs]
            ax.scatter([x] * len(values), values, color=f"C{colour}", s=14)
            means.append(float(np.mean(values)) if values else np.nan)
        ax.plot(positions, means, "-o", color=f"C{colour}", label=arm, markersize=5)
    ax.set_xticks(positions, labels)
    ax.set_xlabel("training images x epochs")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"budget curve on {curve['dataset']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def show_band_selection(weights: Mapping[str, Tensor], factor: Tensor,
                        factor_names: Sequence[str], *, dpi: int = 80):
    """What trained DSWGs select: for each DSWG (row) the mean band weights over the images of
    each value of ``factor`` (columns), averaged over channel groups, and (last column) their
    spread over images (std / mean per band).

    ``weights``: DSWG name -> ``(N, G, L, L)`` band weights (:func:`dsm_ref.probe.
    record_band_weights`); ``factor``: ``(N,)`` ints in ``[0, len(factor_names))``.
    """
    import matplotlib.pyplot as plt

    names = list(weights)
    columns = len(factor_names) + 1
    fig, axes = plt.subplots(len(names), columns, figsize=(2.1 * columns, 2.0 * len(names)),
                             dpi=dpi, layout="constrained", squeeze=False)
    for row, name in enumerate(names):
        w = weights[name].float().mean(1)  # (N, L, L): averaged over groups
        maps = [w[factor == value].mean(0) for value in range(len(factor_names))]
        high = max(float(m.max()) for m in maps)
        for column, (label, band_map) in enumerate(zip(factor_names, maps, strict=True)):
            ax = axes[row, column]
            image = ax.imshow(band_map, cmap="magma", vmin=0.0, vmax=high)
            ax.set_title(f"{label}" if row == 0 else "", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=axes[row, len(factor_names) - 1], fraction=0.046)
        axes[row, 0].set_ylabel(name.replace(".mixer.dswg", "").replace("stages.", "stage "),
                                fontsize=8)
        spread = weights[name].float().std(0).mean(0) / weights[name].float().mean(0).mean(
            0).clamp_min(1e-12)
        ax = axes[row, -1]
        image = ax.imshow(spread, cmap="viridis", vmin=0.0)
        ax.set_title("spread over images" if row == 0 else "", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046)
    return fig
