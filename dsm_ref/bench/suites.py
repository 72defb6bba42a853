"""The suites: the 2D DCT (:func:`bench_dct`), the token mixers (:func:`bench_mixers`) and whole
models (:func:`bench_models`), each measured into one record (see :mod:`.records`), plus the
helpers that read a mixers record's scaling (:func:`scaling_series`, :func:`fit_exponent`).

Every suite counts FLOPs on ``meta`` tensors, times with :mod:`.timing`, measures the machine's
peaks at the start and the end of the run (the floors' denominators), writes its record after
every point (a killed run keeps what it measured) and stops starting points once its time
budget is spent. The points compared with each other (the methods of one DCT size, the mixers of
one size, all models) are timed in interleaved rounds, so that someone else's load slows one
round of every point rather than every round of one point.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..dct import dct2
from ..flops import count_flops, count_params
from .arms import MIXERS, build_model, mixer_arms, mixer_flops, model_flops, stage_shapes
from .records import COMPILED_SUFFIX, _load_average, new_record, precision_name, save_record
from .resume import check_resumable, code_fingerprint, stored_groups
from .timing import (
    Timing,
    _best_peaks,
    _floor,
    _refloor,
    measure_peaks,
    peak_memory_bytes,
    time_callable,
)

__all__ = [
    "DCT_METHODS",
    "DCT_REFERENCE",
    "DCT_ARMS",
    "MEMORY_LAYOUTS",
    "Settings",
    "bench_dct",
    "bench_mixers",
    "bench_models",
    "bench_stages",
    "STAGE_MODELS",
    "STAGE_ARMS",
    "graph_breaks",
    "scaling_series",
    "fit_exponent",
]

DCT_METHODS = ("matmul", "fft", "scipy")
# GFNet's forward transform, ``torch.fft.rfft2`` of the same tensor: the reference the FFT DCT is
# held to (not a DCT; no error is reported for it).
DCT_REFERENCE = "rfft2"
DCT_ARMS = (*DCT_METHODS, DCT_REFERENCE)
MEMORY_LAYOUTS = ("channels_last", "channels_first")
COUNTED_ROUNDS = ("the median over the rounds after the first (the first warms up) when "
                  "there are several")
"""Which timing round an entry reports (:func:`_summarize_rounds`), as records state it."""
ROUND_ORDER = ("the arms in the listed order in the first round, in a seeded random order in "
               "each later round, each timed call right after one untimed call of the same arm")
"""The order the arms of one point are timed in each round (:func:`round_order`)."""


@dataclass
class Settings:
    """What every suite shares: device, dtype, timing and bookkeeping options. ``dtype``:
    ``torch.float32``, or ``torch.bfloat16`` / ``torch.float16`` (inputs in that dtype, mixers
    and models under ``torch.autocast`` to it); records name it in the training spelling (see
    :func:`~dsm_ref.bench.records.precision_name`)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    warmup: int = 2
    min_reps: int = 3
    target_time: float = 0.5
    time_budget: float | None = None
    progress: bool = True
    quick: bool = False
    seed: int = 0

    def timing(self, fn: Callable[[], Any]) -> Timing:
        return time_callable(fn, self.device, warmup=self.warmup, min_reps=self.min_reps,
                             target_time=self.target_time)

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.device), "dtype": _dtype_name(self.dtype), "warmup": self.warmup,
            "min_reps": self.min_reps, "target_time": self.target_time,
            "time_budget": self.time_budget, "quick": self.quick, "seed": self.seed,
            "precision": precision_name(self.dtype), "counted_rounds": COUNTED_ROUNDS,
            "round_order": ROUND_ORDER,
        }


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


class _TimingBudget:
    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.perf_counter() + seconds

    def exceeded(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline


def _progress(items: Sequence[Any], settings: Settings, desc: str) -> Iterable[Any]:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not settings.progress, leave=False)


def _new_record(suite: str, settings: Settings, options: dict[str, Any],
                command: str | None) -> dict[str, Any]:
    record = new_record(suite, settings.device, {**settings.describe(), **options}, command)
    record["code_fingerprint"] = code_fingerprint()
    return record


def _resumed_groups(record: dict[str, Any], resume: dict[str, Any] | None,
                    key: Callable[[dict[str, Any]], Any], peaks: dict[str, Any]
                    ) -> tuple[dict[Any, list[dict[str, Any]]], dict[str, Any]]:
    """The groups of a stored record ``resume`` that this run keeps (:mod:`.resume`; a
    ``ValueError`` when it may not continue it) and the peaks, the best of both runs. The
    record notes where the kept groups came from."""
    if resume is None:
        return {}, peaks
    check_resumable(resume, record)
    kept = stored_groups(resume, key)
    record["resumed_from"] = dict(created=resume.get("created"), command=resume.get("command"),
                                  machine=resume.get("machine"), groups=len(kept))
    return kept, _best_peaks(peaks, resume["peaks"]) if resume.get("peaks") else peaks


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


# DCT --------------------------------------------------------------------------------------------


def round_order(round_index: int, count: int, seed: int = 0) -> list[int]:
    """The order ``count`` arms are timed in round ``round_index``: as listed in the first round
    (it warms up), then a random permutation per round, seeded by ``seed`` and the round. An
    arm that always ran right after the same other arm would inherit that arm's cache and
    allocator state in every round (a rotation keeps every arm's predecessor); a new order
    each round turns such effects into noise that the paired rounds average out."""
    if round_index == 0:
        return list(range(count))
    return random.Random(f"{seed}:{round_index}").sample(range(count), count)


def _time_in_rounds(calls: Sequence[tuple[dict[str, Any], Callable[[], Any]]], rounds: int,
                    settings: Settings, *, memory: bool = False) -> list[list[Timing]]:
    """Times every ``(entry, run)`` in turn, ``rounds`` times: the first round with warm-up and
    adaptive repetitions (and the peak memory, with ``memory``), the others without warm-up.
    A burst of someone else's load then slows one round of every call rather than every round
    of one call, so ratios between the calls are measured under the same conditions. A call
    that runs out of memory is marked skipped in its entry."""
    timings: list[list[Timing]] = [[] for _ in calls]
    for round_index in range(rounds):
        for i in round_order(round_index, len(calls), settings.seed):
            entry, run = calls[i]
            if entry.get("skipped"):
                continue
            try:
                if round_index == 0:
                    timings[i].append(settings.timing(run))
                    if memory:
                        entry["peak_memory_bytes"] = peak_memory_bytes(run, settings.device)
                else:
                    timings[i].append(time_callable(
                        run, settings.device, warmup=0, min_reps=settings.min_reps, settle=1,
                        target_time=settings.target_time))
            except RuntimeError as err:
                if not _is_oom(err):
                    raise
                entry["skipped"] = "out of memory"
                _release(settings.device)
    return timings


def _summarize_rounds(entry: dict[str, Any], measured: list[Timing], floor: dict[str, Any],
                      *, images: int | None = None) -> Timing:
    """Fills ``entry`` from its timing rounds: the median over the counted rounds (quartiles
    over them too) and every round's median kept in ``rounds``, which ratios between arms pair
    round by round (:mod:`.ratios`); ``images`` per call gives images/s. Returns the summary.

    With more than one round the first does not count: it warms up and lets the Timer choose
    each call's block size (100 calls per block for one arm, 1 for the next at the same size),
    and a block of many calls in a row runs warmer than one call between other arms' calls.
    The later rounds time every arm alike (``min_reps`` single calls after an untimed one,
    interleaved, in a new order each round), so the ratios between arms compare like with
    like. The median, not the fastest round, is reported: with many short rounds the fastest
    is a lucky draw."""
    counted = measured[1:] if len(measured) > 1 else measured
    if len(counted) == 1:
        timing = counted[0]
    else:
        timing = Timing.from_times([t.median_s for t in counted], inner=1,
                                   first_call_s=measured[0].first_call_s)
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
    layouts: Sequence[str] = MEMORY_LAYOUTS,
    methods: Sequence[str] = DCT_ARMS,
    rounds: int = 1,
    settings: Settings | None = None,
    json_path: str | Path | None = None,
    command: str | None = None,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """2D DCT-II of ``(B, N, N, C)`` (channels-last, dims 1, 2) or ``(B, C, N, N)`` blocks:
    ``dsm_ref``'s matmul and FFT (Makhoul) paths and ``scipy.fft.dctn`` (CPU, as many workers
    as torch has threads), and ``"rfft2"``, GFNet's forward transform ``torch.fft.rfft2`` of the
    same tensor, the reference for the FFT path's speed. ``B = max(1, tokens // N**2)``. Each
    DCT point also reports the max error against ``scipy.fft.dctn`` in float64, absolute and
    relative to ``max |X|`` (``None`` for ``"rfft2"``, which computes another transform).

    The methods of one ``(N, layout)`` transform the same input and are timed in turn,
    ``rounds`` times; each reports the median over its counted rounds and every round's median.
    ``resume``: a stored record of a run with the same settings and timed code that stopped
    early; its complete ``(N, layout)`` groups are kept, the others measured (:mod:`.resume`).
    """
    import scipy.fft

    settings = settings or Settings()
    record = _new_record("dct", settings, dict(sizes=list(sizes), channels=channels,
                                               tokens=tokens, layouts=list(layouts),
                                               methods=list(methods), rounds=rounds),
                         command)
    peaks = measure_peaks(settings.device, settings.dtype, quick=settings.quick)
    kept, peaks = _resumed_groups(record, resume, lambda row: (row["n"], row["layout"]), peaks)
    budget = _TimingBudget(settings.time_budget)
    generator = torch.Generator().manual_seed(settings.seed)
    groups = [(n, layout) for n in sizes for layout in layouts]
    workers = torch.get_num_threads()
    itemsize = torch.empty((), dtype=settings.dtype).element_size()
    for n, layout in _progress(groups, settings, "dct"):
        stored = kept.get((n, layout))
        if stored is not None and [row["method"] for row in stored] == list(methods):
            record["results"].extend(stored)
            continue
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
            elif method == DCT_REFERENCE:
                x = x64.to(settings.device, settings.dtype)

                def run(x=x, dims=dims):
                    return torch.fft.rfft2(x, dim=dims)

                row["flops"] = count_flops(lambda meta_x=meta_x, dims=dims:
                                           torch.fft.rfft2(meta_x, dim=dims)).total
            else:
                x = x64.to(settings.device, settings.dtype)

                def run(x=x, dims=dims, method=method):
                    return dct2(x, dims=dims, method=method)

                row["flops"] = count_flops(lambda meta_x=meta_x, dims=dims, method=method:
                                           dct2(meta_x, dims=dims, method=method)).total
            if method == DCT_REFERENCE:
                row.update(max_abs_error=None, max_rel_error=None)
            else:
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
        save_record(record, json_path)
    _finish(record, peaks, settings)
    save_record(record, json_path)
    return record


# mixers -----------------------------------------------------------------------------------------
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
    compile_modes: Sequence[bool] = (False,),
    compile_mixers: Sequence[str] | None = None,
    max_call_time: float | None = 2.0,
    fit_min_tokens: int = 784,
    rounds: int = 1,
    settings: Settings | None = None,
    json_path: str | Path | None = None,
    command: str | None = None,
    resume: dict[str, Any] | None = None,
    shapes: Sequence[tuple[int, int]] | None = None,
    batch: int | None = None,
    suite: str = "mixers",
    described: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every mixer at every ``C`` in ``dims`` and ``N x N`` grid in ``grids``, with the batch
    ``B = max(1, tokens // N**2)`` (times are also reported per image). ``inference``: forward
    under ``no_grad``; ``train``: forward + backward (input and weight gradients).

    A point is skipped when its counted FLOPs at the measured matmul peak would take more than
    ``max_call_time`` s per call (global attention at large grids; ``None``: no cap), or when it
    runs out of memory. ``fits`` holds the exponent of per-image time and FLOPs against the
    number of tokens, fitted over the grids with at least ``fit_min_tokens`` tokens.

    The mixers of one ``(C, N)`` are timed in turn, ``rounds`` times (the first round with
    warm-up and adaptive repetitions, the others one settled call each, in a shuffled order);
    each reports the median over its counted rounds and every round's median, so the ratios
    between mixers at one size are measured under the same conditions.

    ``compile_modes``: ``(False,)`` eager, ``(True,)`` ``torch.compile`` (default options),
    ``(False, True)`` both, interleaved in the same rounds; a compiled mixer's rows are labelled
    ``<label>+compile`` (its compile time is in the first round's ``first_call_s``).
    ``compile_mixers``: compile only these labels (default: all).
    ``resume``: a stored record of a run with the same settings and timed code that stopped
    early; its complete ``(N, C)`` groups are kept, the others measured (:mod:`.resume`).
    ``shapes``: these ``(N, C)`` points instead of every ``dims`` x ``grids`` pair; ``batch``:
    this batch at every point instead of ``tokens // N**2``; ``suite``: the record's suite name
    (:func:`bench_stages` runs this suite as ``"stages"``); ``described``: more settings to
    record (where the shapes came from).
    """
    settings = settings or Settings()
    if shapes is not None:
        shapes = [(int(n), int(c)) for n, c in shapes]
        grids = sorted({n for n, _ in shapes})
        dims = sorted({c for _, c in shapes})
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    unknown = sorted(set(mixers) - set(MIXERS))
    if unknown:
        raise ValueError(f"unknown mixers {unknown}; expected some of {sorted(MIXERS)}")
    record = _new_record(suite, settings, dict(
        mixers=list(mixers), mixer_arms=mixer_arms(mixers), dims=list(dims), grids=list(grids),
        **({} if shapes is None else {"shapes": [list(shape) for shape in shapes]}),
        **({} if batch is None else {"batch": batch}), **(described or {}),
        tokens=tokens, modes=list(modes), compile_modes=[bool(c) for c in compile_modes],
        compile_mixers=None if compile_mixers is None else list(compile_mixers),
        max_call_time=max_call_time,
        fit_min_tokens=fit_min_tokens, rounds=rounds), command)
    peaks = measure_peaks(settings.device, settings.dtype, quick=settings.quick)
    kept, peaks = _resumed_groups(record, resume, lambda row: (row["grid"][0], row["dim"]),
                                  peaks)
    budget = _TimingBudget(settings.time_budget)
    device, dtype = settings.device, settings.dtype
    itemsize = torch.empty((), dtype=dtype).element_size()
    groups = shapes if shapes is not None else [(n, c) for n in grids for c in dims]
    fixed_batch = batch
    for n, dim in _progress(groups, settings, suite):
        size, batch = (n, n), fixed_batch or max(1, tokens // (n * n))
        calls: list[tuple[dict[str, Any], Callable[[], Any], float]] = []  # (entry, run, bytes)
        points = [(name, c) for name in mixers for c in compile_modes
                  if not c or compile_mixers is None or name in compile_mixers]
        stored = kept.get((n, dim))
        if stored is not None and [row["mixer"] for row in stored] == [
                f"{name}{COMPILED_SUFFIX}" if c else name for name, c in points]:
            record["results"].extend(stored)
            continue
        if any(c for _, c in points):
            # Every mixer instance of a class shares one compiled frame (its forward), and each
            # new shape or grad mode recompiles it: past torch._dynamo's recompile limit (8) the
            # later points would silently run eagerly. Each size starts from a fresh cache.
            torch.compiler.reset()
        for name, compiled in points:
            label = f"{name}{COMPILED_SUFFIX}" if compiled else name
            row: dict[str, Any] = dict(mixer=label, dim=dim, grid=[n, n], tokens=n * n,
                                       batch=batch, compiled=bool(compiled))
            record["results"].append(row)
            if budget.exceeded():
                row["skipped"] = "time budget"
                continue
            torch.manual_seed(settings.seed)
            mixer = MIXERS[name](dim, size).to(device)
            row["params"] = count_params(mixer)
            runner = torch.compile(mixer) if compiled else mixer
            x = torch.randn(batch, *size, dim, device=device, dtype=dtype)
            for mode in modes:
                train = mode == "train"
                flops = mixer_flops(name, dim, size, batch, train)
                entry: dict[str, Any] = dict(flops=flops.total, flops_fft=flops.fft)
                row[mode] = entry
                estimate = flops.total / peaks["matmul_flop_per_s"]
                if max_call_time is not None and estimate > max_call_time:
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
        save_record(record, json_path)
    if shapes is None:  # a grid of sizes: how time scales with the tokens
        record["fits"] = _scaling_fits(record["results"], modes, fit_min_tokens)
    if not settings.quick and shapes is None:
        record["graph_breaks"] = {name: graph_breaks(name) for name in mixers
                                  if name.startswith("dsm") or name == "gfnet"}
    _finish(record, peaks, settings)
    save_record(record, json_path)
    return record


# The token-mixer shapes the models run: ``(model, input size, stages)`` (all stages when None):
# the four stages of dsm_s at 224 px (the ImageNet model), and the first stage of dsm_t at 448 px
# (a dense-prediction input: 112 x 112 tokens of 64 channels).
STAGE_MODELS: tuple[tuple[str, int, int | None], ...] = (("dsm_s", 224, None), ("dsm_t", 448, 1))
# The arms timed there: the default DSM mixer, its matmul twin (the same code below the auto
# crossover: the benchmark's own check), its static twin (the DSWG's cost), GFNet's filter, the
# default mixer multiplying into a new tensor at inference (what writing into the DCT's output
# gains) and GFNet's filter as its authors' code runs it (ours against theirs).
STAGE_ARMS = ("dsm_auto", "dsm_matmul", "dsm_static", "gfnet", "dsm_out_of_place",
              "gfnet_upstream")


def bench_stages(
    stages: Sequence[tuple[str, int, int | None]] = STAGE_MODELS,
    mixers: Sequence[str] = STAGE_ARMS,
    *,
    batch: int = 8,
    modes: Sequence[str] = ("inference", "train"),
    rounds: int = 1,
    settings: Settings | None = None,
    json_path: str | Path | None = None,
    command: str | None = None,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The mixers at the shapes models run them, at a fixed ``batch``: each ``(model, input
    size, stages)`` of ``stages`` gives its stages' ``(N, C)`` (:func:`.arms.stage_shapes`).
    The mixers suite on those points (:func:`bench_mixers`), recorded as suite ``"stages"``
    with the stage list in its settings."""
    shapes: list[tuple[int, int]] = []
    for name, img_size, count in stages:
        shapes += [shape for shape in stage_shapes(name, img_size, count) if shape not in shapes]
    return bench_mixers(mixers, modes=modes, rounds=rounds, settings=settings,
                        json_path=json_path, command=command, resume=resume, shapes=shapes,
                        batch=batch, suite="stages", max_call_time=None,
                        described={"stages": [[name, size, count] for name, size, count in stages]})


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
    budget = _TimingBudget(settings.time_budget)
    # Eager models first: when the time budget runs out, the compiled points are the ones lost.
    points = [(name, compiled) for compiled in sorted(compile_modes) for name in models
              if not compiled or compile_models is None or name in compile_models]
    calls: list[tuple[dict[str, Any], int, Callable[[], Any]]] = []  # (entry, batch, run)
    for name, compiled in points:
        row: dict[str, Any] = dict(model=name, img_size=img_size, compiled=compiled)
        record["results"].append(row)
        torch.manual_seed(settings.seed)
        model = build_model(name, img_size).to(device)
        row["params"] = count_params(model)
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
    schedule = [(r, k, i) for r in range(rounds)
                for k, i in enumerate(round_order(r, len(calls), settings.seed))]
    for round_index, position, i in _progress(schedule, settings, "models"):
        if position == 0 and round_index > 0:  # one peak measurement per round, the best kept
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
                timings[i].append(time_callable(run, device, warmup=0, settle=1,
                                                min_reps=settings.min_reps))
        except RuntimeError as err:
            if not _is_oom(err):
                raise
            entry["skipped"] = "out of memory"
            _release(device)
        if timings[i]:
            _summarize_rounds(entry, timings[i], _floor(entry["flops"], 0, peaks), images=size)
        save_record(record, json_path)  # after every call: a killed run keeps what it measured
    calls = run = None  # free the models before returning
    _release(device)
    _finish(record, peaks, settings)
    save_record(record, json_path)
    return record


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x``: ``y ~ x ** slope``."""
    if len(x) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)
    return float(slope)


