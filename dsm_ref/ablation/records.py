"""A study's and a budget curve's record: every arm x seed run (or reused), gathered with the
per-arm summary, the paired statistics, the cost and the provenance, and written as JSON.

``python -m dsm_ref ablate --study all --data both --out DIR`` writes one record per study and
dataset, ``<out>/<study>-<data>.json`` (schema :data:`SCHEMA`); runs are stored one JSON per
(dataset, arm configuration, seed) under ``<out>/runs/``.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from ..checks import check_choice
from ..files import atomic_write_json
from ..provenance import provenance
from .report import paired_statistics
from .sharing import run_all
from .studies import CURVE_ARMS, CURVE_SCHEMA, SCHEMA, STUDIES, STUDY_DATA, Budget, Study, arm_cost

__all__ = ["run_study", "run_budget_curve"]

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

    ``dataset``: a key of :data:`STUDY_DATA`. Finished runs found under ``<out>/runs`` are reused,
    so an interrupted study resumes where it stopped.
    """
    if isinstance(study, str):
        study = STUDIES[check_choice("study", study, list(STUDIES))]
    check_choice("dataset", dataset, list(STUDY_DATA))
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    budget = budget or Budget()
    out = Path(out)
    started = time.perf_counter()
    arms = []
    jobs = [(arm, budget, seed) for arm in study.arms for seed in range(seeds)]
    records, trained = run_all(jobs, dataset, out, device=device, progress=progress,
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
        "data": STUDY_DATA[dataset],
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
    atomic_write_json(out / f"{study.name}-{dataset}.json", record)
    return record


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
    check_choice("dataset", dataset, list(STUDY_DATA))
    base = base or Budget()
    out = Path(out)
    arms = [STUDIES["transform"].arm(name) for name in CURVE_ARMS]
    jobs = [(arm, dataclasses.replace(base, n_train=n_train, epochs=epochs), seed)
            for n_train, epochs in budgets for arm in arms for seed in range(seeds)]
    records, _ = run_all(jobs, dataset, out, device=device, progress=progress,
                          desc=f"budget curve / {dataset}")
    rows = [{"arm": arm.name, "n_train": budget.n_train, "epochs": budget.epochs, "seed": seed,
             "test_top1": record["test_top1"], "train_loss": record["train_loss"],
             "wall_time_s": record["wall_time_s"]}
            for (arm, budget, seed), record in zip(jobs, records, strict=True)]
    curve = {"schema": CURVE_SCHEMA, "dataset": dataset, "data": STUDY_DATA[dataset],
             "base_budget": asdict(base), "arms": list(CURVE_ARMS), "budgets": budgets,
             "seeds": seeds, "rows": rows, "provenance": provenance(device)}
    atomic_write_json(out / f"budget_curve-{dataset}.json", curve)
    return curve
