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
import base64
import dataclasses
import hashlib
import inspect
import json
import math
import os
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .bench import EXTRA_FLOP_FORMULAS
from .data import build_datasets
from .dswg import DynamicSpectrumWeights
from .models import TOKEN_MIXERS, create_model
from .provenance import provenance
from .stats import adjust_family, format_comparison, paired_comparison
from .train import TrainConfig, predict, train
from .utils import atomic_torch_save

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
CURVE_SCHEMA = "dsm_ref.budget_curve/v1"
# The two datasets of every study: real photos, and a synthetic task whose informative band
# varies by image (dsm_ref.data.SPECTRAL_TASKS["band_shift"]).
DATASETS = {"cifar10": "cifar10", "spectral": "spectral/band_shift",
            "distractors": "spectral/distractors"}


@dataclass(frozen=True)
class Arm:
    """One configuration of a study: ``create_model(budget.model, **model_options)``.

    ``expected``: the sign the study's claim predicts for ``arm - reference`` (+1 better, -1
    worse), or ``None`` where the claim predicts no direction; verdicts are worded from it.
    """

    name: str
    model_options: dict[str, Any]
    expected: int | None = None

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
            (Arm("dynamic", _dsm(), expected=+1), Arm("static", _mixer("static")),
             Arm("L=1 (A/A control)", _dsm(spectrum_length=1))),
            reference="static",
        ),
        Study(
            "dswg_form",
            "Does the DSWG select bands per image once its MLP can learn (normalised "
            "descriptors, unit-scale first layer), where its first form did not?",
            "dynamic weights help (the paper); the form of the DSWG's MLP input and init is ours",
            (Arm("DSWG", _dsm(), expected=+1), Arm("static", _mixer("static")),
             Arm("DSWG, first form", _dsm(descriptor_norm=False, hidden_init="small"))),
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
                Arm("DCT static", _mixer("static"), expected=-1),
                Arm("DFT dynamic", _mixer("gfnet_dynamic"), expected=-1),
                Arm("DFT static", _mixer("gfnet"), expected=-1),
                Arm("no mixing", _mixer("identity"), expected=-1),
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
            "How does the DSM mixer compare with its static twin, GFNet's filter, DFFormer's "
            "dynamic filter, attention and a depthwise conv in the same body?",
            "DSM beats transformer- and MLP-like mixers at similar cost; the dynamic filter "
            "(per-image mixing of DFT filters) is ours to add: the closest peer",
            (
                Arm("DSM", _dsm()),
                Arm("static twin", _mixer("static"), expected=-1),
                Arm("GFNet filter", _mixer("gfnet"), expected=-1),
                Arm("dynamic filter", _mixer("dynamic_filter"), expected=-1),
                Arm("attention", _mixer("attention"), expected=-1),
                Arm("depthwise 7x7", _mixer("dwconv"), expected=-1),
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
                Arm("dynamic, random", _dsm(static_init="random"), expected=+1),
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


# --- running ------------------------------------------------------------------------------------

def _run_path(out: Path, dataset: str, arm: Arm, budget: Budget, seed: int) -> Path:
    return out / "runs" / dataset / f"{arm.key(budget, dataset)}-seed{seed}.json"


def weights_path(out: str | os.PathLike, dataset: str, arm: Arm, budget: Budget,
                 seed: int) -> Path:
    """Where :func:`run_study` stores the trained weights of one run."""
    return Path(out) / "weights" / dataset / f"{arm.key(budget, dataset)}-seed{seed}.pt"


def arm_config(arm: Arm, dataset: str, seed: int, budget: Budget, *, device: str = "cpu",
               work_dir: str | os.PathLike | None = None, progress: bool = False) -> TrainConfig:
    """The training configuration of one run of ``arm`` (see :func:`run_arm`)."""
    return TrainConfig(
        model=budget.model, model_options=dict(arm.model_options), data=DATASETS[dataset],
        n_train=budget.n_train, n_test=budget.n_test, epochs=budget.epochs,
        batch_size=budget.batch_size, lr=budget.lr, weight_decay=budget.weight_decay,
        warmup_epochs=min(1.0, budget.epochs), seed=seed, device=device,
        out=None if work_dir is None else str(work_dir),
        resume=None if work_dir is None else "auto",
        progress=progress, handle_signals=False,
    )


def run_arm(arm: Arm, dataset: str, seed: int, budget: Budget, *, device: str = "cpu",
            progress: bool = False, work_dir: str | os.PathLike | None = None,
            weights_path: str | os.PathLike | None = None) -> dict:
    """Trains one arm once; returns the JSON-able run record.

    ``work_dir``: where the run checkpoints after every epoch and resumes from if it was
    killed (removed once the run is done); ``None`` trains in memory. ``weights_path``: also
    store the trained weights there (half precision, a few hundred kB for ``dsm_micro``).
    """
    config = arm_config(arm, dataset, seed, budget, device=device, work_dir=work_dir,
                        progress=progress)
    started = provenance(device)
    datasets = build_datasets(config.data, n_train=config.n_train, n_test=config.n_test,
                              seed=config.seed, progress=False)
    result = train(config, datasets=datasets)
    logits, labels = predict(result.model, datasets.test, device=device)
    if weights_path is not None:
        save_weights(result.model, weights_path)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "arm": arm.name,
        "seed": seed,
        "config": config.to_dict(),
        "provenance": {**started, "data_source": datasets.source,
                       "data_info": datasets.info},
        "test_predictions": encode_predictions(logits.argmax(1)),
        "test_labels_sha256": hashlib.sha256(
            labels.to(torch.uint8).numpy().tobytes()).hexdigest()[:16],
        "test_top1": result.final["test_top1"],
        "best_test_top1": result.final.get("best_test_top1"),
        "train_loss": result.final.get("train_loss"),
        "test_top1_per_epoch": [row.get("test_top1") for row in result.history],
        "wall_time_s": round(result.wall_time_s, 2),
        "train_images_per_s": round(result.train_images_per_s, 1),
        "num_params": result.num_params,
    }


def save_weights(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """The model's state dict in half precision (floats only), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    atomic_torch_save(state, path)
    return path


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Loads :func:`save_weights`' file into ``model`` (cast to its dtype); returns it."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    reference = model.state_dict()
    model.load_state_dict({k: v.to(reference[k].dtype) if k in reference else v
                           for k, v in state.items()})
    return model


def encode_predictions(predictions: torch.Tensor) -> str:
    """Per-image predicted classes ``(N,)`` as base64 of one uint8 each (10,000 -> 13 kB)."""
    if predictions.numel() and (predictions.min() < 0 or predictions.max() > 255):
        raise ValueError("predictions must be class indices in [0, 255]")
    return base64.b64encode(predictions.to(torch.uint8).numpy().tobytes()).decode("ascii")


def decode_predictions(text: str) -> torch.Tensor:
    """Inverse of :func:`encode_predictions`: ``(N,)`` int64 class indices."""
    raw = bytearray(base64.b64decode(text.encode("ascii"), validate=True))
    return torch.frombuffer(raw, dtype=torch.uint8).long() if raw else torch.zeros(0).long()


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
    save_weights_for_seeds: tuple[int, ...] = (),
) -> dict:
    """Runs (or reuses) every arm x seed of ``study`` on ``dataset``; writes and returns the
    study record ``<out>/<study>-<dataset>.json``.

    A run checkpoints every epoch under ``<out>/work/`` and a killed study resumes it from
    there. Runs of the seeds in ``save_weights_for_seeds`` also store their trained weights
    under ``<out>/weights/<dataset>/`` (see :func:`weights_path`).

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
    arms = []
    jobs = [(arm, budget, seed) for arm in study.arms for seed in range(seeds)]
    records, trained = _run_all(jobs, dataset, out, device=device, progress=progress,
                                desc=f"{study.name} / {dataset}",
                                save_weights_for_seeds=save_weights_for_seeds)
    runs: dict[str, list[dict]] = {arm.name: [] for arm in study.arms}
    for (arm, _, _), record in zip(jobs, records, strict=True):
        runs[arm.name].append(record)
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
    paired = paired_statistics(study, {
        arm.name: [r["test_top1"] - reference[r["seed"]] for r in runs[arm.name]]
        for arm in study.arms if arm.name != study.reference})
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


_CLAIM_POLL_S = 10.0


def _run_all(jobs: list[tuple[Arm, Budget, int]], dataset: str, out: Path, *, device: str,
             progress: bool, desc: str, save_weights_for_seeds: tuple[int, ...] = ()
             ) -> tuple[list[dict], int]:
    """Each job's run record (in job order) and how many were trained now; a finished run is
    read from ``<out>/runs``, and runs another process has claimed are waited for, so several
    processes can share one study (one thread each on a small CPU)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False)
    records: dict[int, dict] = {}
    trained = 0
    pending = list(range(len(jobs)))
    while pending:
        deferred = []
        for index in pending:
            arm, budget, seed = jobs[index]
            path = _run_path(out, dataset, arm, budget, seed)
            if not path.exists():
                with _claim(path) as claimed:
                    if not claimed:
                        deferred.append(index)
                        continue
                    if not path.exists():  # another process may have finished it meanwhile
                        record = run_arm(
                            arm, dataset, seed, budget, device=device,
                            work_dir=out / "work" / dataset / path.stem,
                            weights_path=(weights_path(out, dataset, arm, budget, seed)
                                          if seed in save_weights_for_seeds else None))
                        _write_json(path, record)
                        trained += 1
            records[index] = {**json.loads(path.read_text()), "arm": arm.name}
            bar.update()
            bar.set_postfix(arm=arm.name, seed=seed, top1=f"{records[index]['test_top1']:.1f}")
        if len(deferred) == len(pending):
            time.sleep(_CLAIM_POLL_S)
        pending = deferred
    bar.close()
    return [records[i] for i in range(len(jobs))], trained


@contextmanager
def _claim(run_path: Path):
    """Claims one run for this process with an exclusive ``<run>.claim`` file holding its pid,
    so several processes can work through one study; yields whether the claim succeeded. A
    claim whose process is gone (killed) is taken over: the run resumes from its checkpoint."""
    claim = run_path.with_suffix(".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(claim.read_text() or "0")
                fresh = time.time() - claim.stat().st_mtime < 30  # its pid may not be written yet
            except (OSError, ValueError):
                holder, fresh = 0, True
            if (holder and _alive(holder)) or (not holder and fresh):
                yield False
                return
            claim.unlink(missing_ok=True)  # a dead holder: take its run over
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        try:
            yield True
        finally:
            claim.unlink(missing_ok=True)
        return
    yield False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def paired_statistics(study: Study, diffs: dict[str, list[float]]) -> list[dict]:
    """Per non-reference arm: the per-seed differences to the reference, their mean, 95 %
    interval, paired t-test p, Holm-adjusted p across the study's comparisons, and the verdict
    on the arm's expected sign ("supported", "not shown", "contradicted"; ``None`` without a
    directional claim)."""
    comparisons = adjust_family([
        paired_comparison(name, values, [0.0] * len(values)) for name, values in diffs.items()])
    rows = []
    for comparison in comparisons:
        expected = next((a.expected for a in study.arms if a.name == comparison.name), None)
        row = comparison.to_dict()
        rows.append({"arm": row.pop("name"), "minus": study.reference, **row,
                     "expected": expected,
                     "verdict": comparison.verdict(expected_sign=expected) if expected else None})
    return rows


def with_statistics(record: dict) -> dict:
    """``record`` with its paired differences (re)computed by :func:`paired_statistics`, for
    records stored before intervals and p-values were part of the schema."""
    study = STUDIES.get(record["study"]) or Study(record["study"], "", "", (),
                                                  record["reference"])
    diffs = {p["arm"]: p["diffs"] for p in record["paired_differences"]}
    return {**record, "paired_differences": paired_statistics(study, diffs)}


# The arms whose gap tells whether a budget lets token mixing matter at all.
CURVE_ARMS = ("DCT dynamic", "DCT static", "no mixing")


def run_budget_curve(
    dataset: str,
    budgets: list[tuple[int | None, int]],
    *,
    seeds: int = 1,
    base: Budget | None = None,
    out: str | os.PathLike = "runs/ablation",
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Test top-1 of the dynamic, static and no-mixing arms (:data:`CURVE_ARMS`) at each
    ``(n_train, epochs)`` of ``budgets``: where does token mixing start to matter?

    Every other setting comes from ``base``. Runs share the study run cache under
    ``<out>/runs``; the record is written to ``<out>/budget_curve-<dataset>.json``.
    """
    _choice("dataset", dataset, list(DATASETS))
    base = base or Budget()
    out = Path(out)
    arms = [STUDIES["transform"].arm(name) for name in CURVE_ARMS]
    jobs = [(arm, dataclasses.replace(base, n_train=n_train, epochs=epochs), seed)
            for n_train, epochs in budgets for arm in arms for seed in range(seeds)]
    records, _ = _run_all(jobs, dataset, out, device=device, progress=progress,
                          desc=f"budget curve / {dataset}")
    rows = [{"arm": arm.name, "n_train": budget.n_train, "epochs": budget.epochs, "seed": seed,
             "test_top1": record["test_top1"], "train_loss": record["train_loss"],
             "wall_time_s": record["wall_time_s"]}
            for (arm, budget, seed), record in zip(jobs, records, strict=True)]
    curve = {"schema": CURVE_SCHEMA, "dataset": dataset, "data": DATASETS[dataset],
             "base_budget": asdict(base), "arms": list(CURVE_ARMS), "budgets": budgets,
             "seeds": seeds, "rows": rows, "provenance": provenance(device)}
    _write_json(out / f"budget_curve-{dataset}.json", curve)
    return curve


def curve_table(curve: dict) -> str:
    """Plain-text budget curve: one line per budget, mean top-1 of each arm over the seeds, and
    the static arm's lead over no mixing."""
    lines = [f"budget curve on {curve['dataset']} ({curve['seeds']} seed(s), "
             f"{curve['base_budget']['n_test']} test images)",
             f"{'train images':>12} {'epochs':>6} " + " ".join(f"{a:>12}" for a in curve["arms"])
             + f" {'static - none':>14}"]
    for n_train, epochs in curve["budgets"]:
        means = {}
        for arm in curve["arms"]:
            values = [r["test_top1"] for r in curve["rows"] if r["arm"] == arm
                      and r["n_train"] == n_train and r["epochs"] == epochs]
            means[arm] = statistics.fmean(values) if values else math.nan
        lead = means["DCT static"] - means["no mixing"]
        lines.append(f"{n_train:>12} {epochs:>6} "
                     + " ".join(f"{means[a]:>12.2f}" for a in curve["arms"]) + f" {lead:>+14.2f}")
    return "\n".join(lines)


def _write_json(path: Path, record: dict) -> None:
    """Temp file + rename: a killed run never leaves half a JSON behind. The temp name holds the
    process id, because processes sharing a study each write its record when they finish."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_study(path: str | os.PathLike) -> dict:
    """Reads a study record and checks its schema."""
    record = json.loads(Path(path).read_text())
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a {SCHEMA} record (schema={record.get('schema')!r})")
    return record


def study_table(record: dict) -> str:
    """Plain-text table: arm, test top-1 mean +- std, the paired difference to the reference
    with its 95 % interval, paired t-test p and Holm-adjusted p, the verdict, and the cost."""
    record = with_statistics(record)
    paired = {p["arm"]: p for p in record["paired_differences"]}
    lines = [
        f"{record['study']} on {record['dataset']} ({record['seeds']} seeds, "
        f"{record['budget']['epochs']} epochs, {record['budget']['n_train']} train images, "
        f"{record['budget']['n_test']} test images)",
        f"{'arm':<26} {'top-1 %':>14}  {'minus ' + record['reference'] + ' [95% CI]':<28} "
        f"{'p':>7} {'Holm p':>7}  {'verdict':<12} {'params':>9} {'MMACs':>7}",
    ]
    for arm in record["arms"]:
        acc = arm["test_top1"]
        diff = paired.get(arm["name"])
        if diff is None:
            diff_text, p_text, holm_text, word = "reference", "", "", ""
        else:
            low, high = diff["ci95"]
            diff_text = (f"{diff['mean']:+.2f} [{low:+.2f}, {high:+.2f}]" if low is not None
                         else f"{diff['mean']:+.2f} (one seed)")
            p_text = f"{diff['p']:.2g}" if diff["p"] is not None else "-"
            holm_text = f"{diff['p_holm']:.2g}" if diff["p_holm"] is not None else "-"
            word = diff["verdict"] or "(no claim)"
        cost = arm["cost"]
        lines.append(
            f"{arm['name']:<26} {acc['mean']:>7.2f} +- {acc['std']:<4.2f}  {diff_text:<28} "
            f"{p_text:>7} {holm_text:>7}  {word:<12} {cost['params']:>9,} "
            f"{cost['macs'] / 1e6:>7.2f}"
        )
    return "\n".join(lines)


def verdict(record: dict, arm: str) -> str:
    """One sentence on ``arm`` vs the reference: the paired difference with its interval and
    p-values, and the verdict on the study's claim for that arm."""
    diff = next(p for p in with_statistics(record)["paired_differences"] if p["arm"] == arm)
    comparison = paired_comparison(arm, diff["diffs"], [0.0] * len(diff["diffs"]))
    comparison = dataclasses.replace(comparison, p_holm=(
        diff["p_holm"] if diff["p_holm"] is not None else math.nan))
    claim = {1: f"claim: better than {diff['minus']}", -1: f"claim: worse than {diff['minus']}",
             None: "no directional claim"}[diff["expected"]]
    word = diff["verdict"] or "no verdict"
    return (f"{arm} - {diff['minus']} on {record['dataset']}: {format_comparison(comparison)}"
            f" -> {word} ({claim})")


# --- command line -------------------------------------------------------------------------------

def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Budget()
    parser.add_argument("--study", default="all",
                        help=f"one of {', '.join(STUDIES)}, or all (default)")
    parser.add_argument("--data", default="both",
                        help=f"one of {', '.join(DATASETS)}, or both (default: cifar10 and "
                             "spectral)")
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
    parser.add_argument("--curve", default=None, metavar="NxE,...",
                        help="instead of studies: the budget curve of the dynamic, static and "
                             "no-mixing arms at these train-set sizes x epochs, e.g. "
                             "2000x6,10000x15 (n_test etc. from the other options)")
    parser.add_argument("--save-weights", dest="save_weights", default="", metavar="SEEDS",
                        help="comma-separated seeds whose runs also store their trained "
                             "weights under <out>/weights (e.g. 0)")
    parser.add_argument("--json", action="store_true",
                        help="print the study records as JSON instead of tables")


def _parse_curve(text: str) -> list[tuple[int, int]]:
    budgets = []
    for item in text.split(","):
        n_train, sep, epochs = item.strip().partition("x")
        if not (sep and n_train.isdigit() and epochs.isdigit()) or int(n_train) < 1 \
                or int(epochs) < 1:
            raise ValueError(f"--curve takes N_TRAINxEPOCHS items like 2000x6,10000x15; "
                             f"got {item.strip()!r}")
        budgets.append((int(n_train), int(epochs)))
    return budgets


def cli_main(args: argparse.Namespace) -> int:
    try:
        studies = list(STUDIES) if args.study == "all" else [
            _choice("study", args.study, [*STUDIES, "all"])]
        datasets = ["cifar10", "spectral"] if args.data == "both" else [
            _choice("data", args.data, [*DATASETS, "both"])]
        for name in ("seeds", "epochs", "n_train", "n_test", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        budget = Budget(model=args.model, epochs=args.epochs, n_train=args.n_train,
                        n_test=args.n_test, batch_size=args.batch_size, lr=args.lr)
        curve = _parse_curve(args.curve) if args.curve else None
        try:
            weight_seeds = tuple(int(x) for x in args.save_weights.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"--save-weights takes seeds like 0 or 0,1; got "
                             f"{args.save_weights!r}") from None
    except ValueError as err:
        print(f"dsm_ref ablate: error: {err}", file=sys.stderr)
        return 2
    if curve is not None:
        for dataset in datasets:
            record = run_budget_curve(dataset, curve, seeds=args.seeds, base=budget,
                                      out=args.out, device=args.device)
            print(json.dumps(record, indent=1) if args.json else curve_table(record),
                  flush=True)
        return 0
    records = []
    for dataset in datasets:
        for study in studies:
            record = run_study(study, dataset, seeds=args.seeds, budget=budget, out=args.out,
                               device=args.device, save_weights_for_seeds=weight_seeds)
            records.append(record)
            if not args.json:
                print(study_table(record), end="\n\n", flush=True)
    if args.json:
        print(json.dumps(records, indent=1))
    return 0

