"""dsm_ref.viz: the pure helpers behind the notebooks' figures and widgets."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from dsm_ref import spectrum as S
from dsm_ref import viz


@pytest.fixture
def image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(12, 16, generator=generator, dtype=torch.float64)


def test_fft_radial_frequency_units_match_the_dct():
    fft_radius = viz.fft_radial_frequency(8, 12)
    assert fft_radius.shape == (8, 12)
    assert fft_radius[0, 0] == 0
    assert 0 <= fft_radius.min() and fft_radius.max() <= 1
    # FFT bin k has the frequency of DCT coefficient 2k; bins k and -k the same.
    dct_radius = S.radial_frequency(8, 12)
    torch.testing.assert_close(fft_radius[:4, :6], dct_radius[::2, ::2])
    torch.testing.assert_close(fft_radius[1:, 1:], fft_radius[1:, 1:].flip(0, 1))


def test_fft_filter_identity_and_wrap_around():
    x = torch.rand(10, 10, dtype=torch.float64)
    torch.testing.assert_close(viz.fft_filter(x, torch.ones(10, 10)), x)
    # A low-pass of a delta at the left border: the FFT leaks onto the right border,
    # the DCT (symmetric extension) does not.
    delta = torch.zeros(32, 32, dtype=torch.float64)
    delta[16, 0] = 1.0
    fft_response = viz.fft_filter(delta, (viz.fft_radial_frequency(32, 32) < 0.25).double())
    dct_response = S.filter_spectrum(delta, S.lowpass_mask(32, 32, 0.25).double())
    assert fft_response[16, -1].abs() > 0.5 * fft_response[16, 1].abs()
    assert dct_response[16, -1].abs() < 0.1 * dct_response[16, 1].abs()


def test_radial_filter_panels_partition_the_image(image):
    low = viz.radial_filter(image, 0.0, 0.2)
    assert set(low) == {"image", "log spectrum", "mask", "filtered"}
    assert all(v.shape == image.shape for v in low.values())
    high = viz.radial_filter(image, 0.2, 2.0)
    torch.testing.assert_close(low["filtered"] + high["filtered"], image)
    torch.testing.assert_close(viz.radial_filter(image, 0.0, 1.0)["filtered"], image)


def test_band_filter_identity_and_gains(image):
    bands = S.block_bands(12, 16, 2)
    panels = viz.band_filter(image, bands, [1.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(panels["filtered"], image)
    assert set(panels) == {"image", "log spectrum", "weights", "filtered"}
    only_dc_band = viz.band_filter(image, bands, [1.0, 0.0, 0.0, 0.0])
    expected = S.filter_spectrum(image, (bands == 0).double())
    torch.testing.assert_close(only_dc_band["filtered"], expected)


def test_band_energy_fractions(image):
    bands = S.block_bands(12, 16, 3)
    fractions = viz.band_energy(image, bands)
    assert fractions.shape == (9,)
    torch.testing.assert_close(fractions.sum(), torch.tensor(1.0, dtype=torch.float64))
    energy = S.dct2(image).pow(2)
    torch.testing.assert_close(fractions[4], energy[bands == 4].sum() / energy.sum())
    constant = torch.full((12, 16), 0.5)
    assert viz.band_energy(constant, bands)[0] == pytest.approx(1.0)
    assert viz.band_energy(image, bands, exclude_dc=True)[0] < fractions[0]
    with pytest.raises(ValueError, match="no energy"):
        viz.band_energy(constant, bands, exclude_dc=True)
    with pytest.raises(ValueError, match="band_ids"):
        viz.band_energy(image, S.block_bands(4, 4, 2))


def test_figures_have_one_axis_per_panel(image):
    fig = viz.show_panels(
        [viz.radial_filter(image, 0, 0.3), {"image": image}], row_titles=["a", "b"]
    )
    assert len(fig.axes) == 8
    plt.close(fig)
    bands = S.block_bands(12, 16, 2)
    profiles = {
        "a": viz.band_energy(image, bands),
        "b": viz.band_energy(image.T.contiguous(), S.block_bands(16, 12, 2)),
    }
    fig = viz.show_band_energy(profiles, 2)
    assert len(fig.axes) == 3  # two heatmaps and a colorbar
    plt.close(fig)


def test_widgets_have_one_control_per_band_and_update(image):
    pytest.importorskip("ipywidgets")
    n_figures = len(plt.get_fignums())
    radial = viz.radial_filter_widget(image)
    assert radial.controls["band"].value == pytest.approx((0.0, 0.2))
    first = radial.image.value
    expected = viz.figure_png(viz.radial_filter_figure(image, 0.0, 0.2))
    assert (_png_pixels(first) == _png_pixels(expected)).all()  # the static figure, 1:1, 2x
    plt.close("all")
    n_figures = len(plt.get_fignums())
    radial.controls["band"].value = (0.1, 0.5)  # a slider move updates the image
    assert radial.image.value != first
    assert radial.children[-1] is radial.image
    assert int(radial.image.width) * 2 == _png_pixels(first).shape[1]
    bands = S.zigzag_bands(12, 16, 5)
    gains = viz.band_gain_widget(image, bands)
    assert list(gains.controls) == ["g0", "g1", "g2", "g3", "g4"]
    before = gains.image.value
    gains.children[2].value = 0.0
    assert gains.controls["g2"].value == 0.0 and gains.image.value != before
    assert len(plt.get_fignums()) == n_figures  # widgets keep no pyplot figure open
    with pytest.raises(ValueError, match="expected 5 gains"):
        viz.band_gain_widget(image, bands, gains=[1.0, 1.0])


def test_show_study_draws_every_arm_and_paired_difference():
    import matplotlib

    matplotlib.use("Agg")
    from dsm_ref.viz import show_study

    record = {
        "study": "dynamic_vs_static", "dataset": "spectral", "reference": "static",
        "arms": [
            {"name": "dynamic", "runs": [{"test_top1": 50.0}, {"test_top1": 52.0}],
             "test_top1": {"mean": 51.0, "std": 1.4, "n": 2}},
            {"name": "static", "runs": [{"test_top1": 48.0}, {"test_top1": 49.0}],
             "test_top1": {"mean": 48.5, "std": 0.7, "n": 2}},
        ],
        "paired_differences": [{"arm": "dynamic", "minus": "static", "diffs": [2.0, 3.0],
                                "mean": 2.5, "std": 0.7, "n": 2}],
    }
    fig = show_study([record])
    top, bottom = fig.axes
    assert [t.get_text() for t in top.get_xticklabels()] == ["dynamic", "static"]
    assert len(top.collections) == 2 + 2  # seed dots and error bars per arm
    assert bottom.get_ylabel() == "minus static (points)"


def test_budget_curve_and_band_selection_figures():
    curve = {"dataset": "cifar10", "arms": ["DCT dynamic", "DCT static", "no mixing"],
             "budgets": [[2000, 6], [10000, 6]], "seeds": 1,
             "rows": [{"arm": arm, "n_train": n, "epochs": e, "seed": 0, "test_top1": 30.0 + i}
                      for i, arm in enumerate(["DCT dynamic", "DCT static", "no mixing"])
                      for n, e in [(2000, 6), (10000, 6)]]}
    fig = viz.show_budget_curve(curve)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["2k x 6", "10k x 6"]
    plt.close(fig)
    weights = {"stages.0.blocks.0.mixer.dswg": torch.rand(9, 2, 4, 4),
               "stages.1.blocks.0.mixer.dswg": torch.rand(9, 2, 4, 4)}
    fig = viz.show_band_selection(weights, torch.arange(9) % 3, ["low", "middle", "high"])
    assert len([ax for ax in fig.axes if ax.images]) == 2 * 4
    plt.close(fig)


def test_predictions_grid_marks_right_and_wrong_and_checks_shapes():
    images = torch.rand(5, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1])
    logits = torch.zeros(5, 3)
    logits[torch.arange(5), torch.tensor([0, 1, 0, 0, 2])] = 4.0  # images 2 and 4 wrong
    fig = viz.show_predictions(images, labels, logits, ["cat", "dog", "ship"], columns=3)
    titles = [ax.title for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(titles) == 5
    assert titles[0].get_text() == "cat 96%" and titles[0].get_color() == "tab:green"
    assert titles[2].get_text() == "cat 96%\n(true: ship)" and titles[2].get_color() == "tab:red"
    assert titles[4].get_text().endswith("(true: dog)")
    plt.close(fig)
    with pytest.raises(ValueError, match=r"logits \(5, 3\)"):
        viz.show_predictions(images, labels, logits[:, :2], ["cat", "dog", "ship"])
    with pytest.raises(ValueError, match="images must be"):
        viz.show_predictions(images[:, :1], labels, logits, ["cat", "dog", "ship"])


def _png_pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_zoomed_panels_are_one_to_one_with_readable_titles_and_a_weights_colour_bar(image):
    bands = S.block_bands(12, 16, 2)
    fig = viz.band_filter_figure(image, bands, [1.0, 0.5, 2.0, 0.0])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["image", "log spectrum", "weights", "filtered"]
    for ax in panels:  # one CSS pixel (1/dpi inch) per image pixel
        box = ax.get_window_extent()
        assert (round(box.width), round(box.height)) == (16, 12)
        assert ax.title.get_fontsize() * fig.dpi / 72 >= 12  # title >= 12 px
    colour_bars = [ax for ax in fig.axes if not ax.get_title()]
    assert len(colour_bars) == 1 and colour_bars[0].get_ylim() == (0.0, 2.0)
    png = _png_pixels(viz.figure_png(fig))  # 2 device pixels per CSS pixel
    assert png.shape[:2] == (round(2 * fig.bbox.height), round(2 * fig.bbox.width))
    plt.close(fig)
    fig = viz.radial_filter_figure(image, 0.0, 0.3, zoom=2)
    assert len(fig.axes) == 4  # no colour bar on a mask
    assert all(round(ax.get_window_extent().width) == 32 for ax in fig.axes)
    plt.close(fig)


def test_live_panels_refill_the_figure_exactly(image):
    bands = S.zigzag_bands(12, 16, 3)
    live = viz.LivePanels(viz.band_filter(image, bands, [1.0, 1.0, 1.0]), viz._band_styles(2.0))
    n_figures = len(plt.get_fignums())
    for gains in ([0.5, 2.0, 0.0], [1.0, 0.0, 0.3]):
        live.update(viz.band_filter(image, bands, gains))
        static = viz.band_filter_figure(image, bands, gains)
        assert (_png_pixels(live.png()) == _png_pixels(viz.figure_png(static))).all()
        plt.close(static)
    # a colour bar whose limits change: the whole figure is drawn again
    live = viz.LivePanels(viz.band_filter(image, bands, [1.0, 1.0, 1.0]))
    live.update(viz.band_filter(image, bands, [3.0, 1.0, 1.0]))
    static = viz.show_panels(viz.band_filter(image, bands, [3.0, 1.0, 1.0]), zoom=1,
                             dpi=viz.PANEL_DPI)
    assert (_png_pixels(live.png()) == _png_pixels(viz.figure_png(static))).all()
    plt.close(static)
    assert len(plt.get_fignums()) == n_figures  # live figures are not pyplot's
    with pytest.raises(ValueError, match="expected 4 panels"):
        live.update({"image": image})


def test_sliders_are_wide_and_fully_labelled(image):
    pytest.importorskip("ipywidgets")
    radial = viz.radial_filter_widget(image, 0.0, 0.15)
    slider = radial.controls["band"]
    assert slider.layout.max_width == "720px" and slider.style.description_width == "initial"
    gains = viz.band_gain_widget(image, S.block_bands(12, 16, 2), labels=list("abcd"))
    assert all(c.style.description_width == "initial" for c in gains.children[:4])


def test_strip_widget_outputs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    view = {viz.WIDGET_VIEW_MIME: {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "text/plain": "IntSlider(value=0)"}
    nb.cells = [
        nbformat.v4.new_code_cell("w", outputs=[nbformat.v4.new_output(
            "execute_result", data=view, execution_count=1)]),
        nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text="1\n")]),
    ]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)
    assert viz.strip_widget_outputs([path]) == [str(path)]
    stripped = nbformat.read(path, as_version=4)
    assert "widgets" not in stripped.metadata
    assert stripped.cells[0].outputs == [] and stripped.cells[1].outputs[0].text == "1\n"
    before = path.read_bytes()
    assert viz.strip_widget_outputs([path]) == []  # nothing left: not rewritten
    assert path.read_bytes() == before


@pytest.mark.parametrize("kind", ["colour", "gray", "few colours", "transparent"])
def test_compact_png_keeps_every_pixel_in_no_more_bytes(image, kind):
    import io

    import numpy as np
    from PIL import Image

    if kind == "colour":
        fig = viz.radial_filter_figure(image, 0.0, 0.2)
    else:
        fig, ax = plt.subplots(figsize=(2, 2), dpi=60)
        if kind == "gray":
            ax.imshow(image, cmap="gray")
        else:
            ax.bar([0, 1, 2], [1, 3, 2], color=["C0", "C1", "C2"])
        if kind == "transparent":
            fig.patch.set_alpha(0.0)
    png = viz.figure_png(fig)
    plt.close(fig)
    compact = viz.compact_png(png)
    assert len(compact) <= len(png)

    def pixels(data):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))

    assert np.array_equal(pixels(compact), pixels(png))
    if kind == "transparent":
        assert compact == png  # transparency is kept as it was
    elif kind == "gray":
        assert Image.open(io.BytesIO(compact)).mode in ("L", "P")
