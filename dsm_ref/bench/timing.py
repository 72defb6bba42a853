"""Timers and memory peaks: the wall time of a call, the peak memory of a call, and the machine's
own throughput peaks with the floors derived from them.

- **Time**: :func:`time_callable` times a call with :class:`torch.utils.benchmark.Timer`
  (``blocked_autorange``: blocks of calls sized so that the timer's own overhead is negligible,
  CUDA synchronised, torch's thread count kept) after warm-up, and reports the median and the
  quartiles of the per-call time over the blocks (:class:`Timing`).
- **Memory**: :func:`peak_memory_bytes`. CUDA: ``torch.cuda.max_memory_allocated`` during one
  call, above the level at entry. CPU: the peak of bytes held by PyTorch's CPU allocator during
  one call, above the level at entry, from the allocation events of ``torch.profiler`` with
  ``profile_memory=True``, read from its exported trace (:func:`cpu_peak_bytes`). Both exclude
  weights and inputs made before the call, and (CPU) workspaces that MKL, oneDNN or pocketfft
  allocate themselves.
- **Floors**: the time no implementation can beat on this machine: ``max(FLOPs / P, bytes /
  BW)`` with ``P`` the throughput of a large matmul and ``BW`` the bandwidth of a large
  ``copy_``, both measured (:func:`measure_peaks`), not datasheet numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Timer

__all__ = [
    "Timing",
    "time_callable",
    "quiet_stderr",
    "peak_memory_bytes",
    "cpu_peak_bytes",
    "measure_peaks",
]

# --- time ---------------------------------------------------------------------------------------


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

    @classmethod
    def from_times(cls, times: list[float], inner: int, first_call_s: float | None) -> Timing:
        """The statistics of per-call ``times`` (one per repetition of ``inner`` calls)."""
        q1, _, q3 = (statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1
                     else times * 3)
        return cls(median_s=statistics.median(times), q1_s=q1, q3_s=q3, min_s=min(times),
                   max_s=max(times), reps=len(times), inner=inner, first_call_s=first_call_s)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stopwatch(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call of ``fn`` (synchronised on CUDA)."""
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


def time_callable(
    fn: Callable[[], Any],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 2,
    min_reps: int = 3,
    target_time: float = 0.5,
    settle: int = 0,
) -> Timing:
    """Times ``fn()``: ``warmup`` untimed calls (the first one timed on its own, as
    ``first_call_s``), then :meth:`torch.utils.benchmark.Timer.blocked_autorange` for about
    ``target_time`` s and at least ``min_reps`` blocks; the Timer picks ``inner``, the calls per
    block, so that its own overhead is negligible (it warms up while doing so).

    ``warmup=0`` (an already warm ``fn``, e.g. a later round of interleaved timings) times
    exactly ``min_reps`` single calls after ``settle`` untimed ones: the Timer always adds
    warm-up calls of its own, which would multiply the cost of each round. An untimed call
    right before lets the timed one find caches and allocator in ``fn``'s own state, not in the
    state the previous call (another arm) left."""
    device = torch.device(device)
    if warmup <= 0:
        for _ in range(settle):
            _stopwatch(fn, device)
        times = [_stopwatch(fn, device) for _ in range(max(1, min_reps))]
        return Timing.from_times(times, inner=1, first_call_s=None)
    first = estimate = _stopwatch(fn, device)
    for _ in range(warmup - 1):
        estimate = _stopwatch(fn, device)
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=max(target_time, min_reps * estimate))
    times, inner = list(measurement.times), measurement.number_per_run
    while len(times) < min_reps:  # the calls became slower than the warm-up said
        missing = (min_reps - len(times)) * statistics.median(times) * inner
        times += timer.blocked_autorange(min_run_time=missing).times
    return Timing.from_times(times, inner, first)


# --- memory -------------------------------------------------------------------------------------


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


_CPU_DEVICE_TYPE = 0  # c10::DeviceType::CPU, as the profiler's trace writes "Device Type"


def cpu_peak_bytes(trace: dict[str, Any] | list[dict[str, Any]]) -> int:
    """Peak of the bytes held by PyTorch's CPU allocator in a profiler trace, above the level at
    its start: the running sum, in time order, of the ``"[memory]"`` events' ``Bytes``
    (allocations +, frees -) on the CPU.

    ``trace``: the JSON of ``torch.profiler.profile(profile_memory=True).export_chrome_trace``
    (Chrome's trace-event format: a dict with ``"traceEvents"``, or the list of events).
    Events of other devices and events without ``Bytes`` are ignored."""
    events = trace.get("traceEvents", []) if isinstance(trace, dict) else trace
    steps = []
    for event in events:
        args = event.get("args") or {}
        if (event.get("name") == "[memory]" and "Bytes" in args
                and args.get("Device Type") == _CPU_DEVICE_TYPE):
            steps.append((float(event["ts"]), int(args["Bytes"])))
    current = peak = 0
    for _, nbytes in sorted(steps, key=lambda step: step[0]):
        current += nbytes
        peak = max(peak, current)
    return peak


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int | None:
    """Peak bytes allocated by PyTorch during one call of ``fn``, above the level at entry.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: ``torch.profiler`` with
    ``profile_memory=True``; the trace it exports holds every allocation and free, read by
    :func:`cpu_peak_bytes`. ``None`` on other devices, or where the profiler cannot run (e.g.
    inside another profiler) or its trace cannot be written or read."""
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
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "trace.json"
            p.export_chrome_trace(str(path))
            trace = json.loads(path.read_text())
    except (RuntimeError, OSError, ValueError):  # profiler busy or unavailable, trace unreadable
        return None
    return cpu_peak_bytes(trace)


# --- peaks and floors ---------------------------------------------------------------------------


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
