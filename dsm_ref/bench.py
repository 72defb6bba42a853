"""Benchmarks: FLOPs, time and memory of the DCT, the token mixers and the models.

Defined in notebook 07 (complexity and speed). Command line::

    python -m dsm_ref bench dct    --device cpu --json data/bench/cpu_dct.json
    python -m dsm_ref bench mixers --device cpu --json data/bench/cpu_mixers.json
    python -m dsm_ref bench models --device cpu --json data/bench/cpu_models.json
    python -m dsm_ref bench report --inputs data/bench/*.json --out BENCHMARKS.md

Every run writes one JSON file with the machine, the versions, the load average before and after,
the exact command, the conventions below and every point; ``report`` turns such files into
``BENCHMARKS.md`` (no hand-typed numbers). ``--quick`` runs a toy size in seconds (the tests and
notebook 07's live cells use it).

Conventions (also stored in every JSON file, see :data:`CONVENTIONS`):

- **FLOPs** come from ``torch.utils.flop_counter``: 2 per multiply-add of matmuls, convolutions
  and attention; elementwise ops, norms and reductions count 0. It does not count FFTs, so we
  register formulas for them: **5 N log2 N** per complex N-point transform and **2.5 N log2 N**
  per real one (``rfft``/``irfft``, and the real-input ``fft`` of Makhoul's DCT); a multi-axis
  FFT is counted as row-column 1D transforms (real along the last axis, complex along the others
  over the half spectrum). We also register the CPU flash-attention kernel (which the counter
  misses) and fix the grouped-convolution backward (which it over-counts by the group count).
  **MACs** (the peers' "GFLOPs") are FLOPs / 2.
- **Time**: wall clock of one call (synchronised on CUDA), after warm-up; the number of
  repetitions is chosen so that a point takes about ``target_time`` seconds (at least
  ``min_reps``); very short calls are repeated ``inner`` times per repetition. We report the
  median and the quartiles.
- **Memory**: CUDA: ``torch.cuda.max_memory_allocated`` during one call, above the level at entry.
  CPU: the peak of bytes held by PyTorch's CPU allocator during one call, above the level at entry,
  from the profiler's allocation events. Both exclude weights and inputs made before the call, and
  (CPU) workspaces that MKL, oneDNN or pocketfft allocate themselves.
- **Floors**: the time no implementation can beat on this machine: ``max(FLOPs / P, bytes / BW)``
  with ``P`` the throughput of a large matmul and ``BW`` the bandwidth of a large ``copy_``, both
  measured at the start of the run (not datasheet numbers); ``bytes`` counts the unavoidable
  traffic only (inputs, outputs, weights, gradients once each).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import glob
import importlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .dct import KRONECKER_MAX_SIZE, dct2
from .mixers import Attention, DepthwiseConvMixer, DynamicSpectrumMixer, GlobalFilter
from .models import create_model
from .provenance import cpu_model
from .utils import environment_info

__all__ = [
    "CONVENTIONS",
    "DCT_METHODS",
    "LAYOUTS",
    "MIXERS",
    "FlopCount",
    "Timing",
    "fft_flops",
    "count_flops",
    "mixer_flops",
    "model_flops",
    "time_callable",
    "peak_memory_bytes",
    "quiet_stderr",
    "measure_peaks",
    "machine_info",
    "fit_exponent",
    "graph_breaks",
    "build_model",
    "bench_dct",
    "bench_mixers",
    "bench_models",
    "scaling_series",
    "render_report",
    "add_cli_arguments",
    "cli_main",
]

SCHEMA_VERSION = 1

CONVENTIONS = {
    "flops": (
        "torch.utils.flop_counter: 2 FLOPs per multiply-add (matmul, conv, attention); "
        "elementwise ops, norms and reductions count 0. MACs = FLOPs / 2."
    ),
    "fft_flops": (
        "added explicitly: 5 N log2 N per complex N-point FFT, 2.5 N log2 N per real one "
        "(rfft/irfft and Makhoul's real-input fft); multi-axis FFTs as row-column 1D transforms."
    ),
    "flop_fixes": (
        "registered: the CPU flash-attention kernel (forward 2 matmuls, backward 5, as "
        "flop_counter counts the CUDA kernels); grouped conv backward counted with its groups."
    ),
    "time": "median and quartiles of per-repetition wall time after warm-up (CUDA synchronised).",
    "memory": (
        "cuda: max_memory_allocated during one call above the level at entry; cpu: peak of "
        "bytes held by PyTorch's CPU allocator during one call above the level at entry "
        "(profiler allocation events). Weights and inputs made before the call are excluded."
    ),
    "floor": (
        "max(FLOPs / P, bytes / BW): P = measured large-matmul throughput, BW = measured "
        "large-copy bandwidth (read + write), each the best of the measurements made at the "
        "start and end of the run (and per round for models); bytes = inputs, outputs, weights "
        "(and gradients) once each."
    ),
}

# --- FLOP counting ------------------------------------------------------------------------------


def fft_flops(n: int, *, real: bool = False) -> float:
    """FLOPs of one ``n``-point FFT: ``5 n log2 n`` (complex) or ``2.5 n log2 n`` (real)."""
    if n <= 1:
        return 0.0
    return (2.5 if real else 5.0) * n * math.log2(n)


def _axes(shape: Sequence[int], dims: Sequence[int]) -> list[int]:
    return sorted(d % len(shape) for d in dims)


def _fft_r2c_flop(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    """``rfftn`` (or a real-input ``fft``): real along the last axis, complex along the others
    over the half spectrum."""
    axes = _axes(x_shape, dim)
    numel = math.prod(x_shape)
    n_last = x_shape[axes[-1]]
    total = numel / n_last * fft_flops(n_last, real=True)
    half = numel / n_last * (n_last // 2 + 1)
    for axis in axes[:-1]:
        total += half / x_shape[axis] * fft_flops(x_shape[axis])
    return round(total)


def _fft_c2r_flop(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    """``irfftn``: complex along the leading axes (half spectrum), real along the last."""
    axes = _axes(x_shape, dim)
    total = 0.0
    for axis in axes[:-1]:
        total += math.prod(x_shape) / x_shape[axis] * fft_flops(x_shape[axis])
    n_last = out_shape[axes[-1]]
    total += math.prod(out_shape) / n_last * fft_flops(n_last, real=True)
    return round(total)


def _fft_c2c_flop(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    """Complex FFT along each of ``dim``."""
    numel = math.prod(x_shape)
    return round(sum(numel / x_shape[a] * fft_flops(x_shape[a]) for a in _axes(x_shape, dim)))


def _sdpa_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    """Two batched matmuls: ``Q K^T`` and ``P V``."""
    b, h, s_q, d_q = q_shape
    s_k, d_v = k_shape[-2], v_shape[-1]
    return 2 * b * h * s_q * s_k * (d_q + d_v)


def _sdpa_backward_flop(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None,
                        **kwargs) -> int:
    """Five batched matmuls, as flop_counter counts the CUDA kernels: recompute ``Q K^T``, then
    ``dP = dO V^T``, ``dV = P^T dO``, ``dQ = dS K``, ``dK = dS^T Q``."""
    b, h, s_q, d_q = q_shape
    s_k, d_v = k_shape[-2], v_shape[-1]
    return 2 * b * h * s_q * s_k * (3 * d_q + 2 * d_v)


def _conv_backward_flop(grad_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                        transposed, _output_padding, _groups, output_mask, out_shape=None,
                        **kwargs) -> int:
    """Each of grad-input and grad-weight costs one forward convolution (groups included: the
    weight ``(C_out, C_in / groups, k, k)`` carries them)."""
    spatial = (x_shape if transposed else grad_shape)[2:]
    forward = 2 * x_shape[0] * math.prod(w_shape) * math.prod(spatial)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    aten = torch.ops.aten
    wanted = {
        "_fft_r2c": _fft_r2c_flop,
        "_fft_c2r": _fft_c2r_flop,
        "_fft_c2c": _fft_c2c_flop,
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_flop,
        "convolution_backward": _conv_backward_flop,
    }
    return {getattr(aten, name): fn for name, fn in wanted.items() if hasattr(aten, name)}


EXTRA_FLOP_FORMULAS = _extra_flop_formulas()


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call: ``total`` (2 per multiply-add, FFTs included), of which ``fft`` from
    FFTs; ``by_op`` per aten op."""

    total: int
    fft: int
    by_op: dict[str, int]

    @property
    def macs(self) -> float:
        """Multiply-adds, the peers' "FLOPs": ``total / 2``."""
        return self.total / 2


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """Runs ``fn()`` under ``torch.utils.flop_counter`` with the FFT and attention formulas of
    this module, e.g. ``count_flops(lambda: mixer(x))``. Works on ``meta`` tensors (no compute)."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        fn()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    fft = sum(n for op, n in by_op.items() if "_fft_" in op)
    return FlopCount(total=sum(by_op.values()), fft=fft, by_op=by_op)


# --- timing and memory --------------------------------------------------------------------------


@dataclass
class Timing:
    """Per-call wall time in seconds: median, quartiles and range over ``reps`` repetitions of
    ``inner`` calls each; ``first_call_s`` is the very first call (compilation, allocation),
    ``None`` when there was no warm-up."""

    median_s: float
    q1_s: float
    q3_s: float
    min_s: float
    max_s: float
    reps: int
    inner: int
    first_call_s: float | None

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3_s - self.q1_s) / self.median_s if self.median_s > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "spread": self.spread}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(
    fn: Callable[[], Any],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 2,
    min_reps: int = 3,
    max_reps: int = 50,
    target_time: float = 0.5,
    min_rep_time: float = 0.005,
) -> Timing:
    """Times ``fn()``: ``warmup`` untimed calls, then ``reps`` repetitions chosen so that the
    whole takes about ``target_time`` s, clamped to ``[min_reps, max_reps]``. A call shorter than
    ``min_rep_time`` is repeated ``inner`` times per repetition (timer and sync overhead).
    ``warmup=0`` (an already warm ``fn``) times exactly ``min_reps`` single calls."""
    device = torch.device(device)
    first = estimate = None
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        estimate = time.perf_counter() - start
        first = estimate if first is None else first
    if estimate is None:
        inner, reps = 1, max(1, min_reps)
    else:
        estimate = max(estimate, 1e-7)
        inner = max(1, math.ceil(min_rep_time / estimate))
        reps = min(max_reps, max(min_reps, math.ceil(target_time / (estimate * inner))))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        _synchronize(device)
        times.append((time.perf_counter() - start) / inner)
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if reps > 1 else times * 3
    return Timing(
        median_s=statistics.median(times), q1_s=q1, q3_s=q3, min_s=min(times), max_s=max(times),
        reps=reps, inner=inner, first_call_s=first,
    )


@contextlib.contextmanager
def quiet_stderr():
    """Silences file descriptor 2 for the duration: the profiler's C++ log lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int | None:
    """Peak bytes allocated by PyTorch during one call of ``fn``, above the level at entry.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the running sum of the profiler's allocation
    events (alloc +, free -), in time order. ``None`` where neither is available.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    if device.type != "cpu":
        return None
    from torch.profiler import ProfilerActivity, profile

    try:
        with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
            fn()
        events = [e for e in p.profiler.kineto_results.events() if e.name() == "[memory]"]
    except Exception:  # the profiler's event API is not public; report "not measured"
        return None
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        if "CPU" not in str(event.device_type()):
            continue
        current += event.nbytes()
        peak = max(peak, current)
    return int(peak)


def measure_peaks(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *, quick: bool = False
) -> dict[str, Any]:
    """Achievable throughput of a large square matmul (FLOP/s) and bandwidth of a large
    ``copy_`` (bytes/s, read + write) on ``device`` in ``dtype``: the denominators of the
    floors. Measured (the fastest repetition, since a peak is the best the machine does),
    not datasheet numbers."""
    device = torch.device(device)
    if device.type == "cuda":
        n, copy_bytes = (2048, 64 * 2**20) if quick else (8192, 1024 * 2**20)
    else:
        n, copy_bytes = (384, 8 * 2**20) if quick else (2048, 256 * 2**20)
    target = 0.05 if quick else 0.5
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    mm = time_callable(lambda: a @ b, device, target_time=target)
    src = torch.empty(copy_bytes // 4, device=device).normal_()
    dst = torch.empty_like(src)
    copy = time_callable(lambda: dst.copy_(src), device, target_time=target)
    return {
        "matmul_flop_per_s": 2 * n**3 / mm.min_s,
        "matmul_size": n,
        "copy_bytes_per_s": 2 * copy_bytes / copy.min_s,
        "copy_mib": copy_bytes // 2**20,
        "dtype": str(dtype).replace("torch.", ""),
        "how": f"fastest of repeated {n}x{n} @ {n}x{n} matmuls and {copy_bytes // 2**20} MiB "
        "copy_ calls (the best this machine did)",
    }


def _floor(flops: float, nbytes: float, peaks: dict[str, Any]) -> dict[str, Any]:
    compute = flops / peaks["matmul_flop_per_s"]
    memory = nbytes / peaks["copy_bytes_per_s"]
    return {
        "time_s": max(compute, memory),
        "compute_s": compute,
        "memory_s": memory,
        "flops": int(flops),
        "bytes": int(nbytes),
        "bound": "compute" if compute >= memory else "memory",
    }


def _best_peaks(*measured: dict[str, Any]) -> dict[str, Any]:
    """The highest throughput and bandwidth of several :func:`measure_peaks` calls: a peak is the
    best the machine did, and other people's load only lowers a measurement."""
    best = dict(measured[0])
    for key in ("matmul_flop_per_s", "copy_bytes_per_s"):
        best[key] = max(m[key] for m in measured)
    best["measurements"] = sum(m.get("measurements", 1) for m in measured)
    return best


def _refloor(value: Any, peaks: dict[str, Any]) -> None:
    """Recomputes every ``floor`` / ``x_floor`` in a record with the final ``peaks``."""
    if isinstance(value, list):
        for item in value:
            _refloor(item, peaks)
    elif isinstance(value, dict):
        if "floor" in value and "time" in value:
            floor = value["floor"]
            value["floor"] = _floor(floor["flops"], floor["bytes"], peaks)
            value["x_floor"] = value["time"]["median_s"] / value["floor"]["time_s"]
        for item in value.values():
            if isinstance(item, (dict, list)):
                _refloor(item, peaks)


# --- provenance ---------------------------------------------------------------------------------


def _git_revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "dsm_ref"], cwd=root,
                               text=True, capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' (dsm_ref modified)' if dirty else ''}"


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Versions, CPU/GPU, threads, load average and git revision, for result provenance."""
    device = torch.device(device)
    info: dict[str, Any] = dict(environment_info())
    info.update(
        cpu_model=cpu_model(),
        logical_cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        load_average=_load_average(),
        git_revision=_git_revision(),
        mkldnn=bool(torch.backends.mkldnn.is_available()),
    )
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
        )
    return info


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x``: ``y ~ x ** slope``."""
    if len(x) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)
    return float(slope)


# --- the suites ---------------------------------------------------------------------------------

DCT_METHODS = ("matmul", "fft", "scipy")
LAYOUTS = ("channels_last", "channels_first")

MIXERS: dict[str, Callable[..., nn.Module]] = {
    "dsm_matmul": partial(DynamicSpectrumMixer, dct_method="matmul"),
    "dsm_fft": partial(DynamicSpectrumMixer, dct_method="fft"),
    "dsm_static": partial(DynamicSpectrumMixer, dynamic=False),
    "dsm_log_of_mean": partial(DynamicSpectrumMixer, descriptor="log_of_mean"),
    "gfnet": GlobalFilter,
    "attention": Attention,
    "dwconv7": partial(DepthwiseConvMixer, kernel_size=7),
}
"""Benchmarked mixers, each ``Mixer(dim, input_size)``. ``dsm_static`` (no DSWG) shows what the
band selector costs; ``dsm_matmul`` is the default DSM mixer; ``dsm_log_of_mean`` is it with the
DSWG descriptor that takes one logarithm per channel group instead of one per channel."""

TORCHVISION_MODELS = ("swin_t", "convnext_tiny")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Settings:
    """What every suite shares: device, dtype, timing and bookkeeping options."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    warmup: int = 2
    min_reps: int = 3
    max_reps: int = 50
    target_time: float = 0.5
    time_budget: float | None = None
    progress: bool = True
    quick: bool = False
    seed: int = 0

    def timing(self, fn: Callable[[], Any]) -> Timing:
        return time_callable(fn, self.device, warmup=self.warmup, min_reps=self.min_reps,
                             max_reps=self.max_reps, target_time=self.target_time)

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.device), "dtype": _dtype_name(self.dtype), "warmup": self.warmup,
            "min_reps": self.min_reps, "max_reps": self.max_reps,
            "target_time": self.target_time, "time_budget": self.time_budget,
            "quick": self.quick, "seed": self.seed,
            "precision": "fp32" if self.dtype == torch.float32 else
            f"autocast({_dtype_name(self.dtype)}), inputs in {_dtype_name(self.dtype)}",
        }


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


class _Budget:
    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.perf_counter() + seconds

    def exceeded(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline


def _progress(items: Sequence[Any], settings: Settings, desc: str) -> Iterable[Any]:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not settings.progress, leave=False)


def _new_record(suite: str, settings: Settings, options: dict[str, Any],
                command: str | None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": suite,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(settings.device),
        "settings": {**settings.describe(), **options},
        "conventions": CONVENTIONS,
        "complete": False,
        "results": [],
    }


def _finish(record: dict[str, Any], peaks: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Measures the peaks once more, keeps the best, recomputes the floors, closes the record."""
    peaks = _best_peaks(peaks, measure_peaks(settings.device, settings.dtype,
                                             quick=settings.quick))
    _refloor(record["results"], peaks)
    record["peaks"] = peaks
    record["machine"]["load_average_after"] = _load_average()
    record["complete"] = not any(
        "time budget" in (r.get("skipped"), *(e.get("skipped") for e in r.values()
                                              if isinstance(e, dict)))
        for r in record["results"])
    return record


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _rounded(value: Any, digits: int = 5) -> Any:
    """Floats to ``digits`` significant digits, recursively (keeps the JSON files small)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return round(value, digits - 1 - math.floor(math.log10(abs(value))))
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def _save(record: dict[str, Any], path: str | Path | None) -> None:
    """Writes ``record`` as JSON (atomically: a partial run never leaves a broken file)."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_rounded(record), indent=1, default=str) + "\n")
    tmp.replace(path)


# DCT --------------------------------------------------------------------------------------------


def _time_in_rounds(calls: Sequence[tuple[dict[str, Any], Callable[[], Any]]], rounds: int,
                    settings: Settings, *, memory: bool = False) -> list[list[Timing]]:
    """Times every ``(entry, run)`` in turn, ``rounds`` times: the first round with warm-up and
    adaptive repetitions (and the peak memory, with ``memory``), the others without warm-up.
    A burst of someone else's load then slows one round of every call rather than every round
    of one call, so ratios between the calls are measured under the same conditions. A call
    that runs out of memory is marked skipped in its entry."""
    timings: list[list[Timing]] = [[] for _ in calls]
    for round_index in range(rounds):
        for i, (entry, run) in enumerate(calls):
            if entry.get("skipped"):
                continue
            try:
                if round_index == 0:
                    timings[i].append(settings.timing(run))
                    if memory:
                        entry["peak_memory_bytes"] = peak_memory_bytes(run, settings.device)
                else:
                    timings[i].append(time_callable(
                        run, settings.device, warmup=0, min_reps=settings.min_reps,
                        max_reps=settings.max_reps, target_time=settings.target_time))
            except RuntimeError as err:
                if not _is_oom(err):
                    raise
                entry["skipped"] = "out of memory"
                _release(settings.device)
    return timings


def _summarize_rounds(entry: dict[str, Any], measured: list[Timing], floor: dict[str, Any],
                      *, images: int | None = None) -> Timing:
    """Fills ``entry`` from its timing rounds: the fastest round counts (someone else's load
    only slows a round down) and every round's median is kept; ``images`` per call gives
    images/s. Returns the fastest round."""
    timing = min(measured, key=lambda t: t.median_s)
    flops = entry.get("flops")
    entry.update(
        time=timing.to_dict(),
        rounds=[t.median_s for t in measured],
        gflop_per_s=None if flops is None else flops / timing.median_s / 1e9,
        floor=floor,
        x_floor=timing.median_s / floor["time_s"],
    )
    if images is not None:
        entry["images_per_s"] = images / timing.median_s
    return timing


def bench_dct(
    sizes: Sequence[int] = (7, 14, 28, 56, 112),
    *,
    channels: int = 64,
    tokens: int = 32768,
    layouts: Sequence[str] = LAYOUTS,
    methods: Sequence[str] = DCT_METHODS,
    rounds: int = 1,
    settings: Settings | None = None,
    json_path: str | Path | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """2D DCT-II of ``(B, N, N, C)`` (channels-last, dims 1, 2) or ``(B, C, N, N)`` blocks:
    ``dsm_ref``'s matmul and FFT (Makhoul) paths and ``scipy.fft.dctn`` (CPU, as many workers
    as torch has threads). ``B = max(1, tokens // N**2)``. Each point also reports the max
    error against ``scipy.fft.dctn`` in float64, absolute and relative to ``max |X|``.

    The methods of one ``(N, layout)`` transform the same input and are timed in turn,
    ``rounds`` times; each reports its fastest round and every round's median."""
    import scipy.fft

    settings = settings or Settings()
    record = _new_record("dct", settings, dict(sizes=list(sizes), channels=channels,
                                               tokens=tokens, layouts=list(layouts),
                                               methods=list(methods), rounds=rounds),
                         command)
    peaks = measure_peaks(settings.device, settings.dtype, quick=settings.quick)
    budget = _Budget(settings.time_budget)
    generator = torch.Generator().manual_seed(settings.seed)
    groups = [(n, layout) for n in sizes for layout in layouts]
    workers = torch.get_num_threads()
    itemsize = torch.empty((), dtype=settings.dtype).element_size()
    for n, layout in _progress(groups, settings, "dct"):
        batch = max(1, tokens // (n * n))
        shape = (batch, n, n, channels) if layout == "channels_last" else (batch, channels, n, n)
        dims = (1, 2) if layout == "channels_last" else (2, 3)
        x64 = torch.randn(shape, dtype=torch.float64, generator=generator)
        reference = scipy.fft.dctn(x64.numpy(), type=2, norm="ortho", axes=dims)
        nbytes = 2 * math.prod(shape) * itemsize
        # One floor per transform, whatever the method: the fewest FLOPs we count for it (the
        # FFT path's) and the unavoidable traffic (read the input, write the output).
        with torch.device("meta"):
            meta_x = torch.empty(shape, dtype=torch.float32)
        fewest = count_flops(lambda meta_x=meta_x, dims=dims: dct2(meta_x, dims, method="fft"))
        calls: list[tuple[dict[str, Any], Callable[[], Any]]] = []
        for method in methods:
            row: dict[str, Any] = dict(n=n, layout=layout, method=method, batch=batch,
                                       channels=channels, shape=list(shape))
            record["results"].append(row)
            if budget.exceeded():
                row["skipped"] = "time budget"
                continue
            if method == "scipy" and (settings.device.type != "cpu"
                                      or settings.dtype not in (torch.float32, torch.float64)):
                row["skipped"] = "scipy runs on the CPU in float32/float64 only"
                continue
            if method == "scipy":
                numpy_dtype = np.float32 if settings.dtype == torch.float32 else np.float64
                array = x64.numpy().astype(numpy_dtype)

                def run(array=array, dims=dims):
                    return scipy.fft.dctn(array, type=2, norm="ortho", axes=dims,
                                          workers=workers)

                row["flops"] = None
            else:
                x = x64.to(settings.device, settings.dtype)

                def run(x=x, dims=dims, method=method):
                    return dct2(x, dims=dims, method=method)

                row["flops"] = count_flops(lambda meta_x=meta_x, dims=dims, method=method:
                                           dct2(meta_x, dims=dims, method=method)).total
            output = torch.as_tensor(run())
            error = (output.detach().double().cpu() - torch.as_tensor(reference)).abs().max()
            row.update(max_abs_error=error.item(),
                       max_rel_error=error.item() / float(np.abs(reference).max()))
            calls.append((row, run))
        timings = _time_in_rounds(calls, rounds, settings)
        for (row, _), measured in zip(calls, timings, strict=True):
            if row.get("skipped") or not measured:
                continue
            timing = _summarize_rounds(row, measured, _floor(fewest.total, nbytes, peaks))
            row["gbyte_per_s"] = nbytes / timing.median_s / 1e9
        calls = timings = run = None
        _save(record, json_path)
    _finish(record, peaks, settings)
    _save(record, json_path)
    return record


# mixers -----------------------------------------------------------------------------------------


def mixer_flops(name: str, dim: int, size: tuple[int, int], batch: int = 1,
                train: bool = False) -> FlopCount:
    """FLOPs of one call of mixer ``name`` (a key of :data:`MIXERS`) on ``(batch, *size, dim)``:
    forward, plus backward when ``train``. Counted on ``meta`` tensors: nothing is computed."""
    with torch.device("meta"):
        mixer = MIXERS[name](dim, size)
        x = torch.empty(batch, *size, dim, requires_grad=train)

    def run():
        y = mixer(x)
        if train:
            y.backward(torch.empty_like(y))

    return count_flops(run)


def _mixer_bytes(batch: int, size: tuple[int, int], dim: int, params: int, itemsize: int,
                 train: bool) -> int:
    activation = batch * size[0] * size[1] * dim
    # inference: read x, write y, read the weights; training adds read dy, write dx, write dW.
    return itemsize * ((4 if train else 2) * activation + (2 if train else 1) * params)


def bench_mixers(
    mixers: Sequence[str] = tuple(MIXERS),
    dims: Sequence[int] = (64, 128, 256, 512),
    grids: Sequence[int] = (14, 28, 56, 112, 224),
    *,
    tokens: int = 6272,
    modes: Sequence[str] = ("inference", "train"),
    compile: bool = False,
    max_call_time: float = 2.0,
    fit_min_tokens: int = 784,
    rounds: int = 1,
    settings: Settings | None = None,
    json_path: str | Path | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Every mixer at every ``C`` in ``dims`` and ``N x N`` grid in ``grids``, with the batch
    ``B = max(1, tokens // N**2)`` (times are also reported per image). ``inference``: forward
    under ``no_grad``; ``train``: forward + backward (input and weight gradients).

    A point is skipped when its counted FLOPs at the measured matmul peak would take more than
    ``max_call_time`` s per call (global attention at large grids), or when it runs out of
    memory. ``fits`` holds the exponent of per-image time and FLOPs against the number of
    tokens, fitted over the grids with at least ``fit_min_tokens`` tokens.

    The mixers of one ``(C, N)`` are timed in turn, ``rounds`` times (the first round with
    warm-up and adaptive repetitions, the others without warm-up); each reports its fastest
    round and every round's median, so the ratios between mixers at one size are measured
    under the same conditions.
    """
    settings = settings or Settings()
    unknown = sorted(set(mixers) - set(MIXERS))
    if unknown:
        raise ValueError(f"unknown mixers {unknown}; expected some of {sorted(MIXERS)}")
    record = _new_record("mixers", settings, dict(
        mixers=list(mixers), dims=list(dims), grids=list(grids), tokens=tokens,
        modes=list(modes), compile=compile, max_call_time=max_call_time,
        fit_min_tokens=fit_min_tokens, rounds=rounds), command)
    peaks = measure_peaks(settings.device, settings.dtype, quick=settings.quick)
    budget = _Budget(settings.time_budget)
    device, dtype = settings.device, settings.dtype
    itemsize = torch.empty((), dtype=dtype).element_size()
    groups = [(n, c) for n in grids for c in dims]
    for n, dim in _progress(groups, settings, "mixers"):
        size, batch = (n, n), max(1, tokens // (n * n))
        calls: list[tuple[dict[str, Any], Callable[[], Any], float]] = []  # (entry, run, bytes)
        for name in mixers:
            row: dict[str, Any] = dict(mixer=name, dim=dim, grid=[n, n], tokens=n * n,
                                       batch=batch)
            record["results"].append(row)
            if budget.exceeded():
                row["skipped"] = "time budget"
                continue
            torch.manual_seed(settings.seed)
            mixer = MIXERS[name](dim, size).to(device)
            row["params"] = sum(p.numel() for p in mixer.parameters())
            runner = torch.compile(mixer) if compile else mixer
            x = torch.randn(batch, *size, dim, device=device, dtype=dtype)
            for mode in modes:
                train = mode == "train"
                flops = mixer_flops(name, dim, size, batch, train)
                entry: dict[str, Any] = dict(flops=flops.total, flops_fft=flops.fft)
                row[mode] = entry
                estimate = flops.total / peaks["matmul_flop_per_s"]
                if estimate > max_call_time:
                    entry["skipped"] = (f"{flops.total / 1e9:.0f} GFLOP per call: over "
                                        f"{max_call_time:g} s at the measured matmul peak")
                    continue
                if train:
                    x_in = x.detach().clone().requires_grad_(True)
                    with settings.autocast():
                        grad = torch.randn_like(runner(x_in))

                    def run(x_in=x_in, grad=grad, mixer=mixer, runner=runner):
                        mixer.zero_grad(set_to_none=True)
                        x_in.grad = None
                        with settings.autocast():
                            y = runner(x_in)
                        y.backward(grad)
                else:
                    def run(x=x, runner=runner):
                        with torch.no_grad(), settings.autocast():
                            return runner(x)
                calls.append((entry, run, _mixer_bytes(batch, size, dim, row["params"],
                                                       itemsize, train)))
        timings = _time_in_rounds([(entry, run) for entry, run, _ in calls], rounds, settings,
                                  memory=True)
        for (entry, _, nbytes), measured in zip(calls, timings, strict=True):
            if entry.get("skipped") or not measured:
                continue
            timing = _summarize_rounds(entry, measured, _floor(entry["flops"], nbytes, peaks),
                                       images=batch)
            entry["ms_per_image"] = timing.median_s / batch * 1e3
        calls = timings = mixer = runner = x = run = None  # free before the next size
        _release(device)
        _save(record, json_path)
    record["fits"] = _scaling_fits(record["results"], modes, fit_min_tokens)
    if not settings.quick:
        record["graph_breaks"] = {name: graph_breaks(name) for name in mixers
                                  if name.startswith("dsm") or name == "gfnet"}
    _finish(record, peaks, settings)
    _save(record, json_path)
    return record


def graph_breaks(name: str, dim: int = 32, size: tuple[int, int] = (14, 14)) -> dict[str, Any]:
    """What ``torch.compile`` sees in mixer ``name``: graphs and graph breaks
    (``torch._dynamo.explain``; nothing is compiled). 1 graph and 0 breaks = compile-friendly."""
    try:
        import torch._dynamo

        explanation = torch._dynamo.explain(MIXERS[name](dim, size))(torch.randn(2, *size, dim))
    except Exception as err:  # report, do not fail a benchmark run
        return {"error": f"{type(err).__name__}: {err}"[:300]}
    return {"graphs": explanation.graph_count, "graph_breaks": explanation.graph_break_count,
            "reasons": [str(b.reason)[:200] for b in explanation.break_reasons]}


def scaling_series(record: dict[str, Any], mixer: str, dim: int, mode: str = "inference",
                   key: str = "ms_per_image") -> tuple[list[int], list[float]]:
    """``(tokens, values)`` of one mixer at one ``C`` from a ``bench mixers`` record.

    ``key``: ``"ms_per_image"``, ``"flops_per_image"``, ``"memory_per_image"`` (bytes) or any
    field of a mode's entry. Skipped points are left out."""
    tokens, values = [], []
    for row in record["results"]:
        entry = row.get(mode) or {}
        if row["mixer"] != mixer or row["dim"] != dim or row.get("skipped"):
            continue
        if key == "flops_per_image":
            value = entry.get("flops", 0) / row["batch"] if "flops" in entry else None
        elif key == "memory_per_image":
            memory = entry.get("peak_memory_bytes")
            value = None if memory is None or "time" not in entry else memory / row["batch"]
        else:
            value = entry.get(key) if "time" in entry else None
        if value is not None:
            tokens.append(row["tokens"])
            values.append(value)
    return tokens, values


def _scaling_fits(results: list[dict[str, Any]], modes: Sequence[str],
                  min_tokens: int) -> list[dict[str, Any]]:
    record = {"results": results}
    fits = []
    for mixer in dict.fromkeys(r["mixer"] for r in results):
        for dim in dict.fromkeys(r["dim"] for r in results if r["mixer"] == mixer):
            for mode in modes:
                fit: dict[str, Any] = dict(mixer=mixer, dim=dim, mode=mode, min_tokens=min_tokens)
                for key, name in (("ms_per_image", "time"), ("flops_per_image", "flops")):
                    tokens, values = scaling_series(record, mixer, dim, mode, key)
                    kept = [(t, v) for t, v in zip(tokens, values, strict=True)
                            if t >= min_tokens and v > 0]
                    fit[f"{name}_exponent"] = (fit_exponent(*zip(*kept, strict=True))
                                               if len(kept) >= 2 else None)
                    fit[f"{name}_tokens"] = [t for t, _ in kept]
                fits.append(fit)
    return fits


# models -----------------------------------------------------------------------------------------


def build_model(name: str, img_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """A registered DSM variant (``"dsm_s"``), the same body with another token mixer
    (``"dsm_s-gfnet"``: ``create_model("dsm_s", token_mixer="gfnet")``), or a torchvision model
    (``"swin_t"``, ``"convnext_tiny"``, random weights)."""
    if name in TORCHVISION_MODELS:
        models = importlib.import_module("torchvision.models")
        return getattr(models, name)(weights=None, num_classes=num_classes)
    base, _, mixer = name.partition("-")
    overrides: dict[str, Any] = dict(img_size=img_size, num_classes=num_classes)
    if mixer:
        overrides["token_mixer"] = mixer
    return create_model(base, **overrides)


def model_flops(name: str, img_size: int = 224, train: bool = False) -> FlopCount:
    """FLOPs of one image through model ``name`` (see :func:`build_model`): forward, plus the
    loss and backward when ``train``. Counted on ``meta`` tensors: nothing is computed."""
    with torch.device("meta"):
        model = build_model(name, img_size)
        x = torch.empty(1, 3, img_size, img_size)
        target = torch.zeros(1, dtype=torch.long)
    model.train(train)

    def run():
        if train:
            F.cross_entropy(model(x), target).backward()
        else:
            model(x)

    return count_flops(run)


def bench_models(
    models: Sequence[str] = ("dsm_t", "dsm_s", "dsm_s-gfnet", "swin_t", "convnext_tiny"),
    *,
    img_size: int = 224,
    batch: int = 16,
    train_batch: int = 8,
    modes: Sequence[str] = ("inference", "train"),
    compile_modes: Sequence[bool] = (False,),
    compile_models: Sequence[str] | None = None,
    rounds: int = 3,
    settings: Settings | None = None,
    json_path: str | Path | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Params, FLOPs, inference and training throughput of whole models at ``img_size``.

    ``inference``: ``model.eval()`` forward under ``no_grad`` at ``batch``; ``train``: one
    ``model.train()`` step at ``train_batch`` (forward, cross-entropy, backward, AdamW step).
    ``compile_modes``: ``(False,)`` eager, ``(False, True)`` also ``torch.compile`` (default
    options) for the models in ``compile_models`` (all when ``None``); the compile time is in
    the first round's ``first_call_s``. Floors are compute floors (FLOPs / matmul peak).

    All models are built first, then timed in ``rounds`` interleaved rounds (model 1, 2, ...,
    then again): the first with warm-up and adaptive repetitions, the others with ``min_reps``
    calls each (``--min-reps 1``: call-by-call interleaving). Each model reports its fastest
    round (that round's median and quartiles) and every round's median: on a shared machine
    someone else's work can only slow a round down, and interleaving spreads such bursts over all
    models instead of one.
    """
    settings = settings or Settings()
    device = settings.device
    record = _new_record("models", settings, dict(
        models=list(models), img_size=img_size, batch=batch, train_batch=train_batch,
        modes=list(modes), compile_modes=list(compile_modes), rounds=rounds,
        compile_models=None if compile_models is None else list(compile_models)), command)
    peaks = measure_peaks(device, settings.dtype, quick=settings.quick)
    budget = _Budget(settings.time_budget)
    # Eager models first: when the time budget runs out, the compiled points are the ones lost.
    points = [(name, compiled) for compiled in sorted(compile_modes) for name in models
              if not compiled or compile_models is None or name in compile_models]
    calls: list[tuple[dict[str, Any], int, Callable[[], Any]]] = []  # (entry, batch, run)
    for name, compiled in points:
        row: dict[str, Any] = dict(model=name, img_size=img_size, compiled=compiled)
        record["results"].append(row)
        torch.manual_seed(settings.seed)
        model = build_model(name, img_size).to(device)
        row["params"] = sum(p.numel() for p in model.parameters())
        forward = model_flops(name, img_size, train=False)
        row.update(flops_per_image=forward.total, flops_fft_per_image=forward.fft,
                   gmacs_per_image=forward.macs / 1e9)
        runner = torch.compile(model) if compiled else model
        for mode in modes:
            train = mode == "train"
            size = train_batch if train else batch
            x = torch.randn(size, 3, img_size, img_size, device=device)
            row[mode] = dict(batch=size, flops=model_flops(name, img_size, train).total * size)
            if train:
                target = torch.randint(0, 1000, (size,), device=device)
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

                def run(x=x, target=target, optimizer=optimizer, model=model, runner=runner):
                    model.train()
                    optimizer.zero_grad(set_to_none=True)
                    with settings.autocast():
                        loss = F.cross_entropy(runner(x), target)
                    loss.backward()
                    optimizer.step()
            else:
                def run(x=x, model=model, runner=runner):
                    model.eval()
                    with torch.no_grad(), settings.autocast():
                        return runner(x)
            calls.append((row[mode], size, run))
    timings: list[list[Timing]] = [[] for _ in calls]
    schedule = [(r, i) for r in range(rounds) for i in range(len(calls))]
    for round_index, i in _progress(schedule, settings, "models"):
        if i == 0 and round_index > 0:  # one peak measurement per round, the best is kept
            peaks = _best_peaks(peaks, measure_peaks(device, settings.dtype, quick=settings.quick))
        entry, size, run = calls[i]
        if entry.get("skipped"):
            continue
        if budget.exceeded():
            if not timings[i]:
                entry["skipped"] = "time budget"
            continue
        try:
            if round_index == 0:  # warm-up, adaptive repetitions, memory
                timings[i].append(settings.timing(run))
                entry["peak_memory_bytes"] = peak_memory_bytes(run, device)
            else:  # already warm: min_reps calls, so rounds interleave call by call
                timings[i].append(time_callable(run, device, warmup=0,
                                                min_reps=settings.min_reps))
        except RuntimeError as err:
            if not _is_oom(err):
                raise
            entry["skipped"] = "out of memory"
            _release(device)
        if timings[i]:
            _summarize_rounds(entry, timings[i], _floor(entry["flops"], 0, peaks), images=size)
        _save(record, json_path)  # after every call: a killed run keeps what it measured
    calls = run = None  # free the models before returning
    _release(device)
    _finish(record, peaks, settings)
    _save(record, json_path)
    return record


# --- the report ---------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine_line(record: dict[str, Any]) -> str:
    m = record["machine"]
    device = m.get("gpu") or (f"{m['cpu_model']} ({m['logical_cpus']} logical CPUs), "
                              f"{m['torch_threads']} torch thread(s)")
    return (f"{record['suite']}: {device}; torch {m['torch']}, torchvision {m['torchvision']}, "
            f"scipy {m['scipy']}, numpy {m['numpy']}, python {m['python']}; "
            f"{record['settings']['precision']}; load average (1/5/15 min) before "
            f"{m.get('load_average')}, after {m.get('load_average_after')}; "
            f"git {m.get('git_revision')}; {record['created']}")


def _ms(entry: dict[str, Any] | None) -> float | None:
    return entry["ms_per_image"] if entry and "time" in entry else None


def _mixer_index(record: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {(r["mixer"], r["dim"], r["grid"][0]): r for r in record["results"]
            if not r.get("skipped")}


def _ratio_line(record: dict[str, Any], mine: str, other: str, mode: str) -> str:
    """Per grid: median over C of time(other) / time(mine), with the range."""
    index = _mixer_index(record)
    parts = []
    for n in record["settings"]["grids"]:
        ratios = []
        for dim in record["settings"]["dims"]:
            a = _ms((index.get((mine, dim, n)) or {}).get(mode))
            b = _ms((index.get((other, dim, n)) or {}).get(mode))
            if a and b:
                ratios.append(b / a)
        if ratios:
            parts.append(f"{n}²: **{statistics.median(ratios):.2f}x** "
                         f"({min(ratios):.2f}–{max(ratios):.2f})")
        else:
            parts.append(f"{n}²: -")
    return " · ".join(parts)


def _dct_ratio_line(record: dict[str, Any], layout: str, other: str) -> str:
    index = {(r["n"], r["method"]): r for r in record["results"]
             if r["layout"] == layout and not r.get("skipped")}
    parts = []
    for n in record["settings"]["sizes"]:
        mine, theirs = index.get((n, "matmul")), index.get((n, other))
        if mine and theirs:
            parts.append(f"{n}: **{theirs['time']['median_s'] / mine['time']['median_s']:.2f}x**")
    return " · ".join(parts)


def _dct_section(record: dict[str, Any]) -> list[str]:
    out = ["## 2D DCT: matmul vs FFT (Makhoul) vs `scipy.fft.dctn`", ""]
    s = record["settings"]
    out.append(
        f"`dct2` of `{s['channels']}` channels, batch `B = max(1, {s['tokens']} // N²)`; "
        "time per call in ms (median, IQR/median in brackets), max error vs `scipy.fft.dctn` "
        "in float64 (relative to max |X|), and measured / floor. The floor is the same for every "
        "method: max(FFT-path FLOPs / P, bytes / BW), bytes = read the input + write the output. "
        f"The methods of one size were timed in turn, {s.get('rounds', 1)} round(s); each time "
        "is the median of its fastest round.")
    out.append("")
    rows = []
    for r in record["results"]:
        if r.get("skipped"):
            rows.append([r["n"], r["layout"], r["method"], "-", "-", "-", "-", r["skipped"]])
            continue
        t = r["time"]
        rows.append([
            f"{r['n']}x{r['n']}", r["layout"], r["method"],
            f"{_fmt(t['median_s'] * 1e3)} ({t['spread'] * 100:.0f}%)",
            "-" if r["flops"] is None else _fmt(r["flops"] / 1e6),
            f"{r['max_rel_error']:.1e}", _fmt(r["x_floor"], 2), "",
        ])
    out.append(_table(["N x N", "layout", "method", "ms / call", "MFLOP", "rel. error",
                       "x floor", "note"], rows))
    out.append("")
    return out


def _mixer_section(record: dict[str, Any]) -> list[str]:
    s = record["settings"]
    index = _mixer_index(record)
    grids, dims, mixers = s["grids"], s["dims"], s["mixers"]
    out = ["## Token mixers", ""]
    out.append(
        f"Input `(B, N, N, C)` channels-last, `B = max(1, {s['tokens']} // N²)`; every number is "
        "per image. Skipped points: over the time cap (`max_call_time`) at the measured matmul "
        "peak, or out of memory. The mixers of one size were timed in turn, "
        f"{s.get('rounds', 1)} round(s); each time is the median of its fastest round.")
    for mode in s["modes"]:
        label = {"inference": "inference (forward, no_grad)",
                 "train": "training (forward + backward)"}.get(mode, mode)
        out += ["", f"### Time, {label}: ms per image (x floor)", ""]
        rows = []
        for name in mixers:
            for dim in dims:
                cells = []
                for n in grids:
                    entry = (index.get((name, dim, n)) or {}).get(mode) or {}
                    if "time" in entry:
                        cells.append(f"{_fmt(entry['ms_per_image'])} ({_fmt(entry['x_floor'], 2)})")
                    else:
                        cells.append("skipped" if entry.get("skipped") else "-")
                rows.append([name, dim, *cells])
        out.append(_table(["mixer", "C", *[f"{n}²" for n in grids]], rows))
    out += ["", "### FLOPs per image (MFLOP, forward; FFTs at 5 N log2 N) and peak memory per "
            "image (MiB, inference)", ""]
    rows = []
    for name in mixers:
        for dim in dims:
            cells = []
            for n in grids:
                r = index.get((name, dim, n))
                entry = (r or {}).get("inference") or {}
                if not r or "flops" not in entry:
                    cells.append("-")
                    continue
                flop = _fmt(entry["flops"] / r["batch"] / 1e6)
                mem = entry.get("peak_memory_bytes")
                mem_text = _fmt(mem / r["batch"] / 2**20) if mem is not None else "-"
                cells.append(f"{flop} / {mem_text}")
            rows.append([name, dim, *cells])
    out.append(_table(["mixer", "C", *[f"{n}²" for n in grids]], rows))
    fits = record.get("fits", [])
    if fits:
        out += ["", f"### Fitted exponent of per-image time (and FLOPs) vs tokens, grids with "
                f">= {s['fit_min_tokens']} tokens", ""]
        rows = []
        for name in mixers:
            for mode in s["modes"]:
                cells = []
                for dim in dims:
                    fit = next((f for f in fits if f["mixer"] == name and f["dim"] == dim
                                and f["mode"] == mode), None)
                    if not fit or fit["time_exponent"] is None:
                        cells.append("-")
                        continue
                    cells.append(f"{fit['time_exponent']:.2f} ({fit['flops_exponent']:.2f}, "
                                 f"{len(fit['time_tokens'])} pts)")
                rows.append([name, mode, *cells])
        out.append(_table(["mixer", "mode", *[f"C={d}" for d in dims]], rows))
    out.append("")
    return out


def _model_section(record: dict[str, Any]) -> list[str]:
    s = record["settings"]
    out = ["## Models", ""]
    out.append(
        f"At {s['img_size']}x{s['img_size']}, random weights. GMACs = multiply-adds per image "
        "(the peers' \"GFLOPs\"; FFTs at 5 N log2 N / 2). Inference: batch "
        f"{s['batch']}, `eval()`, `no_grad`; training step: batch {s['train_batch']}, forward + "
        "cross-entropy + backward + AdamW step. Throughput of the fastest of "
        f"{s.get('rounds', 1)} interleaved rounds (each the median of its repetitions; range over "
        "rounds in brackets; with one round, ± half the IQR). x floor: measured / (FLOPs / "
        "matmul peak).")
    out.append("")
    rows = []
    for r in record["results"]:
        if r.get("skipped"):
            rows.append([r["model"], "compiled" if r["compiled"] else "eager", "-", "-", "-",
                         "-", "-", "-", r["skipped"]])
            continue
        inf, tr = r.get("inference") or {}, r.get("train") or {}

        def ips(entry):
            return _fmt(entry["images_per_s"]) if "time" in entry else "-"

        def mem(entry):
            b = entry.get("peak_memory_bytes")
            return _fmt(b / 2**30) if b is not None else "-"

        def spread(entry):
            rounds = [entry["batch"] / t for t in entry.get("rounds", [])]
            if len(rounds) > 1:
                return f"{ips(entry)} ({_fmt(min(rounds))}–{_fmt(max(rounds))})"
            return f"{ips(entry)} (±{entry['time']['spread'] * 50:.0f}%)"

        rows.append([
            r["model"], "compiled" if r["compiled"] else "eager",
            _fmt(r["params"] / 1e6), _fmt(r["gmacs_per_image"]),
            spread(inf) if "time" in inf else "-",
            spread(tr) if "time" in tr else "-",
            f"{mem(inf)} / {mem(tr)}",
            f"{_fmt(inf.get('x_floor'), 2)} / {_fmt(tr.get('x_floor'), 2)}", "",
        ])
    out.append(_table(["model", "mode", "params (M)", "GMACs", "inference img/s",
                       "train img/s", "peak GiB (inf / train)", "x floor (inf / train)", "note"],
                      rows))
    out.append("")
    return out


def _status(won: int, total: int) -> str:
    if total == 0:
        return "not measured"
    return "met" if won == total else "not met"


def _goals(records: dict[tuple[str, str], dict[str, Any]]) -> list[list[str]]:
    """Each goal of the issue: what was measured and whether it is met."""
    rows = []
    cpu_mixers = records.get(("mixers", "cpu"))
    gpu_mixers = records.get(("mixers", "cuda"))

    def wins(record, mine, other, min_grid=0):
        index = _mixer_index(record)
        won = total = 0
        worst = None
        for (name, dim, n), r in index.items():
            if name != mine or n < min_grid:
                continue
            for mode in record["settings"]["modes"]:
                a = _ms(r.get(mode))
                b = _ms((index.get((other, dim, n)) or {}).get(mode))
                if a and b:
                    total += 1
                    won += a < b
                    if worst is None or b / a < worst[0]:
                        worst = (b / a, f"{mode} C={dim} {n}²")
        return won, total, worst

    for label, record in (("CPU fp32", cpu_mixers), ("GPU bf16", gpu_mixers)):
        if record is None:
            rows.append([f"DSM mixer faster than GFNet filter at every size, {label}",
                         "not measured (no such result file)", "not measured"])
            continue
        for mine, name in (("dsm_matmul", "DSM mixer"),
                           ("dsm_log_of_mean", "DSM mixer, log-of-mean descriptor")):
            if mine not in record["settings"]["mixers"]:
                continue
            won, total, worst = wins(record, mine, "gfnet")
            worst_text = (f"; worst GFNet/DSM time ratio {worst[0]:.2f} ({worst[1]})"
                          if worst else "")
            rows.append([f"{name} faster than GFNet filter at every size, {label}",
                         f"faster at {won}/{total} points (inference + train){worst_text}",
                         _status(won, total)])
    for label, record in (("CPU fp32", cpu_mixers), ("GPU bf16", gpu_mixers)):
        if record is None:
            rows.append([f"DSM mixer faster than attention from 28x28 on, {label}",
                         "not measured", "not measured"])
            continue
        won, total, worst = wins(record, "dsm_matmul", "attention", min_grid=28)
        worst_text = f"; worst attention/DSM ratio {worst[0]:.2f} ({worst[1]})" if worst else ""
        rows.append([f"DSM mixer faster than attention from 28x28 on, {label}",
                     f"faster at {won}/{total} measured points{worst_text}",
                     _status(won, total)])
    if cpu_mixers and cpu_mixers.get("fits"):
        def median_exponent(name):
            values = [f["time_exponent"] for f in cpu_mixers["fits"]
                      if f["mixer"] == name and f["mode"] == "inference"
                      and f["time_exponent"] is not None]
            return statistics.median(values) if values else None

        e_mm, e_fft, e_att = (median_exponent(n) for n in ("dsm_matmul", "dsm_fft", "attention"))
        measured = None not in (e_mm, e_fft, e_att)
        met = measured and e_mm <= e_att - 0.3 and e_fft <= e_att - 0.3
        rows.append([
            "time exponent well below attention's ~2 (~1.5 matmul DCT, ~1 FFT DCT), CPU",
            f"median over C, inference: matmul {_fmt(e_mm, 2)}, FFT {_fmt(e_fft, 2)}, attention "
            f"{_fmt(e_att, 2)} (criterion: both DSM at least 0.3 below attention)",
            ("met" if met else "not met") if measured else "not measured"])
    cpu_models = records.get(("models", "cpu"))
    if cpu_models:
        eager = {r["model"]: r for r in cpu_models["results"]
                 if not r.get("skipped") and not r["compiled"]}
        dsm, swin = eager.get("dsm_s"), eager.get("swin_t")
        if dsm and swin and "time" in dsm.get("inference", {}) and "time" in swin.get(
                "inference", {}):
            a, b = dsm["inference"]["images_per_s"], swin["inference"]["images_per_s"]
            rows.append(["`dsm_s` inference throughput >= Swin-T at 224, CPU",
                         f"{_fmt(a)} vs {_fmt(b)} img/s ({a / b:.2f}x)",
                         "met" if a >= b else "not met"])
    gpu_models = records.get(("models", "cuda"))
    if gpu_models is None:
        rows.append(["`dsm_s` inference throughput >= Swin-T at 224, GPU bf16", "not measured",
                     "not measured"])
    cpu_dct = records.get(("dct", "cpu"))
    if cpu_dct:
        done = [r for r in cpu_dct["results"] if not r.get("skipped")]
        index = {(r["n"], r["layout"], r["method"]): r for r in done}
        won = total = 0
        worst = None
        for (n, layout, method), r in index.items():
            other = index.get((n, layout, "scipy"))
            if method != "matmul" or other is None:
                continue
            ratio = other["time"]["median_s"] / r["time"]["median_s"]
            total += 1
            won += ratio >= 1
            if worst is None or ratio < worst[0]:
                worst = (ratio, f"{n}x{n} {layout}")
        rows.append(["matmul DCT at least as fast as `scipy.fft.dctn`, batched channels, CPU",
                     f"{won}/{total} points; worst scipy/matmul time ratio "
                     f"{_fmt(worst[0], 2) if worst else '-'} ({worst[1] if worst else ''})",
                     _status(won, total)])
    return rows


def _notes_section(by_key: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Issue item 2 (make the DSM path fast): what the measurements say, computed from them."""
    out = ["## Making the DSM path fast: what was measured", ""]
    for (suite, device), r in sorted(by_key.items()):
        if suite == "dct":
            for layout in r["settings"]["layouts"]:
                index = {(x["n"], x["method"]): x for x in r["results"]
                         if x["layout"] == layout and not x.get("skipped")}
                fft_wins = [n for n in r["settings"]["sizes"]
                            if (n, "fft") in index and (n, "matmul") in index
                            and index[(n, "fft")]["time"]["median_s"]
                            < index[(n, "matmul")]["time"]["median_s"]]
                verdict = (f"faster than the matmul DCT at N = {', '.join(map(str, fft_wins))}: "
                           "a per-size dispatch would pick the FFT there" if fft_wins else
                           "slower than the matmul DCT at every N measured, so a per-size "
                           "dispatch would always pick the matmul (the default)")
                out.append(f"- DCT implementation per size ({device}, {layout}, N in "
                           f"{sorted(r['settings']['sizes'])}): the FFT (Makhoul) DCT is "
                           f"{verdict}.")
        if suite == "mixers" and r.get("graph_breaks"):
            parts = [f"{name}: {v.get('graphs', '?')} graph(s), {v.get('graph_breaks', '?')} "
                     "break(s)" for name, v in r["graph_breaks"].items()]
            out.append(f"- `torch.compile` friendliness ({device}, `torch._dynamo.explain`): "
                       + "; ".join(parts) + ".")
    out += [
        "- Channels-last: `dct2(x, dims=(1, 2))` on `(B, H, W, C)` runs as two batched matmuls on "
        "views of the contiguous input (`C_H @ x.view(B, H, W*C)`, then "
        "`C_W @ x.view(B*H, W, C)`): no transposes and no copies (`tests/test_bench.py` checks "
        "the dispatched ops).",
        "- The DSWG (band selector) costs no FLOPs worth mentioning but real time (the `static "
        "DSM` ratio line above is its cost). Most of it is elementwise work on the full "
        "spectrum: `abs`, and the default descriptor's `log1p` of every coefficient, a "
        "transcendental at ~1-2 ns per value on these cores. What changed: the band weights "
        "multiply the spectrum through a broadcast `(B, H, W, G, 1)` view instead of being "
        "expanded to `(B, H, W, C)` first (one full-size copy less), and the band layout "
        "(one-hot pooling matrices, band ids) is cached per size instead of rebuilt on every "
        "call. The `log_of_mean` descriptor takes one `log1p` per channel group instead of one "
        "per channel (`dsm_log_of_mean`); it is a different descriptor, so notebook 06's gate "
        "study measures its accuracy before anyone switches to it.",
        f"- Small channels-first grids (at most {KRONECKER_MAX_SIZE} coefficients) "
        "take the 2D DCT as one matmul with the Kronecker product of the two axis matrices "
        "instead of a batch of `B*C` tiny matmuls along H (more multiply-adds, less time). "
        "Channels-last grids, which the mixers use, keep the separable path: there the "
        "Kronecker matmul is no faster from 7x7 on.",
        "- bf16: `dsm_ref.dct` computes half-precision inputs in float32 (documented accuracy "
        "choice). Under autocast the matmuls still run in bf16 (autocast casts them), at the "
        "price of a cast before and after each transform; a pure-bf16 model would run its DCTs "
        "in fp32. GFNet's filter must cast to fp32 in any case (cuFFT does not do bf16). GPU "
        "numbers: see `scripts/gpu_check.sh`.",
        "",
    ]
    return out


def render_report(records: Sequence[dict[str, Any]], *, commands: Sequence[str] = ()) -> str:
    """``BENCHMARKS.md`` from ``bench`` records (one per suite and device)."""
    by_key = {(r["suite"], r["settings"]["device"].split(":")[0]): r for r in records}
    out = [
        "# Benchmarks: complexity and speed of the DSM mixer",
        "",
        "Generated by `python -m dsm_ref bench report` from the JSON files in `data/bench/`; "
        "do not edit by hand. Notebook 07 plots the same files.",
        "",
    ]
    if not any(device == "cuda" for _, device in by_key):
        out += ["> **GPU numbers are not measured yet.** No GPU was available when these files "
                "were made. `scripts/gpu_check.sh` runs the CUDA tests and the benchmarks in bf16 "
                "(with and without `torch.compile` for the models) in under 5 minutes and "
                "regenerates this file.", ""]
    out += ["## Machines, versions, load", ""]
    out += [f"- {_machine_line(r)}" for r in records]
    out += ["", "Measured peaks (the floors' denominators):", ""]
    for r in records:
        p = r.get("peaks", {})
        if p:
            out.append(f"- {r['suite']} ({r['settings']['device']}): matmul "
                       f"{p['matmul_flop_per_s'] / 1e9:.1f} GFLOP/s, copy "
                       f"{p['copy_bytes_per_s'] / 1e9:.1f} GB/s ({p['how']}; best of "
                       f"{p.get('measurements', 1)} measurement(s) in the run)")
    out += ["", "Commands (run by `scripts/run_benchmarks.sh`):", "", "```bash"]
    out += [r["command"] for r in records if r.get("command")] + list(commands)
    out += ["```", "", "Conventions:", ""]
    out += [f"- **{k}**: {v}" for k, v in CONVENTIONS.items()]
    out += ["", "## The ratios that matter", ""]
    for (suite, device), r in sorted(by_key.items()):
        if suite != "mixers":
            continue
        prec = r["settings"]["precision"]
        for mode in r["settings"]["modes"]:
            for other, label in (("gfnet", "GFNet filter"), ("attention", "attention (SDPA)"),
                                 ("dsm_static", "static DSM (no DSWG)"),
                                 ("dsm_log_of_mean", "DSM, log-of-mean descriptor")):
                if other in r["settings"]["mixers"] and "dsm_matmul" in r["settings"]["mixers"]:
                    ratios = _ratio_line(r, "dsm_matmul", other, mode)
                    out.append(f"- {device} {prec}, {mode}: time({label}) / time(DSM mixer), "
                               f"median over C (range): {ratios}")
    for (suite, device), r in sorted(by_key.items()):
        if suite != "models":
            continue
        done = {(x["model"], x["compiled"]): x for x in r["results"] if not x.get("skipped")}
        for compiled in (False, True):
            for other, label in (("swin_t", "Swin-T"), ("convnext_tiny", "ConvNeXt-T"),
                                 ("dsm_s-gfnet", "the same body with the GFNet filter")):
                dsm, peer = done.get(("dsm_s", compiled)), done.get((other, compiled))
                if not (dsm and peer):
                    continue
                parts = []
                for mode in r["settings"]["modes"]:
                    if "time" in dsm.get(mode, {}) and "time" in peer.get(mode, {}):
                        ratio = dsm[mode]["images_per_s"] / peer[mode]["images_per_s"]
                        parts.append(f"{mode} **{ratio:.2f}x**")
                out.append(f"- {device} {r['settings']['precision']}, "
                           f"{'compiled' if compiled else 'eager'}: img/s(`dsm_s`) / img/s"
                           f"({label}) at {r['settings']['img_size']}: " + ", ".join(parts))
    for (suite, device), r in sorted(by_key.items()):
        if suite != "dct":
            continue
        for layout in r["settings"]["layouts"]:
            for other in ("scipy", "fft"):
                line = _dct_ratio_line(r, layout, other)
                if line:
                    out.append(f"- {device} DCT, {layout}: time({other}) / time(matmul) per N: "
                               + line)
    out += ["", "## Goals of the issue", ""]
    out.append(_table(["goal", "measured", "status"], _goals(by_key)))
    out.append("")
    out += _notes_section(by_key)
    for suite, section in (("dct", _dct_section), ("mixers", _mixer_section),
                           ("models", _model_section)):
        for (s, device), r in sorted(by_key.items()):
            if s == suite:
                lines = section(r)
                lines[0] += f" ({device}, {r['settings']['precision']})"
                out += lines
    return "\n".join(out).rstrip() + "\n"


def load_records(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Reads ``bench`` JSON files (globs allowed), in the order dct, mixers, models."""
    files = sorted({Path(p) for pattern in paths for p in (glob.glob(str(pattern)) or [pattern])})
    records = [json.loads(Path(f).read_text()) for f in files]
    order = {"dct": 0, "mixers": 1, "models": 2}
    return sorted(records, key=lambda r: (r["settings"]["device"], order.get(r["suite"], 9)))


# --- command line -------------------------------------------------------------------------------

QUICK = {
    "dct": dict(sizes=(7, 14), channels=8, tokens=512),
    "mixers": dict(dims=(16,), grids=(7, 14), tokens=392),
    "models": dict(models=("dsm_micro", "dsm_micro-gfnet"), img_size=32, batch=2, train_batch=2,
                   rounds=1),
}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` sub-command: ``dct``, ``mixers``, ``models`` or ``report``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    common.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="default float32 on CPU, bfloat16 (autocast) on CUDA")
    common.add_argument("--json", type=Path, default=None, help="write the results here")
    common.add_argument("--quick", action="store_true",
                        help="toy sizes and short timings (seconds): tests and notebook 07")
    common.add_argument("--target-time", type=float, default=None,
                        help="seconds of timing per point (default 0.5, quick 0.02)")
    common.add_argument("--warmup", type=int, default=2)
    common.add_argument("--min-reps", type=int, default=3)
    common.add_argument("--max-reps", type=int, default=50)
    common.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    common.add_argument("--time-budget", type=float, default=None,
                        help="seconds; points not started by then are marked skipped")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--no-progress", action="store_true")
    suites = parser.add_subparsers(dest="suite", metavar="{dct,mixers,models,report}")
    suites.required = True

    dct = suites.add_parser("dct", parents=[common], help="2D DCT: matmul vs FFT vs scipy")
    dct.add_argument("--sizes", type=int, nargs="+", default=None)
    dct.add_argument("--channels", type=int, default=None)
    dct.add_argument("--tokens", type=int, default=None, help="batch = tokens // N**2")
    dct.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    dct.add_argument("--methods", nargs="+", choices=DCT_METHODS, default=list(DCT_METHODS))
    dct.add_argument("--rounds", type=int, default=None,
                     help="interleaved timing rounds over the methods of each size (default 1)")

    mix = suites.add_parser("mixers", parents=[common], help="token mixers vs tokens and C")
    mix.add_argument("--mixers", nargs="+", choices=list(MIXERS), default=list(MIXERS))
    mix.add_argument("--dims", type=int, nargs="+", default=None)
    mix.add_argument("--grids", type=int, nargs="+", default=None)
    mix.add_argument("--tokens", type=int, default=None, help="batch = tokens // N**2")
    mix.add_argument("--modes", nargs="+", choices=("inference", "train"),
                     default=["inference", "train"])
    mix.add_argument("--compile", action="store_true", help="torch.compile each mixer")
    mix.add_argument("--max-call-time", type=float, default=2.0,
                     help="skip points whose FLOPs at the matmul peak exceed this (s)")
    mix.add_argument("--fit-min-tokens", type=int, default=784)
    mix.add_argument("--rounds", type=int, default=None,
                     help="interleaved timing rounds over the mixers of each size (default 1)")

    mod = suites.add_parser("models", parents=[common], help="whole models at 224")
    mod.add_argument("--models", nargs="+", default=None,
                     help="registered DSM names, NAME-MIXER (dsm_s-gfnet), swin_t, convnext_tiny")
    mod.add_argument("--img-size", type=int, default=None)
    mod.add_argument("--batch", type=int, default=None)
    mod.add_argument("--train-batch", type=int, default=None)
    mod.add_argument("--modes", nargs="+", choices=("inference", "train"),
                     default=["inference", "train"])
    mod.add_argument("--compile", choices=("off", "on", "both"), default=None,
                     help="torch.compile: default off on CPU, both on CUDA")
    mod.add_argument("--compile-models", nargs="+", default=None,
                     help="compile only these (default: all)")
    mod.add_argument("--rounds", type=int, default=None,
                     help="interleaved timing rounds over all models (default 3, quick 1)")

    rep = suites.add_parser("report", help="BENCHMARKS.md from stored JSON results")
    rep.add_argument("--inputs", nargs="+", default=["data/bench/*.json"])
    rep.add_argument("--out", default="BENCHMARKS.md", help="'-' prints to stdout")


def _command_line(args: argparse.Namespace) -> str:
    """The invocation, canonical: every option spelled out, so it reproduces the run."""
    if sys.argv and sys.argv[0].endswith(("dsm_ref/__main__.py", "dsm-ref")):
        return "python -m dsm_ref " + shlex.join(sys.argv[1:])
    skip = {"command", "suite", "_module", "_missing"}
    parts = ["python", "-m", "dsm_ref", "bench", args.suite]
    for key, value in vars(args).items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _settings(args: argparse.Namespace) -> Settings:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch.cuda.is_available() is False")
    dtype = DTYPES[args.dtype] if args.dtype else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    target = args.target_time if args.target_time is not None else (0.02 if args.quick else 0.5)
    return Settings(device=device, dtype=dtype, warmup=args.warmup, min_reps=args.min_reps,
                    max_reps=args.max_reps, target_time=target, time_budget=args.time_budget,
                    progress=not args.no_progress, quick=args.quick, seed=args.seed)


def _pick(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name)
    if value is not None:
        return value
    return QUICK[args.suite].get(name, default) if args.quick else default


def _summary(record: dict[str, Any]) -> str:
    """A short plain-text view of a record for the terminal."""
    lines = []
    if record["suite"] == "dct":
        for r in record["results"]:
            if not r.get("skipped"):
                lines.append(f"dct {r['n']:>4} {r['layout']:<15} {r['method']:<7} "
                             f"{r['time']['median_s'] * 1e3:9.3f} ms  err {r['max_rel_error']:.1e}")
    elif record["suite"] == "mixers":
        for r in record["results"]:
            for mode in record["settings"]["modes"]:
                entry = r.get(mode) or {}
                if "time" in entry:
                    lines.append(f"{r['mixer']:<11} C={r['dim']:<4} {r['grid'][0]:>4}² {mode:<9} "
                                 f"{entry['ms_per_image']:9.3f} ms/img")
    else:
        for r in record["results"]:
            for mode in record["settings"]["modes"]:
                entry = r.get(mode) or {}
                if "time" in entry:
                    tag = "compiled" if r["compiled"] else "eager"
                    lines.append(f"{r['model']:<15} {tag:<8} {mode:<9} "
                                 f"{entry['images_per_s']:9.2f} img/s")
    return "\n".join(lines)


def cli_main(args: argparse.Namespace) -> int:
    """Runs one suite (or the report) from parsed ``bench`` arguments."""
    if args.suite == "report":
        records = load_records(args.inputs)
        if not records:
            print(f"no results match {args.inputs}", file=sys.stderr)
            return 1
        text = render_report(records, commands=[_command_line(args)])
        if args.out == "-":
            print(text)
        else:
            Path(args.out).write_text(text)
            print(f"wrote {args.out} from {len(records)} result files")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = _settings(args)
    command = _command_line(args)
    if args.suite == "dct":
        record = bench_dct(
            _pick(args, "sizes", (7, 14, 28, 56, 112)), channels=_pick(args, "channels", 64),
            tokens=_pick(args, "tokens", 32768), layouts=args.layouts, methods=args.methods,
            rounds=_pick(args, "rounds", 1), settings=settings, json_path=args.json,
            command=command)
    elif args.suite == "mixers":
        record = bench_mixers(
            args.mixers, _pick(args, "dims", (64, 128, 256, 512)),
            _pick(args, "grids", (14, 28, 56, 112, 224)), tokens=_pick(args, "tokens", 6272),
            modes=args.modes, compile=args.compile, max_call_time=args.max_call_time,
            fit_min_tokens=args.fit_min_tokens, rounds=_pick(args, "rounds", 1),
            settings=settings, json_path=args.json, command=command)
    else:
        compile_flag = args.compile or ("both" if settings.device.type == "cuda" else "off")
        compile_modes = {"off": (False,), "on": (True,), "both": (False, True)}[compile_flag]
        record = bench_models(
            _pick(args, "models", ("dsm_t", "dsm_s", "dsm_s-gfnet", "swin_t", "convnext_tiny")),
            img_size=_pick(args, "img_size", 224), batch=_pick(args, "batch", 16),
            train_batch=_pick(args, "train_batch", 8), modes=args.modes,
            compile_modes=compile_modes, compile_models=args.compile_models,
            rounds=_pick(args, "rounds", 3), settings=settings, json_path=args.json,
            command=command)
    print(_summary(record))
    if args.json:
        print(f"wrote {args.json}")
    return 0
