"""Mixed precision: what ``torch.autocast`` changes and the bounds we state for it.

The DCT and the DSWG's gate run with autocast off (``dsm_ref.dct.full_precision``): under bf16 or
fp16 autocast they give float32's results, and the softmax gate keeps its mean of 1 to float32
precision. The rest of a mixer (its projection) and of a model (the MLPs, the stem) runs in the
autocast dtype, so their outputs differ from float32 by the bounds below, measured on CPU.
"""

import pytest
import torch

from dsm_ref import create_model
from dsm_ref.dct import dct2, idct2
from dsm_ref.dswg import DynamicSpectrumWeights
from dsm_ref.models import TOKEN_MIXERS

HALF = [torch.bfloat16, torch.float16]
# Relative error (norm of the difference over the norm of the float32 output) of a whole mixer
# and of a whole model's logits under CPU autocast: the matmuls outside the DCT round their
# inputs to 8 (bf16) or 11 (fp16) mantissa bits.
MIXER_BOUND = {torch.bfloat16: 2e-2, torch.float16: 3e-3}
MODEL_BOUND = {torch.bfloat16: 6e-2, torch.float16: 1e-2}


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("method", ["matmul", "fft"])
def test_dct_under_autocast_is_float32_exact(dtype, method):
    x = torch.randn(2, 14, 10, 24)
    expected = dct2(x, dims=(1, 2), method=method)
    with torch.autocast("cpu", dtype=dtype):
        spectrum = dct2(x, dims=(1, 2), method=method)
        back = idct2(spectrum, dims=(1, 2), method=method)
    assert spectrum.dtype == torch.float32 and back.dtype == torch.float32
    torch.testing.assert_close(spectrum, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", HALF)
def test_softmax_gate_keeps_mean_one_under_autocast(dtype):
    dswg = DynamicSpectrumWeights(32, 4)
    torch.nn.init.normal_(dswg.fc2.weight, std=1.0)
    spectrum = torch.randn(3, 9, 11, 32) * 5
    expected = dswg.band_weights(spectrum)
    with torch.autocast("cpu", dtype=dtype):
        weights = dswg.band_weights(spectrum)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(weights.mean(dim=(2, 3)), torch.ones(3, 4), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(TOKEN_MIXERS))
def test_every_mixer_under_autocast_within_stated_bound(name, dtype):
    torch.manual_seed(0)
    mixer = TOKEN_MIXERS[name](32, (8, 8)).eval()
    for module in mixer.modules():  # let the DSWG select (it starts at the static twin)
        if isinstance(module, DynamicSpectrumWeights):
            torch.nn.init.normal_(module.fc2.weight, std=0.3)
    x = torch.randn(2, 8, 8, 32)
    with torch.no_grad():
        expected = mixer(x)
        with torch.autocast("cpu", dtype=dtype):
            actual = mixer(x)
    assert torch.isfinite(actual).all()
    assert _relative_error(actual, expected) < MIXER_BOUND[dtype]


@pytest.mark.parametrize("dtype", HALF)
def test_whole_model_under_autocast_within_stated_bound(dtype):
    torch.manual_seed(0)
    model = create_model("dsm_micro", num_classes=10, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=dtype):
            actual = model(x)
    assert _relative_error(actual, expected) < MODEL_BOUND[dtype]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
@pytest.mark.parametrize("method", ["matmul", "fft"])
def test_cuda_bf16_autocast_keeps_the_dct_and_gate_in_float32(method):
    """On CUDA, bf16 autocast would otherwise run the DCT's matmul in bf16 (and TF32 is off by
    default for matmuls): the spectrum must match float32's, the gate keep its mean of 1."""
    x = torch.randn(2, 28, 28, 32, device="cuda")
    dswg = DynamicSpectrumWeights(32, 4).cuda()
    torch.nn.init.normal_(dswg.fc2.weight, std=1.0)
    expected = dct2(x, dims=(1, 2), method=method)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        spectrum = dct2(x, dims=(1, 2), method=method)
        weights = dswg.band_weights(spectrum)
    assert spectrum.dtype == torch.float32 and weights.dtype == torch.float32
    torch.testing.assert_close(spectrum, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights.mean(dim=(2, 3)), torch.ones(2, 4, device="cuda"),
                               rtol=0, atol=1e-6)
