"""A study's and a budget curve's record: every arm x seed run (or reused), gathered with the
per-arm summary, the paired statistics, the cost and the provenance, and written as JSON.

``python -m dsm_ref ablate --study all --data both --out DIR`` writes one record per study and
dataset, ``<out>/<study>-<data>.json`` (schema :data:`SCHEMA`), with its report as markdown
beside it (``<out>/<study>-<data>.md``); runs are stored one JSON per (dataset, arm
configuration, seed) under ``<out>/runs/``.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from ..checks import check_choice
from ..files import atomic_write, atomic_write_json
from ..provenance import provenance
from .report import paired_statistics, study_markdown
from .run import run_path, weights_path
from .sharing import run_all
from .studies import (
    CURVE_ARMS,
    CURVE_SCHEMA,
    DENSE_DATA,
    QUALITY_MARGIN,
    SCHEMA,
    STUDIES,
    STUDY_DATA,
    TASK_METRICS,
    Budget,
    Pretraining,
    Study,
    arm_cost,
    data_key,
    data_name,
    data_task,
    default_budget,
    find_study,
    pretraining_run,
)

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
    pretraining: Pretraining | None = None,
) -> dict:
    """Runs (or reuses) every arm x seed of ``study`` on ``dataset``; writes and returns the
    study record ``<out>/<study>-<dataset>.json`` and its report ``<out>/<study>-<dataset>.md``.

    A run checkpoints every epoch under ``<out>/work/`` and a killed study resumes it from
    there. Runs of the seeds in ``save_weights_for_seeds`` also store their trained weights
    under ``<out>/weights/<dataset>/`` (see :func:`weights_path`).

    ``dataset``: a key of :data:`STUDY_DATA` or :data:`DENSE_DATA` (or the dataset it names);
    the study must be one for the data's task. ``budget``: default :func:`default_budget`. Finished
    runs found under ``<out>/runs`` are reused, so an interrupted study resumes where it stopped.

    Every metric of the task (:data:`TASK_METRICS`) gets its per-arm summary and its family of
    paired differences; the first is the headline (``paired_differences``), the others are in
    ``secondary_paired_differences``. Dense studies add ``quality``: the runs below their trivial
    baseline plus :data:`QUALITY_MARGIN`. Arms that start from a classification run
    (``Arm.pretrain``, replaced by ``pretraining`` if given) get it trained first, stored as a run
    of its own on :data:`PRETRAIN_DATA` with its weights, and listed under ``pretraining``.
    """
    if isinstance(study, str):
        study = find_study(study)
    dataset = data_key(dataset)
    task = data_task(dataset)
    if task not in study.tasks:
        fitting = [key for key in (*STUDY_DATA, *DENSE_DATA) if data_task(key) in study.tasks]
        raise ValueError(f"study {study.name!r} is for {'/'.join(study.tasks)} data; "
                         f"{dataset!r} is {task} data; expected one of: {', '.join(fitting)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if pretraining is not None:
        study = dataclasses.replace(study, arms=tuple(
            arm if arm.pretrain is None else dataclasses.replace(arm, pretrain=pretraining)
            for arm in study.arms))
    budget = budget or default_budget(dataset)
    out = Path(out)
    started = time.perf_counter()
    pretrained, pretrained_now = _pretrain(study, dataset, budget, out, device=device,
                                           progress=progress)
    jobs = [(arm, budget, seed) for arm in study.arms for seed in range(seeds)]
    records, trained = run_all(jobs, dataset, out, device=device, progress=progress,
                                desc=f"{study.name} / {dataset}",
                                save_weights_for_seeds=save_weights_for_seeds)
    runs: dict[str, list[dict]] = {arm.name: [] for arm in study.arms}
    for (arm, _, _), record in zip(jobs, records, strict=True):
        runs[arm.name].append(record)
    metrics = TASK_METRICS[task]
    arms = []
    for arm in study.arms:
        first = runs[arm.name][0]
        cost = (arm_cost(arm, budget) if task == "classify" else
                arm_cost(arm, budget, first["img_size"], first["num_classes"], task=task))
        arms.append({
            "name": arm.name,
            "model_options": arm.model_options,
            **({"pretrained_from": pretrained[arm.name]["run"]} if arm.name in pretrained
               else {}),
            "cost": cost,
            **{metric: _summary([r[metric] for r in runs[arm.name]]) for metric in metrics},
            "runs": runs[arm.name],
        })
    paired = {metric: paired_statistics(study, _diffs(study, runs, metric))
              for metric in metrics}
    record = {
        "schema": SCHEMA,
        "study": study.name,
        "question": study.question,
        "paper": study.paper,
        "dataset": dataset,
        "data": data_name(dataset),
        "task": task,
        "metric": metrics[0],
        "seeds": seeds,
        "budget": asdict(budget),
        "reference": study.reference,
        "arms": arms,
        "paired_differences": paired[metrics[0]],
        "secondary_paired_differences": {m: paired[m] for m in metrics[1:]},
        **({"quality": _quality(runs, metrics[0], QUALITY_MARGIN[task])}
           if task in QUALITY_MARGIN else {}),
        **({"pretraining": list(pretrained.values())} if pretrained else {}),
        "runs_trained_now": trained + pretrained_now,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "train_wall_time_s": round(sum(r["wall_time_s"] for v in runs.values() for r in v), 1),
        "provenance": provenance(device),
    }
    atomic_write_json(out / f"{study.name}-{dataset}.json", record)
    atomic_write(out / f"{study.name}-{dataset}.md", study_markdown(record) + "\n")
    return record


def _diffs(study: Study, runs: dict[str, list[dict]], metric: str) -> dict[str, list[float]]:
    """Per non-reference arm, ``metric`` minus the reference's at the same seed, by seed."""
    reference = {r["seed"]: r[metric] for r in runs[study.reference]}
    return {arm.name: [r[metric] - reference[r["seed"]] for r in runs[arm.name]]
            for arm in study.arms if arm.name != study.reference}


def _quality(runs: dict[str, list[dict]], metric: str, margin: float) -> dict:
    """The per-run minimum quality: ``metric`` at least the run's trivial baseline
    (``baseline_<metric>``) plus ``margin`` points; the runs below it, by arm and seed."""
    baselines = [r[f"baseline_{metric}"] for rs in runs.values() for r in rs]
    below = [{"arm": arm, "seed": r["seed"], metric: r[metric],
              "floor": r[f"baseline_{metric}"] + margin}
             for arm, rs in runs.items() for r in rs
             if r[metric] < r[f"baseline_{metric}"] + margin]
    return {"metric": metric, "margin": margin, "baseline": _summary(baselines),
            "runs": len(baselines), "below_floor": below}


def _pretrain(study: Study, dataset: str, budget: Budget, out: Path, *, device: str,
              progress: bool) -> tuple[dict[str, dict], int]:
    """Trains (or reuses) the classification run each pretrained arm of ``study`` starts from,
    with its weights stored; per such arm, what it started from, and how many were trained
    now."""
    arms = [arm for arm in study.arms if arm.pretrain is not None]
    done, trained = {}, 0
    for arm in arms:
        pre_data, pre_arm, pre_budget, seed = pretraining_run(arm, budget, dataset)
        weights = weights_path(out, pre_data, pre_arm, pre_budget, seed)
        stored = run_path(out, pre_data, pre_arm, pre_budget, seed)
        if stored.exists() and not weights.exists():
            raise FileNotFoundError(
                f"the pretraining run {stored} is stored without its weights {weights}; delete "
                "the run record to train it again")
        (record,), now = run_all([(pre_arm, pre_budget, seed)], pre_data, out, device=device,
                                 progress=progress, desc=f"{study.name}: pretraining",
                                 save_weights_for_seeds=(seed,))
        trained += now
        done[arm.name] = {"arm": arm.name, "dataset": pre_data, "seed": seed,
                          "budget": asdict(pre_budget),
                          # relative to the results folder, so a record reads the same anywhere
                          "run": stored.relative_to(out).as_posix(),
                          "weights": weights.relative_to(out).as_posix(),
                          "test_top1": record["test_top1"],
                          "wall_time_s": record["wall_time_s"]}
    return done, trained


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
