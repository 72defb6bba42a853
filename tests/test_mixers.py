"""Token mixers against naive references (scipy/numpy loops, torch attention), resizing, export."""

import io
import warnings

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

from dsm_ref.mixers import (
    Attention,
    DepthwiseConvMixer,
    DynamicFilter,
    DynamicSpectrumMixer,
    GlobalFilter,
    IdentityMixer,
    resize_spectral_weight,
)
from dsm_ref.models import TOKEN_MIXERS

torch.manual_seed(0)


def _activate_dswg(mixer):
    if getattr(mixer, "dswg", None) is not None:
        torch.nn.init.normal_(mixer.dswg.fc2.weight, std=0.3)
    return mixer


@pytest.mark.parametrize("method", ["matmul", "fft"])
def test_dsm_mixer_matches_scipy_reference(method):
    mixer = _activate_dswg(DynamicSpectrumMixer(8, (6, 10), dct_method=method)).double()
    x = torch.randn(2, 6, 10, 8, dtype=torch.float64)
    spectrum = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(1, 2))
    band_weights = mixer.dswg.weights(torch.as_tensor(spectrum)).detach().numpy()
    filtered = spectrum * mixer.spectral_weight.detach().numpy() * band_weights
    mixed = scipy.fft.idctn(filtered, type=2, norm="ortho", axes=(1, 2))
    expected = mixed @ mixer.proj.weight.detach().numpy().T + mixer.proj.bias.detach().numpy()
    np.testing.assert_allclose(mixer(x).detach().numpy(), expected, rtol=1e-10, atol=1e-12)


_OVERWRITING_MIXERS = [
    (DynamicSpectrumMixer, {"dct_method": "matmul"}),
    (DynamicSpectrumMixer, {"dct_method": "fft"}),
    (DynamicSpectrumMixer, {"dct_method": "scipy"}),
    (DynamicSpectrumMixer, {"dynamic": False}),
    (GlobalFilter, {}),
    (GlobalFilter, {"dynamic": True}),
]


@pytest.mark.parametrize("cls,options", _OVERWRITING_MIXERS)
@pytest.mark.parametrize("size", [(6, 5), (1, 1)])
def test_inference_writes_into_the_spectrum_with_the_same_bits(cls, options, size, monkeypatch):
    """Without gradients the spectral mixers multiply into their transform's output instead of a
    new tensor: the output must be the same bits as the out-of-place product (within float
    rounding for GFNet's complex product, whose rounding follows the memory order), and the
    caller's input must be untouched (also where the transform is trivial, 1 x 1)."""
    torch.manual_seed(0)
    mixer = _activate_dswg(cls(8, size, **options)).eval()
    twin = cls(8, size, overwrite_spectrum=False, **options).eval()
    twin.load_state_dict(mixer.state_dict())
    x = torch.randn(2, *size, 8)
    before = x.clone()
    with torch.no_grad():
        overwritten = mixer(x)
    assert torch.equal(x, before)
    calls = []  # the twin must not even ask whether it may overwrite
    for module in ("dsm_ref.mixers", "dsm_ref.dswg"):
        monkeypatch.setattr(f"{module}.can_overwrite", lambda *tensors: calls.append(1))
    with torch.no_grad():
        out_of_place = twin(x)
    assert not calls
    if cls is GlobalFilter:
        torch.testing.assert_close(overwritten, out_of_place, rtol=1e-6, atol=1e-7)
    else:
        assert torch.equal(overwritten, out_of_place)
    training = mixer(x)  # gradients recorded: out of place, same values within rounding
    torch.testing.assert_close(training.detach(), overwritten)


def test_dynamic_and_static_start_equal():
    torch.manual_seed(1)
    dynamic = DynamicSpectrumMixer(16, (8, 8), dynamic=True)
    static = DynamicSpectrumMixer(16, (8, 8), dynamic=False)
    static.load_state_dict(dynamic.state_dict(), strict=False)
    x = torch.randn(2, 8, 8, 16)
    torch.testing.assert_close(dynamic(x), static(x))
    assert static.dswg is None


def test_global_filter_matches_numpy_fft():
    mixer = GlobalFilter(4, (6, 7)).double()
    x = torch.randn(2, 6, 7, 4, dtype=torch.float64)
    kernel = torch.view_as_complex(mixer.spectral_weight.detach()).numpy()
    spectrum = np.fft.rfft2(x.numpy(), axes=(1, 2), norm="ortho") * kernel
    mixed = np.fft.irfft2(spectrum, s=(6, 7), axes=(1, 2), norm="ortho")
    expected = mixed @ mixer.proj.weight.detach().numpy().T + mixer.proj.bias.detach().numpy()
    np.testing.assert_allclose(mixer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_dynamic_global_filter_runs_and_starts_like_static():
    static = GlobalFilter(8, (8, 8))
    dynamic = GlobalFilter(8, (8, 8), dynamic=True)
    dynamic.load_state_dict(static.state_dict(), strict=False)
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(dynamic(x), static(x))


def test_attention_matches_explicit_softmax():
    mixer = Attention(64, (5, 6), head_dim=16)
    x = torch.randn(2, 5, 6, 64)
    q, k, v = mixer.qkv(x.reshape(2, 30, 64)).chunk(3, dim=-1)
    heads = [t.reshape(2, 30, 4, 16).transpose(1, 2) for t in (q, k, v)]
    weights = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / 4.0, dim=-1)
    expected = mixer.proj((weights @ heads[2]).transpose(1, 2).reshape(2, 5, 6, 64))
    torch.testing.assert_close(mixer(x), expected, rtol=1e-4, atol=1e-5)


def test_depthwise_conv_matches_conv2d():
    mixer = DepthwiseConvMixer(6, (9, 9), kernel_size=3)
    x = torch.randn(1, 9, 9, 6)
    conv = F.conv2d(x.permute(0, 3, 1, 2), mixer.conv.weight, mixer.conv.bias, padding=1, groups=6)
    torch.testing.assert_close(mixer(x), mixer.proj(conv.permute(0, 2, 3, 1)))


def test_dynamic_filter_matches_numpy_per_image_mixture():
    torch.manual_seed(0)
    mixer = DynamicFilter(8, (6, 10), num_filters=3)
    nn.init.normal_(mixer.reweight[2].weight)  # make the mixtures differ between images
    x = torch.randn(2, 6, 10, 8)
    mixture = mixer.mixture_weights(x)
    assert mixture.shape == (2, 3, 8)
    torch.testing.assert_close(mixture.sum(1), torch.ones(2, 8))
    assert (mixture[0] - mixture[1]).abs().max() > 1e-3
    filters = torch.view_as_complex(mixer.spectral_weight.detach()).numpy()  # (6, 6, 3, 8)
    expected = []
    for b in range(2):
        image_filter = np.einsum("kc,hwkc->hwc", mixture[b].detach().numpy(), filters)
        spectrum = np.fft.rfft2(x[b].numpy(), axes=(0, 1), norm="ortho")
        expected.append(np.fft.irfft2(spectrum * image_filter, s=(6, 10), axes=(0, 1),
                                      norm="ortho"))
    reference = mixer.proj(torch.from_numpy(np.stack(expected)).float())
    torch.testing.assert_close(mixer(x), reference, rtol=1e-4, atol=1e-5)


def test_dynamic_filter_with_one_filter_is_a_global_filter():
    mixer, gfnet = DynamicFilter(4, (5, 5), num_filters=1), GlobalFilter(4, (5, 5))
    gfnet.load_state_dict({"spectral_weight": mixer.spectral_weight.detach()[:, :, 0],
                           "proj.weight": mixer.proj.weight, "proj.bias": mixer.proj.bias})
    x = torch.randn(3, 5, 5, 4)
    torch.testing.assert_close(mixer(x), gfnet(x))


def test_identity_mixer_is_the_projection():
    mixer = IdentityMixer(5)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(mixer(x), mixer.proj(x))


@pytest.mark.parametrize("name", sorted(TOKEN_MIXERS))
@pytest.mark.parametrize("size", [(8, 8), (5, 11), (1, 1), (16, 12)])
def test_every_mixer_keeps_shape_at_any_size(name, size):
    mixer = _activate_dswg(TOKEN_MIXERS[name](32, (8, 8)))
    x = torch.randn(2, *size, 32, requires_grad=True)
    y = mixer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in mixer.parameters())


@pytest.mark.parametrize("name", sorted(TOKEN_MIXERS))
def test_wrong_token_layout_names_expected_shape(name):
    mixer = TOKEN_MIXERS[name](16, (8, 8))
    with pytest.raises(ValueError, match=r"\(B, H, W, C=16\)"):
        mixer(torch.randn(2, 16, 8, 8))  # channels-first by mistake
    with pytest.raises(ValueError, match="C=16"):
        mixer(torch.randn(8, 8, 16))


def test_resize_spectral_weight_identity_and_constant():
    weight = torch.randn(7, 7, 3)
    assert resize_spectral_weight(weight, (7, 7)) is weight
    constant = torch.full((7, 7, 3, 2), 0.5)
    resized = resize_spectral_weight(constant, (9, 12))
    torch.testing.assert_close(resized, torch.full((9, 12, 3, 2), 0.5))


@pytest.mark.parametrize("cls", [DynamicSpectrumMixer, GlobalFilter])
def test_state_dict_loads_across_sizes(cls):
    small = cls(8, (7, 7))
    large = cls(8, (10, 12))
    large.load_state_dict(small.state_dict())
    target_size = tuple(large.spectral_weight.shape[:2])
    expected = resize_spectral_weight(small.spectral_weight.detach(), target_size)
    torch.testing.assert_close(large.spectral_weight.detach(), expected)
    # A model built for 10x12 and one built for 7x7 then run at 10x12 compute the same thing.
    x = torch.randn(1, 10, 12, 8)
    torch.testing.assert_close(large(x), small(x))


def test_static_init_options():
    ones = DynamicSpectrumMixer(4, (3, 3), static_init="ones").spectral_weight.detach()
    assert torch.equal(ones, torch.ones(3, 3, 4))
    assert DynamicSpectrumMixer(4, (8, 8)).spectral_weight.std() < 0.1
    with pytest.raises(ValueError, match="unknown static_init "):
        DynamicSpectrumMixer(4, (3, 3), static_init="zeros")


def test_spectrum_length_not_tied_to_size_except_full():
    assert DynamicSpectrumMixer(8, (3, 5), spectrum_length=8).dswg.spectrum_length == 8
    assert DynamicSpectrumMixer(8, (6, 6), spectrum_length=None).dswg.spectrum_length == 6


def test_jit_trace_of_dsm_mixer():
    mixer = _activate_dswg(DynamicSpectrumMixer(16, (7, 7))).eval()
    x = torch.randn(2, 7, 7, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(mixer, (x,), check_trace=False)
    torch.testing.assert_close(traced(x), mixer(x))


@pytest.mark.slow
def test_dsm_mixer_exports_to_onnx_without_fft_and_runs():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    mixer = _activate_dswg(DynamicSpectrumMixer(16, (7, 9))).eval()
    x = torch.randn(2, 7, 9, 16)
    expected = mixer(x).detach().numpy().copy()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mixer, (x.clone(),), buffer, dynamo=True, verbose=False)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    ops = {node.op_type for node in graph.node}
    assert "DFT" not in ops and "MatMul" in ops
    session = ort.InferenceSession(buffer.getvalue())
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
