"""The paper's ablations as named studies, a resumable runner, and result tables.

Defined in notebook 06. Each :class:`Study` compares arms that differ in one thing and share the
body (``dsm_micro`` by default), the data, the budget and every initialisation they have in
common (the static spectral weight starts as ``0.02 * N(0, 1)`` in every arm unless the study is
about that start). Every arm is trained with several seeds; a study reports mean +- std per arm
and the paired difference to the study's reference arm (same seed: same data order, same
augmentation draws).

Runs are stored one JSON per (dataset, arm configuration, seed) under ``<out>/runs/``; a study
that is interrupted, or that shares an arm with another study (the default DSM arm appears in
five), reuses finished runs. ``python -m dsm_ref ablate --study all --data both --out DIR``
writes one JSON per study and dataset, ``<out>/<study>-<data>.json`` (schema
:data:`SCHEMA`), with every run's config, metrics, wall time and provenance.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .bench import EXTRA_FLOP_FORMULAS
from .dswg import DynamicSpectrumWeights
from .models import TOKEN_MIXERS, create_model
from .train import TrainConfig, train
from .utils import environment_info

__all__ = [
    "Arm",
    "Study",
    "Budget",
    "STUDIES",
    "DATASETS",
    "SCHEMA",
    "run_study",
    "load_study",
    "study_table",
    "arm_cost",
]

SCHEMA = "dsm_ref.ablation/v1"
# The two datasets of every study: real photos, and a synthetic task whose informative band
# varies by image (dsm_ref.data.SPECTRAL_TASKS["band_shift"]).
DATASETS = {"cifar10": "cifar10", "spectral": "spectral/band_shift"}


@dataclass(frozen=True)
class Arm:
    """One configuration of a study: ``create_model(budget.model, **model_options)``."""

    name: str
    model_options: dict[str, Any]

    def key(self, budget: Budget, dataset: str) -> str:
        """Identifies a run configuration (without the seed) across studies and invocations."""
        payload = json.dumps(
            {"model_options": _resolved(self.model_options), "budget": asdict(budget),
             "data": dataset},
            sort_keys=True, default=repr,
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


def _resolved(model_options: dict[str, Any]) -> dict[str, Any]:
    """``model_options`` with every mixer option spelled out, defaults included (those of the
    DSWG too, for mixers that pass options on to it). A run's key then names the model it trains:
    ``spectrum_length=4`` and no option at all share one cached run, and a changed default
    gives new runs instead of silently reusing stale ones."""
    factory = TOKEN_MIXERS.get(model_options.get("token_mixer"))
    if factory is None:
        return model_options
    parameters = dict(inspect.signature(factory).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):  # **dswg_options
        parameters = {**inspect.signature(DynamicSpectrumWeights).parameters, **parameters}
    resolved = {name: p.default for name, p in parameters.items()
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
    resolved.update(model_options.get("mixer_options") or {})
    return {**model_options, "mixer_options": resolved}


@dataclass(frozen=True)
class Study:
    """Arms that differ in one thing; ``reference`` is the arm paired differences are taken to."""

    name: str
    question: str
    paper: str
    arms: tuple[Arm, ...]
    reference: str

    def arm(self, name: str) -> Arm:
        return next(arm for arm in self.arms if arm.name == name)


@dataclass(frozen=True)
class Budget:
    """What every run of a study gets. Defaults: the CPU grid of ``data/results/``."""

    model: str = "dsm_micro"
    epochs: int = 8
    n_train: int | None = 5000
    n_test: int | None = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05


def _dsm(**mixer_options) -> dict:
    return {"token_mixer": "dsm", "mixer_options": mixer_options}


def _mixer(name: str, **mixer_options) -> dict:
    return {"token_mixer": name, "mixer_options": mixer_options}


STUDIES: dict[str, Study] = {
    study.name: study
    for study in [
        Study(
            "dynamic_vs_static",
            "Do content-adaptive band weights (the DSWG) beat a static spectral filter?",
            "dynamic weights help: the DSWG emphasises informative bands per image",
            (Arm("dynamic", _dsm()), Arm("static", _mixer("static"))),
            reference="static",
        ),
        Study(
            "spectrum_length",
            "How many bands per axis (L) does the DSWG need?",
            "the spectrum length can be shrunk a lot without losing accuracy",
            tuple(Arm(f"L={length}", _dsm(spectrum_length=length)) for length in (1, 2, 4, 8))
            + (Arm("L=full", _dsm(spectrum_length=None)),),
            reference="L=4",
        ),
        Study(
            "transform",
            "Is the real-valued DCT a better basis than the DFT, and does spectral mixing help?",
            "the DCT (real, no wrap-around) is the basis of choice; the paper does not compare",
            (
                Arm("DCT dynamic", _dsm()),
                Arm("DCT static", _mixer("static")),
                Arm("DFT dynamic", _mixer("gfnet_dynamic")),
                Arm("DFT static", _mixer("gfnet")),
                Arm("no mixing", _mixer("identity")),
            ),
            reference="DCT dynamic",
        ),
        Study(
            "gate",
            "Which gate, band pooling and descriptor should the DSWG use (the paper does not "
            "say)?",
            "not stated; our defaults are softmax (mean 1) and mean pooling of log(1+|S|) taken "
            "per channel; 'log of mean' takes log(1+|S|) of each channel group's mean instead "
            "(one logarithm per group: faster, BENCHMARKS.md)",
            (
                Arm("softmax, mean", _dsm()),
                Arm("2*sigmoid, mean", _dsm(gate="2sigmoid")),
                Arm("sigmoid, mean", _dsm(gate="sigmoid")),
                Arm("softmax, max", _dsm(pool="max")),
                Arm("softmax, mean, log of mean", _dsm(descriptor="log_of_mean")),
            ),
            reference="softmax, mean",
        ),
        Study(
            "mixers",
            "How does the DSM mixer compare with attention and a depthwise conv in the same body?",
            "DSM beats transformer- and MLP-like mixers at similar cost",
            (
                Arm("DSM", _dsm()),
                Arm("attention", _mixer("attention")),
                Arm("depthwise 7x7", _mixer("dwconv")),
            ),
            reference="DSM",
        ),
        Study(
            "init",
            "How much does the static filter's start move each arm (a control for the others)?",
            "not stated; a prototype saw an all-ones start cost the static arm ~5 points",
            (
                Arm("static, random", _mixer("static", static_init="random")),
                Arm("static, ones", _mixer("static", static_init="ones")),
                Arm("dynamic, random", _dsm(static_init="random")),
                Arm("dynamic, ones", _dsm(static_init="ones")),
            ),
            reference="static, random",
        ),
    ]
}


def _choice(kind: str, value: str, valid) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
    return value


# --- cost of an arm -----------------------------------------------------------------------------

def arm_cost(arm: Arm, budget: Budget, img_size: int = 32, num_classes: int = 10) -> dict:
    """Params and multiply-adds of the arm's model at ``img_size``, and the DSWGs' share."""
    model = create_model(budget.model, img_size=img_size, num_classes=num_classes,
                         **arm.model_options).eval()
    dswg_modules = [m for name, m in model.named_modules() if name.endswith(".dswg")]
    # bench's formulas add what torch's counter misses on CPU: FFTs (5 N log2 N) and attention.
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter, \
            torch.no_grad():
        model(torch.zeros(1, 3, img_size, img_size))
    counts = counter.get_flop_counts()
    dswg_flops = sum(
        sum(ops.values()) for name, ops in counts.items() if name.endswith(".dswg")
    )
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "dswg_params": sum(p.numel() for m in dswg_modules for p in m.parameters()),
        "macs": counter.get_total_flops() // 2,
        "dswg_macs": dswg_flops // 2,
    }


# --- provenance -----------------------------------------------------------------------------

def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "") if out.returncode == 0 \
            else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: str) -> dict:
    """Command, commit, versions and machine, stored with every result."""
    return {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "git_commit": _git_commit(),
        "device": device,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "environment": environment_info(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# --- running ------------------------------------------------------------------------------------

def _run_path(out: Path, dataset: str, arm: Arm, budget: Budget, seed: int) -> Path:
    return out / "runs" / dataset / f"{arm.key(budget, dataset)}-seed{seed}.json"


def run_arm(arm: Arm, dataset: str, seed: int, budget: Budget, *, device: str = "cpu",
            progress: bool = False) -> dict:
    """Trains one arm once; returns the JSON-able run record."""
    config = TrainConfig(
        model=budget.model, model_options=dict(arm.model_options), data=DATASETS[dataset],
        n_train=budget.n_train, n_test=budget.n_test, epochs=budget.epochs,
        batch_size=budget.batch_size, lr=budget.lr, weight_decay=budget.weight_decay,
        warmup_epochs=min(1.0, budget.epochs), seed=seed, device=device, out=None,
        progress=progress, handle_signals=False,
    )
    result = train(config)
    return {
        "arm": arm.name,
        "seed": seed,
        "config": config.to_dict(),
        "test_top1": result.final["test_top1"],
        "best_test_top1": result.final.get("best_test_top1"),
        "train_loss": result.final.get("train_loss"),
        "test_top1_per_epoch": [row.get("test_top1") for row in result.history],
        "wall_time_s": round(result.wall_time_s, 2),
        "train_images_per_s": round(result.train_images_per_s, 1),
        "num_params": result.num_params,
    }


def _summary(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def run_study(
    study: str | Study,
    dataset: str,
    *,
    seeds: int = 3,
    budget: Budget | None = None,
    out: str | os.PathLike = "runs/ablation",
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Runs (or reuses) every arm x seed of ``study`` on ``dataset``; writes and returns the
    study record ``<out>/<study>-<dataset>.json``.

    ``dataset``: a key of :data:`DATASETS`. Finished runs found under ``<out>/runs`` are reused,
    so an interrupted study resumes where it stopped.
    """
    if isinstance(study, str):
        study = STUDIES[_choice("study", study, list(STUDIES))]
    _choice("dataset", dataset, list(DATASETS))
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    budget = budget or Budget()
    out = Path(out)
    started = time.perf_counter()
    arms, trained = [], 0
    jobs = [(arm, seed) for arm in study.arms for seed in range(seeds)]
    from tqdm.auto import tqdm

    bar = tqdm(jobs, desc=f"{study.name} / {dataset}", disable=not progress, leave=False)
    runs: dict[str, list[dict]] = {arm.name: [] for arm in study.arms}
    for arm, seed in bar:
        path = _run_path(out, dataset, arm, budget, seed)
        if path.exists():
            record = json.loads(path.read_text())
        else:
            record = run_arm(arm, dataset, seed, budget, device=device)
            _write_json(path, record)
            trained += 1
        record = {**record, "arm": arm.name}
        runs[arm.name].append(record)
        bar.set_postfix(arm=arm.name, seed=seed, top1=f"{record['test_top1']:.1f}")
    for arm in study.arms:
        accuracies = [r["test_top1"] for r in runs[arm.name]]
        arms.append({
            "name": arm.name,
            "model_options": arm.model_options,
            "cost": arm_cost(arm, budget),
            "test_top1": _summary(accuracies),
            "runs": runs[arm.name],
        })
    reference = {r["seed"]: r["test_top1"] for r in runs[study.reference]}
    paired = []
    for arm in study.arms:
        if arm.name == study.reference:
            continue
        diffs = [r["test_top1"] - reference[r["seed"]] for r in runs[arm.name]]
        paired.append({"arm": arm.name, "minus": study.reference, "diffs": diffs,
                       **_summary(diffs)})
    record = {
        "schema": SCHEMA,
        "study": study.name,
        "question": study.question,
        "paper": study.paper,
        "dataset": dataset,
        "data": DATASETS[dataset],
        "seeds": seeds,
        "budget": asdict(budget),
        "reference": study.reference,
        "arms": arms,
        "paired_differences": paired,
        "runs_trained_now": trained,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "train_wall_time_s": round(sum(r["wall_time_s"] for v in runs.values() for r in v), 1),
        "provenance": provenance(device),
    }
    _write_json(out / f"{study.name}-{dataset}.json", record)
    return record


def _write_json(path: Path, record: dict) -> None:
    """Temp file + rename: a killed run never leaves half a JSON behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def load_study(path: str | os.PathLike) -> dict:
    """Reads a study record and checks its schema."""
    record = json.loads(Path(path).read_text())
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a {SCHEMA} record (schema={record.get('schema')!r})")
    return record


def study_table(record: dict) -> str:
    """Plain-text table: arm, test top-1 mean +- std, paired difference, params, DSWG cost."""
    paired = {p["arm"]: p for p in record["paired_differences"]}
    lines = [
        f"{record['study']} on {record['dataset']} ({record['seeds']} seeds, "
        f"{record['budget']['epochs']} epochs, {record['budget']['n_train']} train images)",
        f"{'arm':<18} {'top-1 %':>14} {'vs ' + record['reference']:>22} {'params':>9} "
        f"{'DSWG params':>11} {'MMACs':>7}",
    ]
    for arm in record["arms"]:
        acc = arm["test_top1"]
        diff = paired.get(arm["name"])
        diff_text = f"{diff['mean']:+.2f} +- {diff['std']:.2f}" if diff else "reference"
        cost = arm["cost"]
        lines.append(
            f"{arm['name']:<18} {acc['mean']:>7.2f} +- {acc['std']:<4.2f} {diff_text:>22} "
            f"{cost['params']:>9,} {cost['dswg_params']:>11,} {cost['macs'] / 1e6:>7.2f}"
        )
    return "\n".join(lines)


def verdict(record: dict, arm: str) -> str:
    """One stable sentence on ``arm`` vs the reference: is the paired difference beyond
    two standard errors?"""
    diff = next(p for p in record["paired_differences"] if p["arm"] == arm)
    if diff["n"] < 2:
        return f"{arm} vs {diff['minus']}: one seed, no spread to judge by"
    stderr = diff["std"] / math.sqrt(diff["n"])
    if abs(diff["mean"]) <= 2 * stderr:
        word = "no clear difference from"
    else:
        word = "better than" if diff["mean"] > 0 else "worse than"
    return f"{arm} is {word} {diff['minus']} on {record['dataset']}"


# --- command line -------------------------------------------------------------------------------

def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Budget()
    parser.add_argument("--study", default="all",
                        help=f"one of {', '.join(STUDIES)}, or all (default)")
    parser.add_argument("--data", default="both",
                        help=f"one of {', '.join(DATASETS)}, or both (default)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--n-train", dest="n_train", type=int, default=defaults.n_train)
    parser.add_argument("--n-test", dest="n_test", type=int, default=defaults.n_test)
    parser.add_argument("--batch-size", dest="batch_size", type=int,
                        default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/ablation",
                        help="folder for <study>-<data>.json and the per-run cache")
    parser.add_argument("--json", action="store_true",
                        help="print the study records as JSON instead of tables")


def cli_main(args: argparse.Namespace) -> int:
    try:
        studies = list(STUDIES) if args.study == "all" else [
            _choice("study", args.study, [*STUDIES, "all"])]
        datasets = list(DATASETS) if args.data == "both" else [
            _choice("data", args.data, [*DATASETS, "both"])]
        for name in ("seeds", "epochs", "n_train", "n_test", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        budget = Budget(model=args.model, epochs=args.epochs, n_train=args.n_train,
                        n_test=args.n_test, batch_size=args.batch_size, lr=args.lr)
    except ValueError as err:
        print(f"dsm_ref ablate: error: {err}", file=sys.stderr)
        return 2
    records = []
    for dataset in datasets:
        for study in studies:
            record = run_study(study, dataset, seeds=args.seeds, budget=budget, out=args.out,
                               device=args.device)
            records.append(record)
            if not args.json:
                print(study_table(record), end="\n\n", flush=True)
    if args.json:
        print(json.dumps(records, indent=1))
    return 0

