"""Plotting helpers and widget builders for the notebooks: thin views over :mod:`dsm_ref.spectrum`.

Defined in notebook 02 (the spectrum, interactively); notebook 01 uses the FFT helpers.

The computing functions (:func:`radial_filter`, :func:`band_filter`, :func:`band_energy`,
:func:`fft_radial_frequency`, :func:`fft_filter`) are pure and tested; the drawing functions
turn their results into matplotlib figures, and the widget builders wire the drawing functions
to sliders. ``ipywidgets`` (the ``course`` extra) is imported only by the widget builders.

The widgets' panels are drawn 1:1: one image pixel per CSS pixel (``zoom=1``), saved as PNG at
twice the figure's dpi so that they stay sharp on HiDPI screens; :func:`use_compact_retina_png`
shows a notebook's figures the same way, losslessly re-encoded in fewer bytes
(:func:`compact_png`). A notebook stores no widget state (:func:`strip_widget_outputs`): the
offline view of a widget is the static figure of its default setting
(:func:`radial_filter_figure`, :func:`band_filter_figure`) that follows it.
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
from .train.tasks import METRIC_LABELS

__all__ = [
    "fft_radial_frequency",
    "fft_filter",
    "radial_filter",
    "band_filter",
    "band_energy",
    "show_panels",
    "radial_filter_figure",
    "band_filter_figure",
    "figure_png",
    "compact_png",
    "use_compact_retina_png",
    "LivePanels",
    "show_band_energy",
    "radial_filter_widget",
    "band_gain_widget",
    "strip_widget_outputs",
    "show_study",
    "show_budget_curve",
    "show_band_selection",
    "show_predictions",
]

# Images are in [0, 1]; their DCT coefficients are mostly << 1, where log1p is nearly linear.
# The "log spectrum" panels show the spectrum of the image in 8-bit units (0..255) instead.
LOG_SPECTRUM_SCALE = 255.0

# How each named panel is drawn (imshow keyword arguments, and ``"colorbar": True`` for a colour
# bar beside the panel); other names are auto-scaled in gray.
PANEL_STYLES: dict[str, dict[str, Any]] = {
    "image": {"cmap": "gray", "vmin": 0.0, "vmax": 1.0},
    "log spectrum": {"cmap": "magma"},
    "mask": {"cmap": "gray", "vmin": 0.0, "vmax": 1.0},
    "weights": {"cmap": "viridis", "vmin": 0.0, "colorbar": True},
    "filtered": {"cmap": "gray"},
}

# Text sizes in CSS pixels (a figure of ``dpi`` d shows d CSS pixels per inch; a point is 1/72
# inch): titles and labels stay readable whatever the figure's dpi.
TITLE_PX = 13
TICK_PX = 11
# The dpi of the 1:1 panels: 72, so that one point is one CSS pixel.
PANEL_DPI = 72
# Layout of the 1:1 panels, in CSS pixels.
_GAP_PX, _MARGIN_PX, _COLORBAR_PX, _COLORBAR_PAD_PX, _COLORBAR_LABELS_PX = 16, 6, 10, 6, 34


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


def _points(px: float, dpi: float) -> float:
    """A size of ``px`` CSS pixels in points, on a figure of ``dpi``."""
    return px * 72.0 / dpi


def show_panels(
    rows: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
    *,
    row_titles: Sequence[str] | None = None,
    size: float = 2.2,
    dpi: int = 80,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
    zoom: int | None = None,
):
    """Draws panels (name -> ``(H, W)`` tensor) as one row per mapping; returns the figure.

    Panels named in :data:`PANEL_STYLES` (or ``styles``) use that style; other panels are
    auto-scaled in gray. A style with ``"colorbar": True`` adds a colour bar beside its panel.
    ``zoom=None``: every panel is a ``size``-inch square. ``zoom=k``: every panel is drawn at
    ``k`` CSS pixels per image pixel (``k = 1``: 1:1, no resampling; panels of one row may differ
    in size), framed outside the image, with titles of :data:`TITLE_PX` pixels that may span
    several lines. The figure is not shown: display it, or let the inline backend do so.
    """
    fig, _ = _panel_figure(rows, row_titles=row_titles, size=size, dpi=dpi, styles=styles,
                           zoom=zoom, pyplot=True)
    return fig


def _panel_figure(rows, *, row_titles, size, dpi, styles, zoom, pyplot):
    """:func:`show_panels`' figure and its images, ``[(style, AxesImage), ...]``; a pyplot figure
    (shown by the inline backend) or a bare :class:`~matplotlib.figure.Figure` (not shown)."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows = [rows] if isinstance(rows, Mapping) else list(rows)
    style_table = {**PANEL_STYLES, **(styles or {})}
    title_pt = _points(TITLE_PX, dpi)
    images = []

    def new_figure(**kwargs):
        return plt.figure(**kwargs) if pyplot else Figure(**kwargs)

    def draw(ax, name: str, values) -> tuple[Any, bool]:
        style = dict(style_table.get(name, {"cmap": "gray"}))
        colorbar = style.pop("colorbar", False)
        if zoom is not None:
            style.setdefault("interpolation", "nearest")
        image = ax.imshow(_to_numpy(values), **style)
        images.append((style, image))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=title_pt)
        return image, colorbar

    if zoom is None:
        n_cols = max(len(r) for r in rows)
        fig = new_figure(figsize=(size * n_cols, size * len(rows)), dpi=dpi)
        axes = fig.subplots(len(rows), n_cols, squeeze=False)
        for r, panels in enumerate(rows):
            for c in range(n_cols):
                ax = axes[r, c]
                if c >= len(panels):
                    ax.set_axis_off()
                    continue
                name, values = list(panels.items())[c]
                image, colorbar = draw(ax, name, values)
                if colorbar:
                    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
                    bar.ax.tick_params(labelsize=_points(TICK_PX, dpi))
            if row_titles is not None:
                axes[r, 0].set_ylabel(row_titles[r], fontsize=title_pt)
        fig.tight_layout()
        return fig, images

    # 1:1 layout, in CSS pixels from the top left; converted to figure fractions at the end.
    def has_colorbar(name: str) -> bool:
        return bool(style_table.get(name, {}).get("colorbar", False))

    line_px = math.ceil(1.3 * TITLE_PX)
    left0 = _MARGIN_PX + (line_px + 4 if row_titles is not None else 0)
    boxes = []  # (name, values, x, top, w, h) of each panel
    row_tops, y, width = [], _MARGIN_PX, 0
    for panels in rows:
        lines = max((name.count("\n") + 1 for name in panels), default=1)
        title_px = lines * line_px + 4
        x = left0
        row_h = 0
        for name, values in panels.items():
            h, w = (int(n) * zoom for n in values.shape[-2:])
            boxes.append((name, values, x, y + title_px, w, h))
            x += w + _GAP_PX
            if has_colorbar(name):
                x += _COLORBAR_PAD_PX + _COLORBAR_PX + _COLORBAR_LABELS_PX
            row_h = max(row_h, h)
        row_tops.append((y + title_px, row_h))
        width = max(width, x - _GAP_PX + _MARGIN_PX)
        y += title_px + row_h + _GAP_PX // 2
    height = y - _GAP_PX // 2 + _MARGIN_PX
    fig = new_figure(figsize=(width / dpi, height / dpi), dpi=dpi)

    def rect(x: float, top: float, w: float, h: float) -> list[float]:
        return [x / width, 1.0 - (top + h) / height, w / width, h / height]

    for name, values, x, top, w, h in boxes:
        ax = fig.add_axes(rect(x, top, w, h))
        image, colorbar = draw(ax, name, values)
        # The frame is a 1-pixel line just outside the image (not the axes' spines, which cover
        # its edge pixels), so that the image can be re-filled in place (LivePanels).
        ax.set_frame_on(False)
        left, bottom, fw, fh = rect(x - 0.5, top - 0.5, w + 1, h + 1)
        fig.add_artist(Rectangle((left, bottom), fw, fh, transform=fig.transFigure, fill=False,
                                 linewidth=_points(1, dpi), edgecolor="black"))
        if colorbar:
            cax = fig.add_axes(rect(x + w + _COLORBAR_PAD_PX, top, _COLORBAR_PX, h))
            bar = fig.colorbar(image, cax=cax)
            bar.ax.tick_params(labelsize=_points(TICK_PX, dpi))
    if row_titles is not None:
        for (top, row_h), title in zip(row_tops, row_titles, strict=True):
            fig.text(_MARGIN_PX / width, 1.0 - (top + row_h / 2) / height, title,
                     rotation=90, va="center", ha="left", fontsize=title_pt)
    return fig, images


class LivePanels:
    """A 1:1 panel figure (``panels``: name -> ``(H, W)``, as for :func:`show_panels` with
    ``zoom=1``) that a widget re-fills on each update: drawn once by matplotlib at
    ``scale`` device pixels per CSS pixel, then only the image pixels change (colour-mapped and
    pasted into their axes), which is several times faster than drawing the figure again. A
    panel with a colour bar whose limits change makes it draw the whole figure again.
    ``png()`` is what :func:`figure_png` gives for the same figure."""

    def __init__(self, panels: Mapping[str, Tensor], styles=None, *, scale: int = 2) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.fig, self.images = _panel_figure(panels, row_titles=None, size=0.0, dpi=PANEL_DPI,
                                              styles=styles, zoom=1, pyplot=False)
        self.scale = scale
        self.fig.set_dpi(PANEL_DPI * scale)
        self.canvas = FigureCanvasAgg(self.fig)
        self._redraw()

    def _redraw(self) -> None:
        self.canvas.draw()
        self.pixels = np.asarray(self.canvas.buffer_rgba())[..., :3].copy()
        height = self.pixels.shape[0]
        self.boxes = []
        for _, image in self.images:
            x0, y0, x1, y1 = (int(round(v)) for v in image.axes.bbox.extents)
            self.boxes.append((height - y1, height - y0, x0, x1))

    def update(self, panels: Mapping[str, Tensor]) -> None:
        values = [_to_numpy(v) for v in panels.values()]
        if len(values) != len(self.images):
            raise ValueError(f"expected {len(self.images)} panels, got {len(values)}")
        redraw = False
        for (style, image), data in zip(self.images, values, strict=True):
            limits = image.get_clim()
            image.set_data(data)
            auto = np.asarray(data)
            image.set_clim(style.get("vmin", auto.min()), style.get("vmax", auto.max()))
            redraw |= bool(image.colorbar is not None and image.get_clim() != limits)
        if redraw:
            self._redraw()
            return
        for (_, image), (top, bottom, left, right), data in zip(
            self.images, self.boxes, values, strict=True
        ):
            rgb = image.to_rgba(data, bytes=True)[..., :3]
            block = np.repeat(np.repeat(rgb, self.scale, axis=0), self.scale, axis=1)
            if block.shape[:2] != (bottom - top, right - left):
                raise RuntimeError("a panel does not fill its axes 1:1 (zoom=1 layout broken)")
            self.pixels[top:bottom, left:right] = block

    def png(self) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.pixels).save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


def radial_filter_figure(
    image: Tensor, low: float, high: float, *, zoom: int = 1, dpi: int = PANEL_DPI
):
    """The panels of :func:`radial_filter` drawn 1:1 (``zoom=1``): what
    :func:`radial_filter_widget` shows for the band ``[low, high)``. Returns the figure."""
    return show_panels(radial_filter(image, low, high), zoom=zoom, dpi=dpi)


def band_filter_figure(
    image: Tensor,
    band_ids: Tensor,
    gains: Sequence[float] | Tensor,
    *,
    max_gain: float = 2.0,
    zoom: int = 1,
    dpi: int = PANEL_DPI,
):
    """The panels of :func:`band_filter` drawn 1:1, the weights on a fixed ``[0, max_gain]``
    colour scale with its colour bar: what :func:`band_gain_widget` shows for ``gains``."""
    return show_panels(band_filter(image, band_ids, gains), zoom=zoom, dpi=dpi,
                       styles=_band_styles(max_gain))


def _band_styles(max_gain: float) -> dict[str, dict[str, Any]]:
    return {"weights": {**PANEL_STYLES["weights"], "vmax": max_gain}}


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
        ax.set_title(name, fontsize=_points(TITLE_PX, dpi))
        ax.set_xticks(range(length))
        ax.set_yticks(range(length))
        ax.tick_params(labelsize=_points(TICK_PX, dpi))
    bar = fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    bar.set_label("log10 energy fraction", fontsize=_points(TICK_PX, dpi))
    bar.ax.tick_params(labelsize=_points(TICK_PX, dpi))
    return fig


def figure_png(fig, *, scale: int = 2) -> bytes:
    """``fig`` as a PNG of ``scale`` device pixels per CSS pixel (2: sharp on HiDPI screens,
    like the inline backend's ``"retina"`` format); show it at ``1 / scale`` of its size."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=scale * fig.dpi)
    return buffer.getvalue()


def compact_png(png: bytes) -> bytes:
    """``png`` re-encoded losslessly by Pillow in fewer bytes: an opaque alpha channel dropped, a
    gray image stored as 8-bit gray, an image of at most 256 colours as an exact palette,
    whichever is smallest. It decodes to the same RGB(A) pixels; the input is returned if
    nothing is smaller (matplotlib writes RGBA at zlib's default level)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    pixels = np.asarray(image.convert("RGBA"))
    if not (pixels[..., 3] == 255).all():
        return png  # transparency is part of the picture: keep it as it is
    rgb = np.ascontiguousarray(pixels[..., :3])
    gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    opaque = np.ascontiguousarray(rgb[..., 0]) if gray else rgb  # (H, W) "L" or (H, W, 3)
    candidates = [Image.fromarray(opaque)]
    if not gray:
        red, green, blue = (rgb[..., i].astype(np.int32) for i in range(3))
        keys = (red << 16) | (green << 8) | blue  # one int per colour
        colours, index = np.unique(keys.ravel(), return_inverse=True)
        if len(colours) <= 256:  # an exact palette: every colour kept
            paletted = Image.fromarray(index.reshape(keys.shape).astype(np.uint8))  # "L" ...
            palette = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1)
            paletted.putpalette(palette.astype(np.uint8).ravel().tolist())  # ... becomes "P"
            candidates.append(paletted)
    encoded = [png]
    for candidate in candidates:
        buffer = io.BytesIO()
        candidate.save(buffer, format="png", optimize=True)
        encoded.append(buffer.getvalue())
    return min(encoded, key=len)


def use_compact_retina_png() -> None:
    """Shows matplotlib figures in this IPython session as ``"retina"`` PNGs, as
    ``set_matplotlib_formats("retina")`` does (2 x 2 device pixels per CSS pixel: sharp on HiDPI
    screens), re-encoded by :func:`compact_png`: the same pixels, fewer bytes stored in the
    notebook. Call it after ``%matplotlib inline``; outside IPython it does nothing."""
    from IPython import get_ipython
    from IPython.core.pylabtools import retina_figure
    from matplotlib.figure import Figure

    shell = get_ipython()
    if shell is None:
        return

    def formatter(fig: Figure) -> tuple[bytes, dict[str, int]] | None:
        shown = retina_figure(fig, base64=False, bbox_inches="tight")  # the inline default
        if shown is None:  # an empty figure shows nothing
            return None
        png, metadata = shown
        return compact_png(png), metadata

    shell.display_formatter.formatters["image/png"].for_type(Figure, formatter)


def _panels_widget(controls: Mapping[str, Any], panels_of, styles=None):
    """Sliders (``controls``: keyword -> widget) above the panels ``panels_of(**values)``,
    shown as an ``ipywidgets.Image``: a HiDPI PNG at its size in CSS pixels, the figure of
    :func:`show_panels` with ``zoom=1`` drawn once and then re-filled (:class:`LivePanels`).

    An Image widget, not an Output widget: each update sends the PNG once, as a binary buffer
    (an Output widget's state is echoed back and forth), and nbconvert does not stall on it (its
    mimicked Output widget sends that state on the shell channel while waiting on it for the
    execute reply; nbclient issue 312). Returns a ``VBox`` with ``.controls``, ``.image`` and
    ``.update()`` (called on every change of a control)."""
    import ipywidgets as widgets

    live = None
    image = widgets.Image(format="png")

    def update(change=None) -> None:
        nonlocal live
        panels = panels_of(**{name: control.value for name, control in controls.items()})
        if live is None:
            live = LivePanels(panels, styles)
            height, width = live.pixels.shape[:2]
            image.width, image.height = str(width // live.scale), str(height // live.scale)
        else:
            live.update(panels)
        image.value = live.png()

    for control in controls.values():
        control.observe(update, names="value")
    update()
    box = widgets.VBox([*controls.values(), image])
    box.add_class("dsm-panels-widget")
    box.controls, box.image, box.update = dict(controls), image, update
    return box


def _slider_layout(width: str):
    """A slider as wide as ``width`` (at most), its description in full."""
    import ipywidgets as widgets

    return {
        "layout": widgets.Layout(width="100%", max_width=width),
        "style": {"description_width": "initial"},
    }


def radial_filter_widget(image: Tensor, low: float = 0.0, high: float = 0.2, step: float = 0.01):
    """Range slider over the radial frequency -> :func:`radial_filter_figure` of ``image``
    (drawn once, then re-filled on each update: several times faster than a new figure).

    ``image: (H, W)``. Returns an ``ipywidgets.VBox`` (see :func:`_panels_widget`); display it
    (the last expression of a cell). Keep ``H, W`` near 128-192 so that one update stays well
    under a second on a CPU. The slider is wide (up to 720 px) so that its two handles are apart
    even at ``high = 0.1``.
    """
    import ipywidgets as widgets

    slider = widgets.FloatRangeSlider(
        value=(low, high),
        min=0.0,
        max=1.0,
        step=step,
        description="radius",
        continuous_update=False,
        readout_format=".2f",
        **_slider_layout("720px"),
    )
    return _panels_widget({"band": slider}, lambda band: radial_filter(image, *band))


def band_gain_widget(
    image: Tensor,
    band_ids: Tensor,
    gains: Sequence[float] | None = None,
    *,
    max_gain: float = 2.0,
    labels: Sequence[str] | None = None,
):
    """One gain slider per band -> :func:`band_filter_figure` of ``image``.

    ``image: (H, W)``, ``band_ids: (H, W)`` long with ``n_bands`` ids. ``gains`` start values
    (default all 1: the identity), ``labels`` the slider descriptions (default ``band i``).
    Returns an ``ipywidgets.VBox`` (see :func:`_panels_widget`), controls ``g0``, ``g1``, ...
    """
    import ipywidgets as widgets

    n_bands = int(band_ids.max()) + 1
    gains = [1.0] * n_bands if gains is None else list(gains)
    labels = [f"band {i}" for i in range(n_bands)] if labels is None else list(labels)
    if len(gains) != n_bands or len(labels) != n_bands:
        raise ValueError(f"expected {n_bands} gains and labels, got {len(gains)} and {len(labels)}")
    sliders = {
        f"g{i}": widgets.FloatSlider(
            value=g,
            min=0.0,
            max=max_gain,
            step=0.05,
            description=label,
            continuous_update=False,
            **_slider_layout("480px"),
        )
        for i, (g, label) in enumerate(zip(gains, labels, strict=True))
    }

    def panels_of(**values: float) -> dict[str, Tensor]:
        return band_filter(image, band_ids, [values[f"g{i}"] for i in range(n_bands)])

    return _panels_widget(sliders, panels_of, _band_styles(max_gain))


WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def strip_widget_outputs(paths: Sequence[str]) -> list[str]:
    """Removes stored widget state from notebooks: ``metadata.widgets`` and every output that
    shows a widget (a widget view needs a live kernel; without its model JupyterLab shows "Error
    displaying widget: model not found"). Rewrites a notebook only if it changes, as JupyterLab
    saves it (:func:`nbformat.write`); returns the paths rewritten."""
    import nbformat

    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        before = nbformat.writes(nb)
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [
                    o for o in cell.outputs if WIDGET_VIEW_MIME not in o.get("data", {})
                ]
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(str(path))
    return changed



def show_study(records: Sequence[Mapping[str, Any]], *, size: float = 3.2, dpi: int = 80):
    """One ablation study on one or more datasets: its metric per arm (dots: seeds, bar: mean +-
    std) above, paired difference to the reference arm (same seed, bar: 95 % t-interval)
    below; returns the figure.

    ``records``: study records of :func:`dsm_ref.ablation.run_study`, one per dataset; the
    metric is the record's ``metric`` (test top-1 for classification, mIoU or mAP for dense
    studies).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(records), figsize=(size * 1.4 * len(records), size * 1.6),
                             dpi=dpi, squeeze=False, layout="constrained")
    for column, record in enumerate(records):
        names = [arm["name"] for arm in record["arms"]]
        positions = np.arange(len(names))
        top, bottom = axes[0, column], axes[1, column]
        metric = record.get("metric", "test_top1")
        for x, arm in zip(positions, record["arms"], strict=True):
            seeds = [run[metric] for run in arm["runs"]]
            summary = arm[metric]
            top.errorbar(x, summary["mean"], yerr=summary["std"], fmt="s", color="C0",
                         capsize=4, markersize=7)
            top.scatter([x] * len(seeds), seeds, color="C1", s=14, zorder=3)
        top.set_title(f"{record['study']} on {record['dataset']}", fontsize=10)
        top.set_ylabel(f"test {METRIC_LABELS.get(metric, metric)}")
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


def show_predictions(images: Tensor, labels: Tensor, logits: Tensor,
                     class_names: Sequence[str], *, columns: int = 8, dpi: int = 80):
    """A grid of classified images: each titled with the predicted class and its softmax
    probability, green when right, red (with the true class below) when wrong; returns the
    figure.

    ``images``: ``(N, 3, H, W)`` in ``[0, 1]`` (not normalised); ``labels``: ``(N,)`` ints;
    ``logits``: ``(N, K)`` with ``K = len(class_names)``.
    """
    import matplotlib.pyplot as plt

    n = images.shape[0]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
    if labels.shape != (n,) or logits.shape != (n, len(class_names)):
        raise ValueError(f"expected labels ({n},) and logits ({n}, {len(class_names)}) for "
                         f"{n} images and {len(class_names)} classes, got "
                         f"{tuple(labels.shape)} and {tuple(logits.shape)}")
    probs = torch.softmax(logits.float(), dim=1)
    confidence, predicted = probs.max(dim=1)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.25 * columns, 1.45 * rows), dpi=dpi,
                             layout="constrained", squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= n:
            continue
        ax.imshow(_to_numpy(images[index].clamp(0, 1).permute(1, 2, 0)),
                  interpolation="nearest")
        right = int(predicted[index]) == int(labels[index])
        title = f"{class_names[int(predicted[index])]} {100 * float(confidence[index]):.0f}%"
        if not right:
            title += f"\n(true: {class_names[int(labels[index])]})"
        ax.set_title(title, fontsize=8, color="tab:green" if right else "tab:red")
    return fig

