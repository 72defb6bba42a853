"""dsm_ref.bench: FLOP counts against hand-derived formulas, the helpers, and the CLI at toy size.

No test asserts a speed: timings on shared CPUs are noise. FLOPs are counted per call with
2 FLOPs per multiply-add; an FFT of N points costs 5 N log2 N (complex) or 2.5 N log2 N (real).
"""

import json
import math

import pytest
import torch
from torch import nn

from dsm_ref import bench
from dsm_ref.cli import main
from dsm_ref.mixers import Attention, DepthwiseConvMixer, DynamicSpectrumMixer, GlobalFilter

B, H, W, C = 2, 12, 10, 16  # non-square on purpose
TOKENS = B * H * W


def _proj(train: bool = False) -> int:
    """Linear C -> C on every token; training adds grad-input and grad-weight matmuls."""
    return 2 * TOKENS * C * C * (3 if train else 1)


def _dct_matmul(train: bool = False) -> int:
    """dct2 + idct2 as matmuls: H*W*(H+W) multiply-adds per channel each; the DCT matrices are
    constants, so backward adds only the grad-input matmuls."""
    return 2 * 2 * TOKENS * C * (H + W) * (2 if train else 1)


def _count(module: nn.Module, train: bool = False, *, shape=(B, H, W, C)) -> int:
    x = torch.randn(shape, requires_grad=train)

    def run():
        y = module(x)
        if train:
            y.backward(torch.ones_like(y))

    return bench.count_flops(run).total


def test_fft_flops_convention():
    assert bench.fft_flops(8) == 5 * 8 * 3
    assert bench.fft_flops(8, real=True) == 2.5 * 8 * 3
    assert bench.fft_flops(1) == 0
    assert bench.fft_flops(7) == pytest.approx(5 * 7 * math.log2(7))


@pytest.mark.parametrize("train", [False, True])
def test_static_dsm_matmul_flops(train):
    mixer = DynamicSpectrumMixer(C, (H, W), dynamic=False)
    assert _count(mixer, train) == _dct_matmul(train) + _proj(train)


def test_dynamic_dsm_adds_the_dswg_flops():
    mixer = DynamicSpectrumMixer(C, (H, W))
    dswg = mixer.dswg
    g, length, hidden = dswg.num_groups, dswg.spectrum_length, dswg.fc1.out_features
    mlp = 2 * B * (g * length**2) * hidden * 2
    # band pooling: einsum "bhwg,hl,wm->bglm", contracted h first (torch's left-to-right order)
    # or w first (what opt_einsum may pick)
    pooling = {2 * (TOKENS * g * length + B * W * g * length**2),
               2 * (TOKENS * g * length + B * H * g * length**2)}
    dswg_flops = _count(mixer) - _dct_matmul() - _proj()
    assert dswg_flops - mlp in pooling


def test_dsm_fft_flops():
    mixer = DynamicSpectrumMixer(C, (H, W), dynamic=False, dct_method="fft")
    numel = TOKENS * C
    # forward: Makhoul's real-input FFT along each axis (2.5 N log2 N per transform);
    # inverse: a complex FFT along each axis (5 N log2 N)
    forward = numel * 2.5 * (math.log2(H) + math.log2(W))
    inverse = numel * 5 * (math.log2(H) + math.log2(W))
    assert _count(mixer) == pytest.approx(forward + inverse + _proj(), abs=4)


def test_global_filter_flops():
    mixer = GlobalFilter(C, (H, W))
    half = W // 2 + 1
    # rfft2 over (H, W): real along W for each (b, h, c), complex along H on the half spectrum;
    # irfft2 the reverse.
    one_way = B * H * C * bench.fft_flops(W, real=True) + B * half * C * bench.fft_flops(H)
    assert _count(mixer) == pytest.approx(2 * one_way + _proj(), abs=4)


@pytest.mark.parametrize("train", [False, True])
def test_attention_flops(train):
    mixer = Attention(C, (H, W), head_dim=8)
    linear = 2 * TOKENS * C * 3 * C + 2 * TOKENS * C * C  # qkv + proj
    scores = 2 * B * (H * W) ** 2 * C  # Q K^T over all heads; P V costs the same
    expected = 3 * linear + 2 * scores * 3.5 if train else linear + 2 * scores
    # backward: recompute Q K^T, then 4 matmuls (dP, dV, dQ, dK): 5 + 2 = 7 = 2 * 3.5
    assert _count(mixer, train) == expected


@pytest.mark.parametrize("train", [False, True])
def test_depthwise_conv_flops(train):
    kernel = 7
    mixer = DepthwiseConvMixer(C, (H, W), kernel_size=kernel)
    conv = 2 * TOKENS * C * kernel**2
    expected = (3 * conv + _proj(True)) if train else conv + _proj()
    assert _count(mixer, train) == expected


def test_meta_count_equals_real_count():
    for name in bench.MIXERS:
        real_module = bench.MIXERS[name](C, (H, W))
        real = _count(real_module)
        assert bench.mixer_flops(name, C, (H, W), B, train=False).total == real, name


def test_model_flops_in_the_documented_budget():
    # dsm_t's docstring: 2.08 GMACs at 224 (counted on meta tensors: no compute)
    macs = bench.model_flops("dsm_t", 224, train=False).macs
    assert macs / 1e9 == pytest.approx(2.08, abs=0.01)


def test_channels_last_dct_makes_no_copies():
    from torch.utils._python_dispatch import TorchDispatchMode

    from dsm_ref.dct import dct2, idct2

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    x = torch.randn(B, H, W, C)
    dct2(x, dims=(1, 2))  # builds and caches the matrices outside the recording
    with Ops() as ops:
        y = idct2(dct2(x, dims=(1, 2)), dims=(1, 2))
    assert y.is_contiguous()
    heavy = [n for n in ops.names if n.split(".")[0] not in
             {"view", "_unsafe_view", "transpose", "expand", "permute", "t"}]
    assert heavy == ["bmm.default"] * 4, heavy


def test_time_callable_statistics():
    timing = bench.time_callable(lambda: torch.ones(100).sum(), min_reps=4, target_time=0.01)
    assert timing.reps >= 4 and timing.inner >= 1
    assert timing.min_s <= timing.q1_s <= timing.median_s <= timing.q3_s <= timing.max_s


def test_peak_memory_sees_an_allocation():
    size = 2_000_000  # 8 MB of float32

    def allocate():
        return torch.ones(size).sum()

    peak = bench.peak_memory_bytes(allocate, "cpu")
    if peak is None:
        pytest.skip("this torch's profiler gives no allocation events")
    assert peak >= 4 * size


def test_fit_exponent():
    tokens = [196, 784, 3136, 12544]
    assert bench.fit_exponent(tokens, [t**1.5 * 3 for t in tokens]) == pytest.approx(1.5)


def _run_cli(tmp_path, suite, *extra):
    out = tmp_path / f"{suite}.json"
    argv = ["bench", suite, "--quick", "--json", str(out), "--no-progress", "--warmup", "1",
            "--target-time", "0.002", "--min-reps", "2", *extra]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["suite"] == suite and record["complete"]
    assert record["command"].startswith("python -m dsm_ref bench " + suite)
    assert {"torch", "cpu_model", "load_average", "load_average_after"} <= set(record["machine"])
    assert set(bench.CONVENTIONS) <= set(record["conventions"])
    assert record["peaks"]["matmul_flop_per_s"] > 0
    return record


def test_cli_dct_writes_valid_json(tmp_path):
    record = _run_cli(tmp_path, "dct", "--rounds", "2")
    methods = {r["method"] for r in record["results"]}
    assert methods == set(bench.DCT_METHODS)
    for row in record["results"]:
        assert row["time"]["median_s"] > 0
        assert row["max_rel_error"] < 1e-5
        assert len(row["rounds"]) == 2 and row["time"]["median_s"] == min(row["rounds"])
        assert row["flops"] is None if row["method"] == "scipy" else row["flops"] > 0


def test_cli_mixers_writes_valid_json(tmp_path):
    record = _run_cli(tmp_path, "mixers", "--mixers", "dsm_matmul", "gfnet", "attention",
                      "--rounds", "2")
    assert record["settings"]["rounds"] == 2
    assert {r["mixer"] for r in record["results"]} == {"dsm_matmul", "gfnet", "attention"}
    for row in record["results"]:
        for mode in ("inference", "train"):
            entry = row[mode]
            assert entry["flops"] > 0 and entry["ms_per_image"] > 0
            assert entry["floor"]["time_s"] > 0
            assert len(entry["rounds"]) == 2 and entry["time"]["median_s"] == min(entry["rounds"])
    assert {f["mixer"] for f in record["fits"]} == {"dsm_matmul", "gfnet", "attention"}
    tokens, values = bench.scaling_series(record, "gfnet", 16, "inference", "flops_per_image")
    assert tokens == [49, 196] and values[1] > values[0]


def test_cli_models_and_report(tmp_path):
    record = _run_cli(tmp_path, "models", "--modes", "inference")
    assert [r["model"] for r in record["results"]] == ["dsm_micro", "dsm_micro-gfnet"]
    for row in record["results"]:
        assert row["params"] > 0 and row["gmacs_per_image"] > 0
        assert row["inference"]["images_per_s"] > 0
        assert len(row["inference"]["rounds"]) == 1  # --quick: one timing round
    gfnet = record["results"][1]
    assert gfnet["flops_fft_per_image"] > 0  # the FFTs are counted
    _run_cli(tmp_path, "dct", "--sizes", "7")
    report = tmp_path / "BENCHMARKS.md"
    assert main(["bench", "report", "--inputs", str(tmp_path / "*.json"),
                 "--out", str(report)]) == 0
    text = report.read_text()
    assert "## Goals of the issue" in text and "GPU numbers are not measured yet" in text
    assert "dsm_micro-gfnet" in text


def test_cli_rejects_cuda_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit):
        main(["bench", "dct", "--quick", "--device", "cuda"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_mixers_and_compiled_model(tmp_path):
    record = _run_cli(tmp_path, "mixers", "--device", "cuda", "--dtype", "bfloat16")
    assert record["settings"]["dtype"] == "bfloat16"
    for row in record["results"]:
        assert row["inference"]["peak_memory_bytes"] > 0
    record = _run_cli(tmp_path, "models", "--device", "cuda", "--compile", "both",
                      "--compile-models", "dsm_micro", "--modes", "inference", "train")
    assert {r["compiled"] for r in record["results"]} == {False, True}
    for row in record["results"]:
        assert row["train"]["images_per_s"] > 0


def test_best_peaks_counts_every_measurement():
    one = {"matmul_flop_per_s": 1.0, "copy_bytes_per_s": 3.0}
    two = {"matmul_flop_per_s": 2.0, "copy_bytes_per_s": 1.0}
    best = bench._best_peaks(bench._best_peaks(one, two), one)
    assert best["measurements"] == 3
    assert (best["matmul_flop_per_s"], best["copy_bytes_per_s"]) == (2.0, 3.0)


def test_models_bench_keeps_what_it_measured_when_killed(tmp_path, monkeypatch):
    real = bench.time_callable

    def killed_in_round_two(*args, **kwargs):
        if kwargs.get("warmup") == 0:  # rounds after the first time warm models without warm-up
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "time_callable", killed_in_round_two)
    out = tmp_path / "models.json"
    settings = bench.Settings(progress=False, quick=True, warmup=1, min_reps=2,
                              target_time=0.002)
    with pytest.raises(KeyboardInterrupt):
        bench.bench_models(["dsm_micro", "dsm_micro-gfnet"], img_size=32, batch=2,
                           modes=("inference",), rounds=2, settings=settings, json_path=out)
    record = json.loads(out.read_text())
    assert [r["model"] for r in record["results"]] == ["dsm_micro", "dsm_micro-gfnet"]
    for row in record["results"]:
        assert row["inference"]["images_per_s"] > 0 and len(row["inference"]["rounds"]) == 1
