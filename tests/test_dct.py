"""dsm_ref.dct against scipy.fft, on both implementations."""

import numpy as np
import pytest
import scipy.fft
import torch

from dsm_ref import dct as D

METHODS = D.METHODS
LENGTHS = [1, 2, 7, 13, 56]


def _rel_err(mine: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.as_tensor(ref, dtype=torch.float64)
    return ((mine.double() - ref_t).abs().max() / ref_t.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_dct_idct_match_scipy_1d(method, n, dtype, tol):
    x = torch.randn(3, 5, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    ref = scipy.fft.dct(x.numpy(), type=2, norm="ortho", axis=-1)
    assert _rel_err(D.dct(x.to(dtype), method=method), ref) < tol
    ref_inv = scipy.fft.idct(x.numpy(), type=2, norm="ortho", axis=-1)
    assert _rel_err(D.idct(x.to(dtype), method=method), ref_inv) < tol


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "shape,dims",
    [
        ((2, 3, 7, 13), (-2, -1)),  # channels-first, non-square
        ((2, 13, 7, 3), (1, 2)),  # channels-last
        ((4, 1, 1), (-2, -1)),  # 1 x 1
        ((56, 56), (0, 1)),  # no batch dims
        ((2, 2, 3, 5, 11, 4), (-3, -2)),  # several batch dims, channels-last
        ((5, 9, 2), (-1, 0)),  # dims out of order
        ((2, 7, 7, 3), (1, 2)),  # small channels-last grid: separable
        ((2, 3, 7, 7), (-2, -1)),  # small channels-first grid: one Kronecker matmul
        ((3, 8, 8), (-1, -2)),  # ... with the dims given in reverse
        ((2, 3, 8, 9), (-2, -1)),  # 72 coefficients: separable again
    ],
)
def test_dct2_idct2_match_scipy(method, shape, dims):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=dims)
    assert _rel_err(D.dct2(x, dims, method=method), ref) < 1e-12
    assert _rel_err(D.dct2(x.float(), dims, method=method), ref) < 1e-5
    ref_inv = scipy.fft.idctn(x.numpy(), type=2, norm="ortho", axes=dims)
    assert _rel_err(D.idct2(x, dims, method=method), ref_inv) < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_random_shapes_against_scipy(method):
    """Shapes drawn at random (not chosen by hand), channels-last."""
    rng = np.random.default_rng(2026)
    for _ in range(10):
        b, h, w, c = rng.integers(1, 40, size=4)
        x = torch.as_tensor(rng.standard_normal((b, h, w, c)))
        ref = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(1, 2))
        assert _rel_err(D.dct2(x, (1, 2), method=method), ref) < 1e-12


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 6, 13])
def test_round_trip(method, n):
    x = torch.randn(4, n, n + 3, dtype=torch.float64)
    for dims in [(-2, -1), (-1,), (-2,)]:
        if len(dims) == 2:
            back = D.idct2(D.dct2(x, dims, method=method), dims, method=method)
        else:
            back = D.idct(D.dct(x, dims[0], method=method), dims[0], method=method)
        torch.testing.assert_close(back, x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_matrix_is_orthonormal_and_cached(n):
    mat = D.dct_matrix(n, dtype=torch.float64)
    torch.testing.assert_close(mat @ mat.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-13)
    assert D.dct_matrix(n, dtype=torch.float64) is mat
    assert D.dct_matrix(n, dtype=torch.float32) is not mat
    assert mat.shape == (n, n)


def test_matrix_made_in_inference_mode_trains_later():
    with torch.inference_mode():
        D.dct(torch.randn(2, 29))
    x = torch.randn(2, 29, requires_grad=True)
    D.dct(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_float64(method):
    x = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: D.dct2(t, method=method), (x,))
    assert torch.autograd.gradcheck(lambda t: D.idct2(t, method=method), (x,))


@pytest.mark.parametrize("shape", [(1, 4, 3), (2, 6, 1), (1, 2, 8)])
def test_fft_path_gradcheck_on_even_odd_and_unit_axes_channels_last(shape):
    """The real-FFT path transforms a middle axis in place (no axis moved): check its
    gradients on even, odd and length-1 axes of a channels-last tensor."""
    x = torch.randn(*shape, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: D.dct2(t, (1, 2), method="fft"), (x,))
    assert torch.autograd.gradcheck(lambda t: D.idct2(t, (1, 2), method="fft"), (x,))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_half_precision_keeps_dtype_and_fp32_like_error(method, dtype, tol):
    x = torch.randn(2, 14, 14, 8).to(dtype)
    y = D.dct2(x, (1, 2), method=method)
    assert y.dtype == dtype
    ref = scipy.fft.dctn(x.double().numpy(), type=2, norm="ortho", axes=(1, 2))
    # The only error left is the final rounding to the half dtype.
    assert _rel_err(y, ref) < tol


def test_noncontiguous_input():
    x = torch.randn(3, 8, 10, dtype=torch.float64).transpose(1, 2)  # (3, 10, 8), strided
    ref = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(1, 2))
    assert _rel_err(D.dct2(x, (1, 2)), ref) < 1e-12


def test_fft_and_matmul_agree():
    x = torch.randn(2, 31, 17, 3, dtype=torch.float64)
    torch.testing.assert_close(D.dct2_fft(x, (1, 2)), D.dct2(x, (1, 2)), rtol=0, atol=1e-12)
    torch.testing.assert_close(D.idct2_fft(x, (1, 2)), D.idct2(x, (1, 2)), rtol=0, atol=1e-12)
    torch.testing.assert_close(D.dct_fft(x, 1), D.dct(x, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(D.idct_fft(x, 2), D.idct(x, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: D.dct(torch.arange(8)), TypeError, "int64"),
        (lambda: D.dct(torch.randn(8, dtype=torch.complex64)), TypeError, "complex64"),
        (lambda: D.dct(torch.randn(4, 8), dim=2), ValueError, "out of range"),
        (lambda: D.dct(torch.randn(4, 0)), ValueError, "length 0"),
        (lambda: D.dct2(torch.randn(4, 8), dims=(1, -1)), ValueError, "repeat"),
        (lambda: D.dct(torch.randn(4), method="dft"), ValueError, "matmul"),
        (lambda: D.dct([1.0, 2.0]), TypeError, "torch.Tensor"),
        (lambda: D.dct_matrix(0), ValueError, ">= 1"),
    ],
)
def test_bad_input_says_what_was_expected(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu(method, dtype):
    x = torch.randn(2, 28, 28, 16)
    ref = D.dct2(x.double(), (1, 2))
    y = D.dct2(x.to("cuda", dtype), (1, 2), method=method)
    assert y.dtype == dtype and y.device.type == "cuda"
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert _rel_err(y.cpu(), ref.numpy()) < tol


@pytest.mark.parametrize("shape,dims", [((3, 4, 7, 7), (-2, -1)), ((3, 5, 8, 8), (2, 3))])
def test_kronecker_and_separable_paths_agree(shape, dims, monkeypatch):
    x = torch.randn(shape, dtype=torch.float64)
    kron, kron_inv = D.dct2(x, dims), D.idct2(x, dims)
    monkeypatch.setattr(D, "KRONECKER_MAX_SIZE", 0)
    torch.testing.assert_close(kron, D.dct2(x, dims), rtol=0, atol=1e-13)
    torch.testing.assert_close(kron_inv, D.idct2(x, dims), rtol=0, atol=1e-13)


def test_auto_follows_the_measured_crossover_and_keeps_the_matmul_below(monkeypatch):
    size, chosen = D.AUTO_CROSSOVER["cpu"]
    assert chosen in D.METHODS
    assert D.resolve_method("auto", (size - 1, size - 1), "cpu") == "matmul"
    assert D.resolve_method("auto", (7, size), "cpu") == chosen
    assert D.resolve_method("auto", (4096, 4096), "cuda") == "matmul"  # no CUDA crossover yet
    assert D.resolve_method("matmul", (4096, 4096), "cpu") == "matmul"
    assert D.resolve_method("fft", (7, 7), "cpu") == "fft"
    # The path taken is the one resolved: with the crossover lowered to 8, a 9x10 grid goes
    # through the chosen path (whose rounding differs from the matmul's in the last bits).
    x = torch.randn(2, 9, 10, 3, dtype=torch.float64)
    for path in ("fft", "scipy"):
        monkeypatch.setitem(D.AUTO_CROSSOVER, "cpu", (8, path))
        assert torch.equal(D.dct2(x, (1, 2), method="auto"), D.dct2(x, (1, 2), method=path))
        assert torch.equal(D.idct2(x, (1, 2), method="auto"), D.idct2(x, (1, 2), method=path))
        monkeypatch.setitem(D.AUTO_CROSSOVER, "cpu", (11, path))
        assert torch.equal(D.dct2(x, (1, 2), method="auto"), D.dct2(x, (1, 2), method="matmul"))


def test_scipy_path_gradients_and_its_cpu_only_error():
    x = torch.randn(2, 5, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: D.dct2(t, (1, 2), method="scipy"), (x,))
    assert torch.autograd.gradcheck(lambda t: D.idct(t, 2, method="scipy"), (x,))
    half = D.dct2(x.detach().to(torch.bfloat16), (1, 2), method="scipy")
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="CPU tensors only, got a tensor on meta"):
        D.dct2(torch.zeros(2, 5, 6, 3, device="meta"), (1, 2), method="scipy")


def test_fft_2d_on_non_adjacent_axes_and_its_single_backward():
    # (B, H, C, W): the two axes are not adjacent, so the order is applied one axis at a time.
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64, requires_grad=True)
    ref = scipy.fft.dctn(x.detach().numpy(), type=2, norm="ortho", axes=(1, 3))
    assert _rel_err(D.dct2(x, (1, 3), method="fft"), ref) < 1e-12
    assert _rel_err(D.dct2(x, (3, 1), method="fft"), ref) < 1e-12
    assert torch.autograd.gradcheck(lambda t: D.dct2(t, (3, 1), method="fft"), (x,))
    assert torch.autograd.gradgradcheck(lambda t: D.idct2(t, (1, 3), method="fft"), (x,))


@pytest.mark.parametrize(
    "shape,dims",
    [
        ((2, 9, 3, 7, 2), (1, 3)),  # non-adjacent, neither last: one gather per axis
        ((2, 9, 7, 3), (2, 1)),  # channels-last, dims reversed: flattened-grid gather
        ((3, 2, 9, 11), (3, 2)),  # channels-first, odd x odd, dims reversed: quadrant copies
        ((2, 1, 5, 3), (1, 3)),  # a length-1 axis, non-adjacent, ends on the last dim
        ((7, 2, 1), (0, 2)),  # ... and a length-1 last axis
    ],
)
def test_fft_2d_reorder_paths_against_scipy(shape, dims):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=dims)
    ref_inv = scipy.fft.idctn(x.numpy(), type=2, norm="ortho", axes=dims)
    assert _rel_err(D.dct2(x, dims, method="fft"), ref) < 1e-12
    assert _rel_err(D.idct2(x, dims, method="fft"), ref_inv) < 1e-12
    assert _rel_err(D.dct2(x.float(), dims, method="fft"), ref) < 1e-5
    assert _rel_err(D.idct2(x.float(), dims, method="fft"), ref_inv) < 1e-5
