"""dsm_ref.spectrum: grids, masks, bands, filtering, compaction."""

import pytest
import torch

from dsm_ref import spectrum as S
from dsm_ref.dct import dct2


def test_radial_frequency_range_and_corners():
    r = S.radial_frequency(8, 16)
    assert r.shape == (8, 16)
    assert r[0, 0] == 0
    assert 0 <= r.min() and r.max() < 1
    assert r[7, 15] == r.max()


def test_masks_partition_the_spectrum():
    low = S.lowpass_mask(20, 30, 0.3)
    high = S.highpass_mask(20, 30, 0.3)
    torch.testing.assert_close(low + high, torch.ones(20, 30))
    band = S.radial_mask(20, 30, 0.1, 0.3)
    assert band.sum() < low.sum()
    assert low[0, 0] == 1 and high[0, 0] == 0
    with pytest.raises(ValueError, match="low <= high"):
        S.radial_mask(4, 4, 0.5, 0.2)


def test_zigzag_matches_jpeg_scan_on_4x4():
    expected = torch.tensor(
        [[0, 1, 5, 6], [2, 4, 7, 12], [3, 8, 11, 13], [9, 10, 14, 15]]
    )
    assert torch.equal(S.zigzag_order(4, 4), expected)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 7), (8, 8), (9, 4)])
def test_zigzag_is_a_permutation(h, w):
    order = S.zigzag_order(h, w)
    assert torch.equal(order.flatten().sort().values, torch.arange(h * w))


def test_zigzag_bands_equal_sizes():
    bands = S.zigzag_bands(8, 8, 4)
    assert torch.equal(torch.bincount(bands.flatten()), torch.full((4,), 16))
    with pytest.raises(ValueError, match="n_bands"):
        S.zigzag_bands(2, 2, 5)


@pytest.mark.parametrize("n,length", [(14, 4), (7, 7), (56, 8), (3, 4), (1, 1)])
def test_block_band_index_is_nearest_upsampling(n, length):
    idx = S.block_band_index(n, length)
    ref = torch.nn.functional.interpolate(
        torch.arange(length, dtype=torch.float32)[None, None], size=n, mode="nearest"
    ).long()[0, 0]
    assert torch.equal(idx, ref)
    assert idx.is_contiguous() and (idx.diff() >= 0).all()


def test_block_bands_grid():
    bands = S.block_bands(6, 4, 2)
    assert bands.shape == (6, 4)
    assert torch.equal(bands.unique(), torch.arange(4))
    assert bands[0, 0] == 0 and bands[5, 3] == 3 and bands[0, 3] == 1


def test_band_gains_to_weights_batched():
    bands = S.block_bands(5, 5, 2)
    gains = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 1.0]])
    weights = S.band_gains_to_weights(gains, bands)
    assert weights.shape == (2, 5, 5)
    assert weights[0, 0, 0] == 1 and weights[0, 4, 4] == 4 and weights[1, 4, 4] == 1
    with pytest.raises(ValueError, match="bands"):
        S.band_gains_to_weights(torch.ones(3), bands)


def test_filter_with_ones_is_identity_and_lowpass_removes_energy():
    image = torch.rand(2, 16, 24, dtype=torch.float64)
    torch.testing.assert_close(S.filter_spectrum(image, torch.ones(16, 24)), image)
    low = S.filter_spectrum(image, S.lowpass_mask(16, 24, 0.2).double())
    assert dct2(low)[..., S.highpass_mask(16, 24, 0.2) > 0].abs().max() < 1e-12
    with pytest.raises(ValueError, match="broadcast"):
        S.filter_spectrum(image, torch.ones(5, 5))


def test_filter_is_convolution_without_wraparound():
    """A smooth low-pass of a ramp keeps both ends apart; circular filtering would mix them."""
    ramp = torch.linspace(0, 1, 32, dtype=torch.float64).repeat(32, 1)
    smooth = S.filter_spectrum(ramp, S.lowpass_mask(32, 32, 0.15).double())
    assert smooth[:, 0].mean() < 0.1 and smooth[:, -1].mean() > 0.9


def test_energy_compaction_curves():
    image = torch.rand(12, 12).cumsum(0).cumsum(1)  # smooth, energy at low frequencies
    for order in ("zigzag", "largest"):
        curve = S.energy_compaction(image, order)
        assert curve.shape == (144,)
        assert (curve.diff() >= -1e-12).all() and abs(curve[-1].item() - 1) < 1e-12
    assert (S.energy_compaction(image, "largest") >= S.energy_compaction(image) - 1e-12).all()
    assert S.energy_compaction(image, "zigzag")[9] > 0.9
    with pytest.raises(ValueError, match="zigzag"):
        S.energy_compaction(image, "random")


def test_log_spectrum_shape_and_sign():
    image = torch.rand(3, 9, 11)
    spec = S.log_spectrum(image)
    assert spec.shape == image.shape and (spec >= 0).all()
