"""``python -m dsm_ref bench {dct,mixers,models,report}``: run one benchmark suite and write its
record, or render ``BENCHMARKS.md`` from stored records; prints a short summary (side-by-side
tables from ``torch.utils.benchmark.Compare``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Compare, Measurement, TaskSpec

from ..bench import (
    DCT_ARMS,
    MEMORY_LAYOUTS,
    MIXERS,
    PRECISIONS,
    STAGE_ARMS,
    STAGE_MODELS,
    Settings,
    bench_dct,
    bench_mixers,
    bench_models,
    bench_stages,
    load_records,
    precision_name,
    render_report,
)
from ..files import atomic_write

__all__ = ["add_cli_arguments", "cli_main"]

QUICK = {  # --quick: toy sizes that run in seconds (the tests and notebook 07)
    "dct": dict(sizes=(7, 14), channels=8, tokens=512),
    "mixers": dict(dims=(16,), grids=(7, 14), tokens=392),
    "models": dict(models=("dsm_micro", "dsm_micro-gfnet"), img_size=32, batch=2, train_batch=2,
                   rounds=1),
    "stages": dict(stages=(("dsm_micro", 32, 2),), batch=2),
}


def _precision(text: str) -> str:
    try:
        return precision_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


_COMPILE_MODES = {"off": (False,), "on": (True,), "both": (False, True)}
_RESUME_HELP = ("continue the run stored in --json (same settings and timed code): keep its "
                "complete groups, measure the rest; a new run when the file does not exist")


def _stage(text: str) -> tuple[str, int, int | None]:
    """``"dsm_s:224"`` -> ``("dsm_s", 224, None)``; ``"dsm_t:448:1"`` -> ``("dsm_t", 448, 1)``."""
    from ..models import list_models

    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        name, size = parts[0], int(parts[1])
        count = int(parts[2]) if len(parts) == 3 else None
        if size < 1 or (count is not None and count < 1):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MODEL:IMG_SIZE or MODEL:IMG_SIZE:STAGES with positive sizes (e.g. "
            f"dsm_s:224, dsm_t:448:1), got {text!r}") from None
    if name not in list_models():
        raise argparse.ArgumentTypeError(f"unknown model {name!r} in {text!r}; expected one of "
                                         f"{list_models()}")
    return name, size, count


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` sub-command: ``dct``, ``mixers``, ``models`` or ``report``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    common.add_argument("--dtype", type=_precision, choices=list(PRECISIONS), default=None,
                        help="spelled as train's --amp (float32, bfloat16, float16 are accepted "
                             "too); default fp32 on CPU, bf16 (autocast) on CUDA")
    common.add_argument("--json", type=Path, default=None, help="write the results here")
    common.add_argument("--quick", action="store_true",
                        help="toy sizes and short timings (seconds): tests and notebook 07")
    common.add_argument("--target-time", type=float, default=None,
                        help="seconds of timing per point (default 0.5, quick 0.02)")
    common.add_argument("--warmup", type=int, default=2)
    common.add_argument("--min-reps", type=int, default=3,
                        help="at least this many timed repetitions per point")
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
    dct.add_argument("--layouts", nargs="+", choices=MEMORY_LAYOUTS, default=list(MEMORY_LAYOUTS))
    dct.add_argument("--methods", nargs="+", choices=DCT_ARMS, default=list(DCT_ARMS),
                     help="DCT paths, and rfft2: GFNet's forward FFT of the same tensor")
    dct.add_argument("--rounds", type=int, default=None,
                     help="interleaved timing rounds over the methods of each size (default 1)")
    dct.add_argument("--resume", action="store_true", help=_RESUME_HELP)

    mix = suites.add_parser("mixers", parents=[common], help="token mixers vs tokens and C")
    mix.add_argument("--mixers", nargs="+", choices=list(MIXERS), default=list(MIXERS))
    mix.add_argument("--dims", type=int, nargs="+", default=None)
    mix.add_argument("--grids", type=int, nargs="+", default=None)
    mix.add_argument("--tokens", type=int, default=None, help="batch = tokens // N**2")
    mix.add_argument("--modes", nargs="+", choices=("inference", "train"),
                     default=["inference", "train"])
    mix.add_argument("--compile", choices=("off", "on", "both"), default="off",
                     help="torch.compile the mixers: off (default), on, or both: eager and "
                          "compiled interleaved in the same rounds (labels <mixer>+compile)")
    mix.add_argument("--compile-mixers", nargs="+", choices=list(MIXERS), default=None,
                     help="compile only these (default: all)")
    mix.add_argument("--max-call-time", type=float, default=2.0,
                     help="skip points whose FLOPs at the matmul peak exceed this (s)")
    mix.add_argument("--fit-min-tokens", type=int, default=784)
    mix.add_argument("--rounds", type=int, default=None,
                     help="interleaved timing rounds over the mixers of each size (default 1)")
    mix.add_argument("--resume", action="store_true", help=_RESUME_HELP)

    stg = suites.add_parser("stages", parents=[common],
                            help="the mixers at the shapes the models run them")
    stg.add_argument("--stages", nargs="+", type=_stage, default=None,
                     help="MODEL:IMG_SIZE[:STAGES], e.g. dsm_s:224 dsm_t:448:1 (the default): "
                          "the first STAGES stages (all by default) of MODEL at IMG_SIZE")
    stg.add_argument("--mixers", nargs="+", choices=list(MIXERS), default=list(STAGE_ARMS))
    stg.add_argument("--batch", type=_positive, default=None,
                     help="images per call (default 8)")
    stg.add_argument("--modes", nargs="+", choices=("inference", "train"),
                     default=["inference", "train"])
    stg.add_argument("--rounds", type=int, default=None,
                     help="interleaved timing rounds over the mixers of each shape (default 1)")
    stg.add_argument("--resume", action="store_true", help=_RESUME_HELP)

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
    dtype = PRECISIONS[args.dtype] if args.dtype else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    target = args.target_time if args.target_time is not None else (0.02 if args.quick else 0.5)
    return Settings(device=device, dtype=dtype, warmup=args.warmup, min_reps=args.min_reps,
                    target_time=target, time_budget=args.time_budget,
                    progress=not args.no_progress, quick=args.quick, seed=args.seed)


def _pick(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name)
    if value is not None:
        return value
    return QUICK[args.suite].get(name, default) if args.quick else default


def _measurement(seconds: float, label: str, row: str, column: str,
                 threads: int) -> Measurement:
    """One reported time as a ``torch.utils.benchmark`` measurement, for :class:`Compare`."""
    return Measurement(number_per_run=1, raw_times=[seconds], task_spec=TaskSpec(
        stmt=row, setup="", label=label, sub_label=row, description=column, num_threads=threads))


def _compare(measurements: list[Measurement]) -> str:
    if not measurements:
        return ""
    table = Compare(measurements)
    table.trim_significant_figures()
    return str(table).strip()


def _summary(record: dict[str, Any]) -> str:
    """A short view of a record for the terminal: side-by-side tables of the reported times
    (``torch.utils.benchmark.Compare``), and img/s for the models."""
    lines = []
    threads = record["machine"].get("torch_threads") or torch.get_num_threads()
    if record["suite"] == "dct":
        measured = [r for r in record["results"] if not r.get("skipped")]
        lines.append(_compare([
            _measurement(r["time"]["median_s"], f"dct2, {r['layout']}: time per call", r["method"],
                         f"{r['n']}x{r['n']}", threads) for r in measured]))
        worst: dict[str, float] = {}
        for r in measured:
            if r["max_rel_error"] is not None:
                worst[r["method"]] = max(worst.get(r["method"], 0.0), r["max_rel_error"])
        if worst:
            lines.append("max error vs scipy, relative to max |X|: "
                         + ", ".join(f"{method} {error:.1e}" for method, error in worst.items()))
    elif record["suite"] in ("mixers", "stages"):
        stages = record["suite"] == "stages"  # one table per mode (stages) or per mode and C

        def where(r: dict[str, Any], mode: str) -> tuple[str, str]:
            grid = f"{r['grid'][0]}x{r['grid'][1]}"
            if stages:
                return f"stages, {mode}, batch {r['batch']}", f"{grid}x{r['dim']}"
            return f"mixers, {mode}, C={r['dim']}", grid

        lines.append(_compare([
            _measurement(r[mode]["ms_per_image"] / 1e3, f"{where(r, mode)[0]}: time per image",
                         r["mixer"], where(r, mode)[1], threads)
            for mode in record["settings"]["modes"] for r in record["results"]
            if "time" in (r.get(mode) or {})]))
    else:
        for r in record["results"]:
            for mode in record["settings"]["modes"]:
                entry = r.get(mode) or {}
                if "time" in entry:
                    tag = "compiled" if r["compiled"] else "eager"
                    lines.append(f"{r['model']:<15} {tag:<8} {mode:<9} "
                                 f"{entry['images_per_s']:9.2f} img/s")
    return "\n".join(lines)


def _stored_run(args: argparse.Namespace) -> dict[str, Any] | None:
    """The record ``--resume`` continues: ``--json``'s, ``None`` without ``--resume`` or when
    the file does not exist yet (``ValueError`` when it cannot be read)."""
    if not getattr(args, "resume", False):
        return None
    if args.json is None:
        raise ValueError("--resume continues the run stored in --json; give --json")
    if not args.json.exists():
        print(f"{args.json} does not exist yet: starting a new run", file=sys.stderr)
        return None
    try:
        return load_records([args.json])[0]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{args.json} is not a readable benchmark record ({err})") from None


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
            atomic_write(args.out, text)
            print(f"wrote {args.out} from {len(records)} result files")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = _settings(args)
    command = _command_line(args)
    try:
        resume = _stored_run(args)
    except ValueError as err:
        print(f"cannot resume: {err}", file=sys.stderr)
        return 2
    if args.suite == "dct":
        record = bench_dct(
            _pick(args, "sizes", (7, 14, 28, 56, 112)), channels=_pick(args, "channels", 64),
            tokens=_pick(args, "tokens", 32768), layouts=args.layouts, methods=args.methods,
            rounds=_pick(args, "rounds", 1), settings=settings, json_path=args.json,
            command=command, resume=resume)
    elif args.suite == "mixers":
        record = bench_mixers(
            args.mixers, _pick(args, "dims", (64, 128, 256, 512)),
            _pick(args, "grids", (14, 28, 56, 112, 224)), tokens=_pick(args, "tokens", 6272),
            modes=args.modes, compile_modes=_COMPILE_MODES[args.compile],
            compile_mixers=args.compile_mixers, max_call_time=args.max_call_time,
            fit_min_tokens=args.fit_min_tokens, rounds=_pick(args, "rounds", 1),
            settings=settings, json_path=args.json, command=command, resume=resume)
    elif args.suite == "stages":
        record = bench_stages(
            _pick(args, "stages", STAGE_MODELS), args.mixers, batch=_pick(args, "batch", 8),
            modes=args.modes, rounds=_pick(args, "rounds", 1), settings=settings,
            json_path=args.json, command=command, resume=resume)
    else:
        compile_flag = args.compile or ("both" if settings.device.type == "cuda" else "off")
        compile_modes = _COMPILE_MODES[compile_flag]
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
