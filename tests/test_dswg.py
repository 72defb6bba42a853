"""dsm_ref.dswg.DynamicSpectrumWeights: shapes, gates, pooling, expansion, content dependence."""

import pytest
import torch
from torch import nn

from dsm_ref.dswg import GATES, DynamicSpectrumWeights, band_index, can_overwrite
from dsm_ref.spectrum import band_gains_to_weights, block_bands


def _randomize(dswg: DynamicSpectrumWeights, seed: int = 0) -> DynamicSpectrumWeights:
    torch.manual_seed(seed)
    torch.nn.init.normal_(dswg.fc2.weight, std=0.5)
    return dswg


@pytest.mark.parametrize("h,w", [(14, 14), (7, 9), (3, 2), (1, 1), (33, 8)])
@pytest.mark.parametrize("length", [1, 4, 8])
def test_shapes_any_size(h, w, length):
    dswg = _randomize(DynamicSpectrumWeights(16, length, num_groups=4))
    spectrum = torch.randn(2, h, w, 16)
    out = dswg.weights(spectrum)
    assert out.shape == (2, h, w, 16) and torch.isfinite(out).all()
    assert dswg.band_weights(spectrum).shape == (2, 4, length, length)


@pytest.mark.parametrize("gate,start", [("softmax", 1.0), ("2sigmoid", 1.0), ("sigmoid", 0.5)])
def test_zero_initialised_last_layer_gives_the_gate_mean(gate, start):
    dswg = DynamicSpectrumWeights(8, 4, num_groups=2, gate=gate)
    out = dswg.weights(torch.randn(3, 10, 12, 8))
    torch.testing.assert_close(out, torch.full_like(out, start))


def test_softmax_gate_spreads_mean_one_over_occupied_bands_only():
    dswg = _randomize(DynamicSpectrumWeights(8, 4, num_groups=2, gate="softmax"))
    weights = dswg.band_weights(torch.randn(3, 2, 16, 8))  # 2 rows: band rows 1 and 3 empty
    assert torch.all(weights[:, :, [1, 3]] == 0)
    torch.testing.assert_close(weights[:, :, [0, 2]].mean(dim=(2, 3)), torch.ones(3, 2))
    fresh = DynamicSpectrumWeights(8, 4, num_groups=2)
    torch.testing.assert_close(fresh.weights(torch.randn(1, 2, 3, 8)), torch.ones(1, 2, 3, 8))


def test_softmax_gate_has_mean_one_per_group_after_training_starts():
    dswg = _randomize(DynamicSpectrumWeights(8, 4, num_groups=2, gate="softmax"))
    weights = dswg.band_weights(torch.randn(5, 16, 16, 8))
    torch.testing.assert_close(weights.mean(dim=(2, 3)), torch.ones(5, 2))
    assert weights.std() > 0.01


def test_mean_pooling_matches_loops():
    dswg = DynamicSpectrumWeights(6, 3, num_groups=2)  # the default descriptor: log of group RMS
    spectrum = torch.randn(2, 7, 5, 6)
    got = dswg.band_descriptors(spectrum)
    feats = torch.log1p(spectrum.square().reshape(2, 7, 5, 2, 3).mean(-1).sqrt())
    bands = block_bands(7, 5, 3)
    for b in range(2):
        for g in range(2):
            for band in range(9):
                expected = feats[b, :, :, g][bands == band].mean()
                torch.testing.assert_close(got[b, g].flatten()[band], expected)


def test_max_pooling_matches_loops_and_zeroes_empty_bands():
    dswg = DynamicSpectrumWeights(4, 4, num_groups=1, pool="max", descriptor="normalized")
    spectrum = torch.randn(2, 3, 6, 4)  # 3 rows < 4 bands: one band row is empty
    got = dswg.band_descriptors(spectrum)
    mag = spectrum.abs()
    feats = (mag / mag.mean(dim=(1, 2), keepdim=True)).mean(-1)
    bands = block_bands(3, 6, 4)
    for b in range(2):
        for band in range(16):
            members = feats[b][bands == band]
            expected = members.max() if members.numel() else torch.tensor(0.0)
            torch.testing.assert_close(got[b, 0].flatten()[band], expected)


def test_expansion_is_nearest_per_band_and_per_group():
    dswg = DynamicSpectrumWeights(6, 2, num_groups=3)
    band_weights = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 2, 2)
    out = dswg.expand(band_weights, 5, 7)
    bands = block_bands(5, 7, 2)
    for g in range(3):
        expected = band_gains_to_weights(band_weights[:, g].reshape(2, 4), bands)
        for c in (2 * g, 2 * g + 1):  # channels of group g
            torch.testing.assert_close(out[..., c], expected)


def test_weights_depend_on_content():
    dswg = _randomize(DynamicSpectrumWeights(8, 4, num_groups=2))
    smooth = torch.zeros(1, 16, 16, 8)
    smooth[:, :2, :2] = 5.0  # energy in the lowest band only
    textured = torch.zeros(1, 16, 16, 8)
    textured[:, 8:, 8:] = 5.0  # energy at high frequencies
    difference = (dswg.band_weights(smooth) - dswg.band_weights(textured)).abs().max()
    assert difference > 0.05


def test_rfft_layout_folds_rows():
    idx = band_index(8, 2, folded=True, device=torch.device("cpu"))
    # rows 0..7 carry |frequency| 0,1,2,3,4,3,2,1 of 5 distinct values -> bands 0,0,0,1,1,1,0,0
    assert idx.tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    dswg = DynamicSpectrumWeights(4, 2, num_groups=1, layout="rfft")
    out = _randomize(dswg).weights(torch.randn(2, 8, 5, 4, dtype=torch.complex64))
    assert out.shape == (2, 8, 5, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 1], out[:, 7])  # frequency +1 and -1 share a weight


def test_gradients_reach_every_parameter_once_the_last_layer_moves():
    dswg = DynamicSpectrumWeights(8, 4, num_groups=2)
    dswg.weights(torch.randn(2, 8, 8, 8)).pow(2).sum().backward()
    assert dswg.fc2.weight.grad is not None and dswg.fc1.weight.grad is not None
    dswg.zero_grad()
    _randomize(dswg)
    spectrum = torch.randn(2, 8, 8, 8)
    (dswg.weights(spectrum) * torch.randn(2, 8, 8, 8)).sum().backward()
    for name, param in dswg.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gate": "tanh"}, "unknown gate "),
        ({"pool": "median"}, "unknown pool "),
        ({"descriptor": "raw"}, "unknown descriptor "),
        ({"layout": "dft"}, "unknown layout "),
        ({"num_groups": 3}, "must divide dim=8"),
        ({"spectrum_length": 0}, "spectrum_length must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicSpectrumWeights(8, **kwargs)


def test_all_gates_listed():
    assert set(GATES) == {"softmax", "2sigmoid", "sigmoid"}


@pytest.mark.parametrize("layout", ["dct", "rfft"])
def test_weighting_values_equals_multiplying_by_the_full_weights(layout):
    """``dswg(S, values)`` (broadcast over each group's channels) equals ``values * A(S)`` for
    real and complex values; ``A(S)`` is real, in the spectrum's real dtype."""
    torch.manual_seed(0)
    dswg = DynamicSpectrumWeights(8, 3, num_groups=2, layout=layout)
    nn.init.normal_(dswg.fc2.weight)
    spectrum = torch.randn(2, 5, 6, 8)
    values = torch.randn(2, 5, 6, 8, dtype=torch.complex64 if layout == "rfft" else torch.float32)
    weights = dswg.weights(spectrum)
    assert weights.dtype == torch.float32 and weights.shape == spectrum.shape
    torch.testing.assert_close(dswg(spectrum, values), values * weights)
    with pytest.raises(ValueError, match="spectrum's shape"):
        dswg(spectrum, values[:, :4])


def test_band_layout_is_built_once_per_size_and_usable_after_inference_mode():
    dswg = DynamicSpectrumWeights(4, 2, num_groups=1)
    with torch.inference_mode():
        first = dswg.band_layout(5, 7, torch.device("cpu"))
    assert dswg.band_layout(5, 7, torch.device("cpu")) is first
    assert first.counts.sum() == 35 and first.band_of.shape == (35,)
    spectrum = torch.randn(1, 5, 7, 4, requires_grad=True)
    dswg(spectrum, spectrum).sum().backward()  # the cached constants are not inference tensors
    assert spectrum.grad is not None


def test_log_of_mean_descriptor():
    spectrum = torch.randn(2, 6, 5, 8, dtype=torch.float64)
    fast = DynamicSpectrumWeights(8, 3, num_groups=2, descriptor="log_of_mean").double()
    mean_per_group = spectrum.abs().reshape(2, 6, 5, 2, 4).mean(-1)  # (B, H, W, G)
    # A 2-channel, 2-group DSWG takes log(1 + x) of each of its channels: here, the group means.
    expected = DynamicSpectrumWeights(2, 3, num_groups=2).double().band_descriptors(
        mean_per_group)
    torch.testing.assert_close(fast.band_descriptors(spectrum), expected)
    # With one channel per group both descriptors are the same thing.
    one_per_group = {d: DynamicSpectrumWeights(8, 3, num_groups=8, descriptor=d).double()
                     for d in ("log", "log_of_mean")}
    torch.testing.assert_close(one_per_group["log"].band_descriptors(spectrum),
                               one_per_group["log_of_mean"].band_descriptors(spectrum))


def test_log_descriptor_backward_matches_autograd_of_its_formula():
    # The "log" descriptor has its own backward (dswg._GroupLogMagnitude); it must equal autograd
    # of log1p(|S|) averaged over each group's channels, with gradient 0 where S is exactly 0.
    spectrum = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    spectrum[0, 0, 0, :3] = 0.0
    dswg = DynamicSpectrumWeights(8, 3, num_groups=2, descriptor="log").double()
    upstream = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    mine = spectrum.clone().requires_grad_(True)
    (dswg.band_descriptors(mine) * upstream).sum().backward()
    reference = spectrum.clone().requires_grad_(True)
    features = torch.log1p(reference.abs()).reshape(2, 5, 6, 2, 4).mean(-1)
    layout = dswg.band_layout(5, 6, torch.device("cpu"))
    pooled = (layout.band_mean @ features.reshape(2, 30, 2)).transpose(1, 2).reshape(2, 2, 3, 3)
    (pooled * upstream).sum().backward()
    torch.testing.assert_close(mine.grad, reference.grad)
    assert (mine.grad[0, 0, 0, :3] == 0).all()
    assert torch.autograd.gradcheck(lambda s: dswg.band_descriptors(s), (spectrum[1:].clone()
                                                                        .requires_grad_(True),))


def test_log_rms_descriptor_is_the_log_of_each_groups_rms_magnitude():
    """``log_rms``: ``log(1 + sqrt(mean of |S|^2 over a group's channels))`` per coefficient, then
    the band mean; the same for complex spectra (``|z|^2``), in float32 for half inputs, and
    gradient 0 (not NaN) where a whole group is exactly 0."""
    spectrum = torch.randn(2, 6, 5, 8, dtype=torch.float64)
    spectrum[0, 0, 0, :4] = 0.0  # one group of one coefficient all zero
    dswg = DynamicSpectrumWeights(8, 3, num_groups=2, descriptor="log_rms").double()
    rms = spectrum.square().reshape(2, 6, 5, 2, 4).mean(-1).sqrt()  # (B, H, W, G)
    # A 2-channel, 2-group "log" DSWG takes log(1 + x) of each of its channels: the group RMS.
    expected = DynamicSpectrumWeights(2, 3, num_groups=2).double().band_descriptors(rms)
    torch.testing.assert_close(dswg.band_descriptors(spectrum), expected)
    leaf = spectrum.clone().requires_grad_(True)
    dswg.band_descriptors(leaf).sum().backward()
    assert torch.isfinite(leaf.grad).all() and (leaf.grad[0, 0, 0, :4] == 0).all()
    assert torch.autograd.gradcheck(lambda s: dswg.band_descriptors(s),
                                    (spectrum[1:].clone().requires_grad_(True),))
    complex_spectrum = torch.complex(spectrum, spectrum.flip(-1))
    complex_rms = complex_spectrum.abs().square().reshape(2, 6, 5, 2, 4).mean(-1).sqrt()
    torch.testing.assert_close(
        dswg.band_descriptors(complex_spectrum),
        DynamicSpectrumWeights(2, 3, num_groups=2).double().band_descriptors(complex_rms))
    single = DynamicSpectrumWeights(8, 3, num_groups=2, descriptor="log_rms")
    half = spectrum.to(torch.bfloat16)
    got = single.band_descriptors(half)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, single.band_descriptors(half.float()))


@pytest.mark.parametrize("descriptor", ["log", "log_rms"])
def test_inplace_weighting_overwrites_values_only_when_no_gradient_is_recorded(descriptor):
    torch.manual_seed(0)
    dswg = DynamicSpectrumWeights(8, 3, num_groups=2, descriptor=descriptor)
    nn.init.normal_(dswg.fc2.weight)
    spectrum = torch.randn(2, 5, 6, 8)
    expected = spectrum * 2 * dswg.weights(spectrum)
    values = spectrum * 2
    with torch.no_grad():
        out = dswg(spectrum, values, inplace=True)
    assert out.data_ptr() == values.data_ptr()
    torch.testing.assert_close(out, expected.detach(), rtol=0, atol=0)
    values = spectrum * 2  # recorded: the MLP's parameters need the unweighted values
    out = dswg(spectrum, values, inplace=True)
    assert out.data_ptr() != values.data_ptr() and torch.equal(values, spectrum * 2)
    out.sum().backward()
    assert dswg.fc2.weight.grad is not None


def test_inplace_static_product_overwrites_the_spectrum_only_when_allowed():
    """``dswg(S, static_weight=W0, inplace=True)`` without gradients writes ``S * W0 * A(S)``
    into ``S`` (its band weights taken first): the same bits as the product into a new tensor.
    With a gradient recorded through ``S`` or ``W0``, ``S`` is left as it was."""
    torch.manual_seed(0)
    dswg = _randomize(DynamicSpectrumWeights(8, 3, num_groups=2))
    spectrum, static = torch.randn(2, 5, 6, 8), torch.randn(5, 6, 8)
    with torch.no_grad():
        expected = dswg(spectrum, static_weight=static)
        owned = spectrum.clone()
        out = dswg(owned, static_weight=static, inplace=True)
    assert out.data_ptr() == owned.data_ptr() and torch.equal(out, expected)
    kept = spectrum.clone().requires_grad_(True)
    out = dswg(kept, static_weight=static, inplace=True)
    assert torch.equal(kept, spectrum)
    torch.testing.assert_close(out.detach(), expected)
    frozen = spectrum.clone()  # only the MLP records a gradient: S * W0 may overwrite S
    out = dswg(frozen, static_weight=static, inplace=True)
    assert out.requires_grad and torch.equal(frozen, spectrum * static)
    out.sum().backward()  # the MLP's gradient needs S * W0, which is what S now holds
    torch.testing.assert_close(out.detach(), expected)


def test_can_overwrite_refuses_other_shapes_dtypes_and_recorded_gradients():
    first = torch.randn(2, 5, 6, 8)
    with torch.no_grad():
        assert can_overwrite(first, torch.randn(5, 6, 8), torch.randn(2, 5, 6, 1))
        assert not can_overwrite(first, torch.randn(3, 2, 5, 6, 8))  # result larger
        assert not can_overwrite(first, torch.randn(4, 6, 8))  # does not broadcast
        assert not can_overwrite(first, torch.randn(5, 6, 8, dtype=torch.float64))  # promotes
        assert can_overwrite(torch.complex(first, first), torch.randn(5, 6, 8))
        assert can_overwrite(first, torch.randn(5, 6, 8, requires_grad=True))
    assert can_overwrite(first, torch.randn(5, 6, 8))
    assert not can_overwrite(first, torch.randn(5, 6, 8, requires_grad=True))
    assert not can_overwrite(first.requires_grad_(True), torch.randn(5, 6, 8))


def _plain_product(dswg: DynamicSpectrumWeights, spectrum, static_weight):
    """``S * W0 * A(S)`` through autograd's own ops: the reference for the training path."""
    b, h, w, c = spectrum.shape
    per_group = dswg._per_group(dswg.band_weights(spectrum), h, w)
    grouped = (spectrum * static_weight).reshape(b, h, w, dswg.num_groups, -1)
    return (grouped * per_group).reshape(b, h, w, c)


def test_training_path_matches_autograd_of_the_plain_product():
    """With gradients recorded, ``dswg(S, static_weight=W0)`` runs two hand-written backwards
    (``_FilterAndGroupNorm``, ``_GroupWeighting``); values and every gradient (spectrum, static
    weight, MLP) must equal autograd of the plain ops, and a group that is exactly 0 must get
    gradient 0, not NaN."""
    torch.manual_seed(0)
    dswg = _randomize(DynamicSpectrumWeights(8, 3, num_groups=2)).double()
    spectrum = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    spectrum[0, 0, 0, :4] = 0.0  # one group of one coefficient all zero
    static = torch.randn(5, 6, 8, dtype=torch.float64)
    upstream = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    grads = []
    for fused in (True, False):
        dswg.zero_grad()
        s = spectrum.clone().requires_grad_(True)
        w = static.clone().requires_grad_(True)
        out = dswg(s, static_weight=w) if fused else _plain_product(dswg, s, w)
        if fused:
            assert type(out.grad_fn).__name__ == "ViewBackward0"
            assert "_GroupWeighting" in type(out.grad_fn.next_functions[0][0]).__name__
        (out * upstream).sum().backward()
        grads.append([out.detach(), s.grad, w.grad, dswg.fc1.weight.grad, dswg.fc2.weight.grad])
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected)
    assert torch.isfinite(grads[0][1]).all()
    # a spectrum in another memory layout (channels moved) takes the same path
    strided = spectrum.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1).requires_grad_(True)
    out = dswg(strided, static_weight=static)
    (out * upstream).sum().backward()
    torch.testing.assert_close(out.detach(), grads[1][0])
    torch.testing.assert_close(strided.grad, grads[1][1])
    check = torch.autograd.gradcheck(
        lambda s, w: dswg(s, static_weight=w),
        (spectrum[1:].clone().requires_grad_(True), static.clone().requires_grad_(True)))
    assert check


def test_static_weight_path_without_gradients_and_for_other_descriptors():
    torch.manual_seed(0)
    spectrum, static = torch.randn(2, 5, 6, 8), torch.randn(5, 6, 8)
    for descriptor in ("log_rms", "log", "log_of_mean"):
        dswg = _randomize(DynamicSpectrumWeights(8, 3, num_groups=2, descriptor=descriptor))
        expected = _plain_product(dswg, spectrum, static)
        torch.testing.assert_close(dswg(spectrum, static_weight=static), expected)
        with torch.no_grad():
            torch.testing.assert_close(dswg(spectrum, static_weight=static), expected)
    with pytest.raises(ValueError, match="either values"):
        dswg(spectrum)
    with pytest.raises(ValueError, match="either values"):
        dswg(spectrum, spectrum, static_weight=static)


def test_mixer_training_step_equals_the_plain_path(monkeypatch):
    """A DSM mixer's gradients through the training path equal those of the plain ops (the
    path forced off), so weights trained either way are the same function."""
    from dsm_ref import dswg as dswg_module
    from dsm_ref.mixers import DynamicSpectrumMixer

    torch.manual_seed(0)
    mixer = DynamicSpectrumMixer(16, (7, 9)).double()
    nn.init.normal_(mixer.dswg.fc2.weight, std=0.5)
    x = torch.randn(3, 7, 9, 16, dtype=torch.float64)
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(dswg_module, "_eager_real", lambda tensor: False)
        mixer.zero_grad()
        leaf = x.clone().requires_grad_(True)
        out = mixer(leaf)
        out.square().sum().backward()
        results.append([out.detach(), leaf.grad] + [p.grad for p in mixer.parameters()])
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected)
