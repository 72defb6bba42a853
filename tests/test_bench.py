"""dsm_ref.bench: FLOP counts against hand-derived formulas, the helpers, and the CLI at toy size.

No test asserts a speed: timings on shared CPUs are noise. FLOPs are counted per call with
2 FLOPs per multiply-add; an FFT of N points costs 5 N log2 N (complex) or 2.5 N log2 N (real).
"""

import json
import math

import pytest
import scipy.stats
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
    # band mean pooling: one matmul (L*L, H*W) @ (B, H*W, G)
    pooling = 2 * TOKENS * g * length**2
    dswg_flops = _count(mixer) - _dct_matmul() - _proj()
    assert dswg_flops - mlp == pooling


def test_dsm_fft_flops():
    mixer = DynamicSpectrumMixer(C, (H, W), dynamic=False, dct_method="fft")
    numel = TOKENS * C
    # Makhoul's 2D DCT through one rfft2 and its inverse through one irfft2: the FFTs GFNet's
    # filter takes (real along W, complex along H on the half spectrum, each way)
    half = W // 2 + 1
    one_way = B * H * C * bench.fft_flops(W, real=True) + B * half * C * bench.fft_flops(H)
    assert numel == B * H * W * C
    assert _count(mixer) == pytest.approx(2 * one_way + _proj(), abs=4)


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
    assert methods == set(bench.DCT_METHODS) | {bench.DCT_REFERENCE}
    for row in record["results"]:
        assert row["time"]["median_s"] > 0
        if row["method"] == bench.DCT_REFERENCE:  # GFNet's rfft2: another transform, no error
            assert row["max_rel_error"] is None
        else:
            assert row["max_rel_error"] < 1e-5
        # the first round warms up and picks block sizes per method: the later ones count
        assert len(row["rounds"]) == 2 and row["time"]["median_s"] == row["rounds"][1]
        assert row["flops"] is None if row["method"] == "scipy" else row["flops"] > 0
    assert record["settings"]["counted_rounds"] == bench.suites.COUNTED_ROUNDS
    # the report holds the FFT DCT to GFNet's rfft2 of the same tensor
    from dsm_ref.bench.targets import speed_targets

    targets = speed_targets({("dct", "cpu"): record}, lambda value, digits=3: f"{value:.3g}")
    (fft_row,) = [row for row in targets if "rfft2" in row[0]]
    assert fft_row[2] in ("met", "not met", "not shown") and "fft/rfft2" in fft_row[1]


def _timed(ms: float, noise: tuple[float, ...] = (1.0, 1.02, 0.98, 1.01, 0.99)) -> dict:
    """A timed entry whose rounds (the first one warm-up) scatter around ``ms``."""
    rounds = [2 * ms / 1e3] + [ms * f / 1e3 for f in noise]
    return {"time": {"median_s": min(rounds[1:])}, "ms_per_image": min(rounds[1:]) * 1e3,
            "rounds": rounds}


def test_paired_ratio_is_the_geometric_mean_of_per_round_ratios_with_an_interval():
    from dsm_ref.bench.ratios import judge, paired_ratio

    a = {"time": {"median_s": 2.0}, "rounds": [9.0, 2.0, 4.0, 2.2, 3.9]}
    b = {"time": {"median_s": 1.0}, "rounds": [1.0, 1.0, 2.0, 1.0, 2.0]}
    e = paired_ratio("p", a, b, bound=1.5)
    ratios = [2.0, 2.0, 2.2, 1.95]  # the first (warm-up) round does not count
    assert e.rounds == 4
    assert e.ratio == pytest.approx(math.exp(sum(map(math.log, ratios)) / 4))
    assert e.ci95[0] < e.ratio < e.ci95[1]
    logs = [math.log(r) for r in ratios]
    assert e.comparison.p == pytest.approx(
        scipy.stats.ttest_1samp([x - math.log(1.5) for x in logs], 0.0).pvalue)
    assert judge([e])[0][1] == "above"  # clearly above 1.5
    assert judge([paired_ratio("q", a, b, bound=3.0)])[0][1] == "below"
    # without rounds: the reported times, no interval, not resolved
    plain = paired_ratio("r", {"time": {"median_s": 3.0}}, {"time": {"median_s": 2.0}})
    assert plain.ratio == 1.5 and math.isnan(plain.ci95[0]) and judge([plain])[0][1] == (
        "not resolved")
    assert paired_ratio("s", None, b) is None
    with pytest.raises(ValueError, match="bound must be a positive"):
        paired_ratio("t", a, b, bound=0)


def test_judge_adjusts_across_the_family():
    from dsm_ref.bench.ratios import judge, paired_ratio

    # each point alone: p just under 0.05 against the bound; three of them: Holm says no
    a = {"time": {"median_s": 1.0}, "rounds": [1.0, 1.12, 1.28, 1.08, 1.22]}
    b = {"time": {"median_s": 1.0}, "rounds": [1.0, 1.0, 1.0, 1.0, 1.0]}
    alone = judge([paired_ratio("x", a, b)])
    assert alone[0][0].comparison.p < 0.05 and alone[0][1] == "above"
    family = judge([paired_ratio(str(i), a, b) for i in range(3)])
    assert all(v == "not resolved" for _, v in family)
    assert family[0][0].comparison.p_holm == pytest.approx(min(1.0, 3 * alone[0][0].comparison.p))


def test_dswg_overhead_target_compares_each_point_with_the_static_twin():
    from dsm_ref.bench.targets import speed_targets

    results = [{"mixer": mixer, "dim": dim, "grid": [n, n], "inference": _timed(ms),
                "train": _timed(3 * ms)}
               for mixer, dim, n, ms in (("dsm_static", 64, 14, 1.0), ("dsm_matmul", 64, 14, 1.0),
                                         ("dsm_static", 64, 28, 2.0), ("dsm_matmul", 64, 28, 2.6),
                                         ("gfnet", 64, 28, 9.0))]
    record = {"settings": {"mixers": ["dsm_matmul", "dsm_static", "gfnet"],
                           "modes": ["inference", "train"]}, "results": results}
    rows = [row for row in speed_targets({("mixers", "cpu"): record}, str)
            if row[0].startswith("DSWG adds") and "stage shapes" not in row[0]]
    assert [row[0].split(", ")[1] for row in rows] == ["inference", "train"]
    # the same noise in both arms: the per-round ratios are exact, 1.0 and 1.3
    assert rows[0][1].startswith("shown within at 1/2 points, shown above at 1, 0 not resolved "
                                 "(paired t-test on per-round log time ratios, 5 round(s) per "
                                 "point, Holm-adjusted over the 2 points, 5 %); median 1.15x, "
                                 "worst 1.30x")
    assert rows[0][1].endswith("; C=64 28²)")
    assert rows[0][2] == "not met"
    assert speed_targets({}, str)[0][2] == "not measured"


def test_a_target_no_round_can_resolve_is_not_shown():
    from dsm_ref.bench.targets import speed_targets

    noisy = (1.0, 1.6, 0.7, 1.3, 0.8)
    results = [{"mixer": "dsm_matmul", "dim": 64, "grid": [28, 28], "inference": _timed(1.1)},
               {"mixer": "dsm_static", "dim": 64, "grid": [28, 28],
                "inference": _timed(1.0, noisy)}]
    record = {"settings": {"mixers": ["dsm_matmul", "dsm_static"], "modes": ["inference"]},
              "results": results}
    (row, stages) = [r for r in speed_targets({("mixers", "cpu"): record}, str)
                     if r[0].startswith("DSWG adds")]
    assert "stage shapes" in stages[0] and stages[2] == "not measured"  # no stages record
    assert row[1].startswith("shown within at 0/1 points, shown above at 0, 1 not resolved")
    assert row[2] == "not shown"


def test_gfnet_target_reads_the_default_auto_mixer_when_measured():
    from dsm_ref.bench.targets import speed_targets

    results = [{"mixer": mixer, "dim": 64, "grid": [n, n], "inference": _timed(ms)}
               for mixer, n, ms in (("dsm_auto", 56, 2.0), ("dsm_auto", 224, 9.0),
                                    ("dsm_matmul", 56, 2.0), ("dsm_matmul", 224, 12.0),
                                    ("gfnet", 56, 3.0), ("gfnet", 224, 10.0))]
    record = {"settings": {"mixers": ["dsm_auto", "dsm_matmul", "gfnet"],
                           "modes": ["inference"]}, "results": results}
    rows = {row[0]: row[1:] for row in speed_targets({("mixers", "cpu"): record}, str)}
    auto = rows["DSM mixer (default `dct_method='auto'`) faster than GFNet filter at every size, "
                "CPU fp32"]
    assert auto[0].startswith("shown faster at 2/2 points (inference + train), shown slower at "
                              "0, 0 not resolved")
    assert "worst GFNet/DSM time ratio 1.11" in auto[0] and auto[0].endswith("inference C=64 224²)")
    assert auto[1] == "met"
    matmul = rows["DSM mixer, matmul DCT faster than GFNet filter at every size, CPU fp32"]
    assert matmul[0].startswith("shown faster at 1/2 points") and matmul[1] == "not met"
    # dsm_auto and dsm_matmul run the same code at 56 (below the crossover): the benchmark's
    # own check finds them alike there
    same = rows["same code timed as two arms (`dsm_auto` and `dsm_matmul` below the auto "
                "crossover) told apart at no point, CPU fp32"]
    assert same == ["told apart at 0/1 points (two-sided paired t-test, Holm, 5 %); time ratio "
                    "1.00–1.00", "met"]


def test_round_order_shuffles_every_round_after_the_first():
    from dsm_ref.bench.suites import round_order

    assert round_order(0, 5) == [0, 1, 2, 3, 4]
    orders = [round_order(r, 5, seed=3) for r in range(1, 9)]
    assert all(sorted(o) == [0, 1, 2, 3, 4] for o in orders)
    assert orders == [round_order(r, 5, seed=3) for r in range(1, 9)]  # seeded
    # a rotation would keep each arm's predecessor; a shuffle gives arm 0 several
    predecessors = {o[o.index(0) - 1] for o in orders if o.index(0) > 0}
    assert len(predecessors) > 1
    assert round_order(5, 0) == []


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
            assert len(entry["rounds"]) == 2 and entry["time"]["median_s"] == entry["rounds"][1]
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
    # the report holds measured data only: the targets are computed from the records
    assert "## Speed targets" in text and "GPU numbers are not measured yet" in text
    assert "| DSM mixer faster than GFNet filter at every size, GPU bf16 | not measured" in text
    assert "## The ratios that matter" in text
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
    best = bench.timing._best_peaks(bench.timing._best_peaks(one, two), one)
    assert best["measurements"] == 3
    assert (best["matmul_flop_per_s"], best["copy_bytes_per_s"]) == (2.0, 3.0)


def test_models_bench_keeps_what_it_measured_when_killed(tmp_path, monkeypatch):
    real = bench.time_callable

    def killed_in_round_two(*args, **kwargs):
        if kwargs.get("warmup") == 0:  # rounds after the first time warm models without warm-up
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.suites, "time_callable", killed_in_round_two)
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


# --- the memory reader, the Timer, the mixer arms, precision names and stored records ----------


def _memory_event(ts, nbytes, device_type=0):
    return {"ph": "i", "name": "[memory]", "ts": ts,
            "args": {"Bytes": nbytes, "Device Type": device_type, "Total Allocated": 0}}


def test_cpu_peak_bytes_is_the_running_sum_in_time_order():
    events = [
        _memory_event(3.0, -100),             # frees come after their allocations in time...
        _memory_event(1.0, 100),
        _memory_event(2.0, 50),               # ... though not in list order
        _memory_event(2.5, 10**9, device_type=1),  # another device: ignored
        {"ph": "X", "name": "aten::add", "ts": 2.2, "dur": 1.0, "args": {}},
        _memory_event(4.0, 30),
    ]
    assert bench.cpu_peak_bytes({"traceEvents": events}) == 150
    assert bench.cpu_peak_bytes(events) == 150  # the bare list of events too
    assert bench.cpu_peak_bytes([_memory_event(1.0, -8)]) == 0  # freed what was there at entry


def test_peak_memory_is_none_when_the_trace_cannot_be_read(monkeypatch):
    from torch.profiler import profile

    def broken_export(self, path):
        with open(path, "w") as handle:
            handle.write("{not json")

    monkeypatch.setattr(profile, "export_chrome_trace", broken_export)
    assert bench.peak_memory_bytes(lambda: torch.ones(10).sum(), "cpu") is None


def test_time_callable_counts_its_calls():
    calls = []
    timing = bench.time_callable(lambda: calls.append(1), warmup=0, min_reps=3)
    assert len(calls) == 3 and timing.reps == 3 and timing.inner == 1
    assert timing.first_call_s is None
    timing = bench.time_callable(lambda: torch.ones(10).sum(), warmup=2, min_reps=5,
                                 target_time=0.001)
    assert timing.reps >= 5 and timing.first_call_s > 0  # Timer's blocks, topped up to min_reps


def test_mixer_arms_are_registry_mixers_with_options():
    from dsm_ref.models import TOKEN_MIXERS

    assert set(bench.MIXERS) == set(bench.MIXER_ARMS)
    expected = {  # what each label built before the arms came from the registry
        "dsm_auto": lambda: DynamicSpectrumMixer(C, (H, W)),
        "dsm_matmul": lambda: DynamicSpectrumMixer(C, (H, W), dct_method="matmul"),
        "dsm_fft": lambda: DynamicSpectrumMixer(C, (H, W), dct_method="fft"),
        "dsm_static": lambda: DynamicSpectrumMixer(C, (H, W), dynamic=False,
                                                   dct_method="matmul"),
        "dsm_log": lambda: DynamicSpectrumMixer(C, (H, W), dct_method="matmul", descriptor="log"),
        "dsm_out_of_place": lambda: DynamicSpectrumMixer(C, (H, W), overwrite_spectrum=False),
        "gfnet": lambda: GlobalFilter(C, (H, W)),
        "attention": lambda: Attention(C, (H, W)),
        "dwconv7": lambda: DepthwiseConvMixer(C, (H, W), kernel_size=7),
    }
    assert set(expected) | {"gfnet_upstream"} == set(bench.MIXER_ARMS)
    x = torch.randn(B, H, W, C)
    for label, arm in bench.MIXER_ARMS.items():
        assert arm.token_mixer in TOKEN_MIXERS, label
        if arm.implementation is not None:
            continue  # another implementation of the registry mixer: checked below
        torch.manual_seed(0)
        mine = bench.MIXERS[label](C, (H, W)).eval()
        torch.manual_seed(0)
        before = expected[label]().eval()
        assert repr(mine) == repr(before), label
        with torch.no_grad():
            torch.testing.assert_close(mine(x), before(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="kernel"):
        bench.MixerArm("bad", "dsm", {"kernel_size": 3})


def test_precision_names_accept_both_spellings():
    assert bench.precision_name("bf16") == "bf16"
    assert bench.precision_name("bfloat16") == "bf16"
    assert bench.precision_name(torch.float16) == "fp16"
    assert bench.precision_name("autocast(bfloat16), inputs in bfloat16") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        bench.precision_name("int8")
    from dsm_ref.cli import build_parser

    for spelling, name in (("float32", "fp32"), ("bfloat16", "bf16"), ("fp16", "fp16")):
        args = build_parser().parse_args(["bench", "dct", "--dtype", spelling])
        assert args.dtype == name
    assert bench.Settings(dtype=torch.bfloat16).describe()["precision"] == "bf16"


SCHEMA_1 = {
    "schema_version": 1, "suite": "mixers", "created": "2026-11-26T13:01:45+00:00",
    "command": "python -m dsm_ref bench mixers --device cpu",
    "machine": {"python": "3.11.7", "torch": "2.14", "numpy": "2.4", "scipy": "1.17",
                "torchvision": "0.29", "cpu_model": "AMD EPYC", "logical_cpus": 2,
                "torch_threads": 2,
                "load_average": [1.08, 1.45, 1.64], "git_revision": "f362287 (dsm_ref modified)",
                "mkldnn": True, "load_average_after": [1.96, 1.92, 1.82]},
    "settings": {"device": "cpu", "dtype": "bfloat16", "max_reps": 50,
                 "precision": "autocast(bfloat16), inputs in bfloat16",
                 "mixers": ["dsm_matmul", "gfnet"], "dims": [64]},
    "conventions": {"time": "old wording"},
    "complete": True,
    "results": [{"mixer": name, "dim": 64, "grid": [14, 14], "tokens": 196, "batch": 32,
                 "inference": {"flops": 9e7, "ms_per_image": ms, "x_floor": 8.1,
                               "time": {"median_s": ms * 0.032, "spread": 0.1}}}
                for name, ms in (("dsm_matmul", 0.14044), ("gfnet", 0.1685))],
}


def test_upgrade_record_changes_keys_and_spellings_only():
    new = bench.upgrade_record(SCHEMA_1)
    assert SCHEMA_1["schema_version"] == 1 and "logical_cpus" in SCHEMA_1["machine"]  # a copy
    assert new["schema_version"] == bench.SCHEMA_VERSION
    machine = new["machine"]
    assert machine["cpu_count"] == 2 and "logical_cpus" not in machine
    assert list(machine).index("cpu_count") == list(SCHEMA_1["machine"]).index("logical_cpus")
    assert machine["git"] == {"commit": "f362287", "dirty": True, "diff_sha256": None}
    assert new["settings"]["precision"] == "bf16" and new["settings"]["dtype"] == "bfloat16"
    assert new["settings"]["mixer_arms"] == {
        "dsm_matmul": {"token_mixer": "dsm", "options": {"dct_method": "matmul"}},
        "gfnet": {"token_mixer": "gfnet", "options": {}}}
    for key in ("results", "conventions", "created", "command", "complete"):
        assert new[key] == SCHEMA_1[key], key
    assert bench.upgrade_record(new) == new  # idempotent
    with pytest.raises(ValueError, match="newer"):
        bench.upgrade_record({**SCHEMA_1, "schema_version": bench.SCHEMA_VERSION + 1})


def test_report_renders_from_stored_records_without_measuring(tmp_path):
    path = tmp_path / "cpu_mixers.json"
    path.write_text(json.dumps({**SCHEMA_1, "settings": {**SCHEMA_1["settings"], "grids": [14],
                                                        "modes": ["inference"],
                                                        "tokens": 6272, "fit_min_tokens": 784}}))
    records = bench.load_records([str(tmp_path / "*.json")])
    assert records[0]["schema_version"] == bench.SCHEMA_VERSION
    text = bench.render_report(records)
    assert "git f362287 (uncommitted changes)" in text and "(2 logical CPUs)" in text
    assert "| dsm_matmul | `dsm` | `dct_method='matmul'` |" in text
    assert "time(gfnet) / time(dsm_matmul), median over C (range): 14²: **1.20x**" in text
    assert ("| DSM mixer, matmul DCT faster than GFNet filter at every size, CPU fp32 | shown "
            "faster at " in text)


@pytest.mark.parametrize("size", [(14, 14), (7, 10)])
def test_gfnet_upstream_arm_computes_what_our_gfnet_mixer_computes(size):
    """The same weights give the same output: a time gap between the two arms is overhead of
    ours (checks, the weight resize), not another computation."""
    ours = GlobalFilter(C, size).eval()
    upstream = bench.MIXERS["gfnet_upstream"](C, size).eval()
    with torch.no_grad():
        upstream.complex_weight.copy_(ours.spectral_weight)
        upstream.proj.load_state_dict(ours.proj.state_dict())
    x = torch.randn(B, *size, C)
    with torch.no_grad():
        torch.testing.assert_close(upstream(x), ours(x), rtol=1e-6, atol=1e-7)
    assert bench.MIXER_ARMS["gfnet_upstream"].describe()["implementation"] == (
        "dsm_ref.bench.arms.GFNetUpstreamFilter")
    assert bench.mixer_flops("gfnet_upstream", C, size).total == bench.mixer_flops(
        "gfnet", C, size).total


@pytest.mark.slow
def test_mixers_eager_and_compiled_interleaved_in_one_run(tmp_path):
    """--compile both: every mixer twice, the compiled one labelled <mixer>+compile, timed in
    the same rounds, and BENCHMARKS.md gets the compiled / eager ratio (about 30 s: inductor
    compiles on the CPU)."""
    record = _run_cli(tmp_path, "mixers", "--mixers", "dsm_static", "gfnet", "--dims", "8",
                      "--grids", "7", "--modes", "inference", "--compile", "both",
                      "--compile-mixers", "dsm_static", "--rounds", "2")
    rows = {(r["mixer"], r["compiled"]): r for r in record["results"]}
    assert set(rows) == {("dsm_static", False), ("dsm_static+compile", True), ("gfnet", False)}
    assert all(r["inference"]["ms_per_image"] > 0 for r in rows.values())
    assert record["settings"]["compile_modes"] == [False, True]
    text = bench.render_report([record])
    assert "time(dsm_static, compiled) / time(dsm_static, eager)" in text


def test_an_entry_reports_the_median_over_its_counted_rounds():
    from dsm_ref.bench.suites import _summarize_rounds
    from dsm_ref.bench.timing import Timing

    def one(seconds, first=None):
        return Timing(seconds, seconds, seconds, seconds, seconds, 1, 1, first)

    entry = {"flops": 1e9}
    floor = {"time_s": 0.001}
    timing = _summarize_rounds(entry, [one(9.0, 10.0), one(3.0), one(1.0), one(2.0), one(8.0)],
                               floor, images=4)
    # the warm-up round (9 s) does not count; the median of 3, 1, 2, 8 is 2.5
    assert entry["rounds"] == [9.0, 3.0, 1.0, 2.0, 8.0]
    assert timing.median_s == entry["time"]["median_s"] == 2.5
    assert entry["time"]["reps"] == 4 and entry["time"]["first_call_s"] == 10.0
    assert entry["images_per_s"] == 4 / 2.5 and entry["x_floor"] == 2500


def test_each_size_compiles_from_a_fresh_cache(monkeypatch):
    """All instances of a mixer class share one compiled frame, and torch._dynamo stops
    recompiling after 8 variants: without a reset per size, the later compiled points would
    run eagerly under a "+compile" label. Compiling itself is stubbed out here."""
    resets = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(True))
    monkeypatch.setattr(torch, "compile", lambda module, **_: module)
    settings = bench.Settings(target_time=0.001, progress=False, quick=True, min_reps=1)
    bench.bench_mixers(dims=(8,), grids=(7, 14, 21), tokens=196, mixers=("dsm_static",),
                       modes=("inference",), compile_modes=(False, True), settings=settings)
    assert len(resets) == 3
    resets.clear()
    bench.bench_mixers(dims=(8,), grids=(7, 14), tokens=196, mixers=("dsm_static",),
                       modes=("inference",), settings=settings)
    assert resets == []  # nothing compiled, nothing to reset


def _quick_mixers(tmp_path, grids, **kwargs):
    settings = bench.Settings(target_time=0.001, progress=False, quick=True, min_reps=1)
    return bench.bench_mixers(dims=(8,), grids=grids, tokens=196,
                              mixers=("dsm_static", "gfnet"), modes=("inference",),
                              settings=settings, json_path=tmp_path / "mixers.json", **kwargs)


def test_a_resumed_run_keeps_complete_groups_and_measures_the_rest(tmp_path, monkeypatch):
    """A run killed after its first group is continued: the stored group is kept as it was,
    only the missing ones are timed, and the record says where the kept group came from."""
    _quick_mixers(tmp_path, (7,))
    stored = json.loads((tmp_path / "mixers.json").read_text())
    stored["settings"]["grids"] = [7, 14]  # as if it had been asked for both and stopped
    timed = []
    real = bench.suites._time_in_rounds
    monkeypatch.setattr(bench.suites, "_time_in_rounds",
                        lambda calls, *a, **k: timed.append(len(calls)) or real(calls, *a, **k))
    resumed = _quick_mixers(tmp_path, (7, 14), resume=stored)
    assert timed == [2]  # one group of two arms: 14x14 only
    assert [r["grid"][0] for r in resumed["results"]] == [7, 7, 14, 14]
    kept = resumed["results"][:2]
    assert [r["inference"]["rounds"] for r in kept] == [
        r["inference"]["rounds"] for r in stored["results"]]
    assert all("ms_per_image" in r["inference"] for r in resumed["results"])
    assert resumed["resumed_from"]["groups"] == 1
    assert resumed["resumed_from"]["created"] == stored["created"]


def test_a_group_the_time_budget_cut_is_measured_again(tmp_path):
    stored = {"results": [{"grid": [7, 7], "dim": 8, "mixer": "a", "inference": {"x": 1}},
                          {"grid": [14, 14], "dim": 8, "mixer": "a",
                           "inference": {"skipped": "time budget"}},
                          {"grid": [14, 14], "dim": 8, "mixer": "b", "skipped": "time budget"}]}
    groups = bench.resume.stored_groups(stored, lambda row: (row["grid"][0], row["dim"]))
    assert list(groups) == [(7, 8)]


def test_resume_refuses_another_measurement(tmp_path):
    """Another setting, other timed code or an unknown code state: a clear error, no mix."""
    record = {"suite": "mixers", "settings": {"rounds": 9, "time_budget": None},
              "code_fingerprint": "abc"}
    same = {**record, "settings": {"rounds": 9, "time_budget": 60.0}}
    bench.resume.check_resumable(same, record)  # the time budget may differ
    with pytest.raises(ValueError, match="rounds: stored 5, now 9"):
        bench.resume.check_resumable({**record, "settings": {"rounds": 5}}, record)
    with pytest.raises(ValueError, match="'dct' run"):
        bench.resume.check_resumable({**record, "suite": "dct"}, record)
    with pytest.raises(ValueError, match="timed code changed"):
        bench.resume.check_resumable({**record, "code_fingerprint": "def"}, record)
    dirty = {"suite": "mixers", "settings": record["settings"],
             "machine": {"git": {"commit": "0" * 40, "dirty": True}}}
    with pytest.raises(ValueError, match="no code fingerprint"):
        bench.resume.check_resumable(dirty, record)


def test_the_code_fingerprint_ignores_comments_not_code():
    tree = bench.resume._tree_text
    assert tree("x = 1  # one\n", None) == tree("x = 1\n", None)
    assert tree("x = 1\n", None) != tree("x = 2\n", None)
    source = "def a():\n    return 1\n\ndef b():\n    return 2\n"
    assert tree(source, ("a",)) == tree(source.replace("return 2", "return 3"), ("a",))
    with pytest.raises(ValueError, match="not found"):
        tree(source, ("c",))
    assert len(bench.resume.code_fingerprint()) == 16


def test_cli_resume_needs_the_stored_file(tmp_path, capsys):
    assert main(["bench", "mixers", "--quick", "--resume", "--no-progress"]) == 2
    assert "give --json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["bench", "mixers", "--quick", "--resume", "--json", str(bad),
                 "--no-progress"]) == 2
    assert "not a readable benchmark record" in capsys.readouterr().err


def test_the_report_says_which_groups_a_resumed_run_kept():
    record = {"resumed_from": {"groups": 19, "created": "2026-12-03T13:34:30+00:00",
                               "machine": {"git": {"commit": "dc1c3678", "dirty": False}}},
              "code_fingerprint": "8040131db0dfec7a"}
    text = bench.report._resumed_text(record)
    assert "19 group(s) of arms kept from the run of 2026-12-03T13:34:30+00:00" in text
    assert "git dc1c367" in text and "8040131db0dfec7a" in text
    assert bench.report._resumed_text({}) == ""


def test_stage_shapes_come_from_the_models():
    assert bench.arms.stage_shapes("dsm_s", 224) == [(56, 96), (28, 192), (14, 384), (7, 768)]
    assert bench.arms.stage_shapes("dsm_t", 448, 1) == [(112, 64)]


def test_stages_suite_times_the_arms_at_the_stage_shapes_and_reports_them(tmp_path, capsys):
    path = tmp_path / "stages.json"
    assert main(["bench", "stages", "--quick", "--rounds", "3", "--no-progress",
                 "--json", str(path)]) == 0
    record = json.loads(path.read_text())
    assert record["suite"] == "stages" and record["complete"]
    assert record["settings"]["shapes"] == [[16, 32], [8, 64]]  # dsm_micro's stages at 32 px
    assert record["settings"]["stages"] == [["dsm_micro", 32, 2]]
    assert {r["batch"] for r in record["results"]} == {2}
    assert {r["mixer"] for r in record["results"]} == set(bench.STAGE_ARMS)
    text = bench.render_report([record])
    assert "## Token mixers at the models' stage shapes" in text
    assert "| 16² x 32 | inference |" in text
    assert ("DSWG adds at most 20% to the static mixer's time at the models' stage shapes "
            "(dsm_micro's first 2 stages at 32 px; batch 2), train, CPU fp32") in text
    assert "faster than GFNet filter at the models' stage shapes" in text
    assert "told apart at no point at the models' stage shapes" in text
    for bad, message in ((["--stages", "dsm_s"], "MODEL:IMG_SIZE"),
                         (["--stages", "dsm_s:0"], "positive sizes"),
                         (["--stages", "dsm_x:224"], "unknown model 'dsm_x'"),
                         (["--batch", "0"], "expected a positive integer")):
        with pytest.raises(SystemExit):
            main(["bench", "stages", "--quick", *bad])
        assert message in capsys.readouterr().err


def test_the_throughput_target_pairs_the_models_rounds():
    """``dsm_s`` >= Swin-T: met only when the paired rounds show ``dsm_s`` faster; the same
    medians with rounds that scatter independently are not resolved."""
    from dsm_ref.bench.targets import speed_targets

    def record(dsm, swin):
        results = [{"model": name, "compiled": False,
                    "inference": {**entry, "images_per_s": 16e3 / entry["ms_per_image"]}}
                   for name, entry in (("dsm_s", dsm), ("swin_t", swin))]
        return {("models", "cpu"): {"settings": {"modes": ["inference"]}, "results": results}}

    def row(records):
        (found,) = [r for r in speed_targets(records, str) if r[0].startswith("`dsm_s`")
                    and "CPU" in r[0]]
        return found

    met = row(record(_timed(100.0), _timed(140.0)))
    assert met[2] == "met" and "paired over 5 round(s): 1.40x" in met[1]
    crossed = row(record(_timed(100.0, (1.0, 1.5, 0.7, 1.4, 0.6)),
                         _timed(105.0, (1.5, 0.7, 1.4, 0.6, 1.0))))
    assert crossed[2] == "not shown"


def test_the_stages_record_is_standard_json(tmp_path):
    """No cap on the call time is stored as null, not as JavaScript's Infinity."""
    path = tmp_path / "stages.json"
    bench.bench_stages((("dsm_micro", 32, 1),), ("dsm_static",), batch=1, modes=("inference",),
                       settings=bench.Settings(quick=True, progress=False, target_time=0.001,
                                               min_reps=1), json_path=path)
    text = path.read_text()
    assert "Infinity" not in text and json.loads(text)["settings"]["max_call_time"] is None
