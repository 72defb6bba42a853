"""Reading stored records: schema check, paired statistics (recomputed for records stored before
they were part of the schema), the plain-text tables, the one-sentence verdicts and the markdown
report. Records name their headline metric (``metric``; test top-1 in records stored before
dense studies) and may hold secondary metrics, each a family of its own."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from pathlib import Path

from ..stats import adjust_family, format_comparison, paired_comparison
from ..train.tasks import METRIC_LABELS
from .studies import DENSE_STUDIES, SCHEMA, STUDIES, Study

__all__ = ["paired_statistics", "with_statistics", "load_study", "study_table", "verdict",
           "study_markdown", "quality_line", "curve_table", "METRIC_LABELS"]

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


def _study_of(record: dict) -> Study:
    """The study a record was made by, in its current wording (a stand-in without claims for
    one that no longer exists)."""
    return ({**STUDIES, **DENSE_STUDIES}.get(record["study"])
            or Study(record["study"], "", "", (), record["reference"]))


def with_statistics(record: dict) -> dict:
    """``record`` with its paired differences (re)computed by :func:`paired_statistics`, for
    records stored before intervals and p-values were part of the schema; the secondary
    metrics' families too."""
    study = _study_of(record)

    def recomputed(rows: list[dict]) -> list[dict]:
        return paired_statistics(study, {p["arm"]: p["diffs"] for p in rows})

    return {**record, "paired_differences": recomputed(record["paired_differences"]),
            "secondary_paired_differences": {
                metric: recomputed(rows)
                for metric, rows in record.get("secondary_paired_differences", {}).items()}}


def load_study(path: str | os.PathLike) -> dict:
    """Reads a study record and checks its schema."""
    record = json.loads(Path(path).read_text())
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a {SCHEMA} record (schema={record.get('schema')!r})")
    return record


# How each metric is labelled in the tables.


def _metrics(record: dict) -> list[str]:
    """The record's metrics, headline first (classification records before the field existed:
    test top-1)."""
    headline = record.get("metric", "test_top1")
    return [headline, *record.get("secondary_paired_differences", {})]


def _paired_rows(record: dict, metric: str) -> list[dict]:
    record = with_statistics(record)
    if metric == record.get("metric", "test_top1"):
        return record["paired_differences"]
    return record["secondary_paired_differences"][metric]


def _setting(record: dict) -> str:
    budget = record["budget"]
    units = "train images" if record.get("task", "classify") == "classify" else "train canvases"
    size = f" at {budget['img_size']} px" if budget.get("img_size") else ""
    return (f"{record['seeds']} seeds, {budget['epochs']} epochs, {budget['n_train']} {units}"
            f"{size}, {budget['n_test']} test {units.split()[1]}")


def _table(record: dict, metric: str) -> list[dict]:
    """One row per arm of one metric's table: mean and std, the paired difference to the
    reference with its 95 % interval, p, Holm p and verdict as text, params and MACs."""
    paired = {p["arm"]: p for p in _paired_rows(record, metric)}
    rows = []
    for arm in record["arms"]:
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
        rows.append({"name": arm["name"], "mean": arm[metric]["mean"],
                     "std": arm[metric]["std"], "diff": diff_text, "p": p_text,
                     "holm": holm_text, "verdict": word, "params": arm["cost"]["params"],
                     "macs": arm["cost"]["macs"]})
    return rows


def study_table(record: dict, metric: str | None = None) -> str:
    """Plain-text table of ``metric`` (default: every metric of the record, headline first):
    arm, mean +- std, the paired difference to the reference with its 95 % interval, paired
    t-test p and Holm-adjusted p, the verdict, and the cost; then the quality check of a dense
    study."""
    lines = [f"{record['study']} on {record['dataset']} ({_setting(record)})"]
    for name in [metric] if metric else _metrics(record):
        lines.append(
            f"{'arm':<26} {METRIC_LABELS.get(name, name):>14}  "
            f"{'minus ' + record['reference'] + ' [95% CI]':<28} "
            f"{'p':>7} {'Holm p':>7}  {'verdict':<12} {'params':>9} {'MMACs':>7}")
        lines += [f"{r['name']:<26} {r['mean']:>7.2f} +- {r['std']:<4.2f}  {r['diff']:<28} "
                  f"{r['p']:>7} {r['holm']:>7}  {r['verdict']:<12} {r['params']:>9,} "
                  f"{r['macs'] / 1e6:>7.2f}" for r in _table(record, name)]
    if record.get("quality"):
        lines.append(quality_line(record))
    return "\n".join(lines)


def quality_line(record: dict) -> str:
    """One sentence on a dense study's per-run minimum quality (:data:`QUALITY_MARGIN`)."""
    quality = record["quality"]
    metric, label = quality["metric"], METRIC_LABELS.get(quality["metric"], quality["metric"])
    base = quality["baseline"]
    text = (f"quality floor: every run's {label.removesuffix(' %')} at least its trivial "
            f"baseline ({base['mean']:.2f} +- {base['std']:.2f}) + {quality['margin']:g}: ")
    if not quality["below_floor"]:
        return text + f"all {quality['runs']} runs pass"
    below = ", ".join(f"{b['arm']} seed {b['seed']} ({b[metric]:.2f} < {b['floor']:.2f})"
                      for b in quality["below_floor"])
    return text + f"{len(quality['below_floor'])} of {quality['runs']} runs below: {below}"


def verdict(record: dict, arm: str, metric: str | None = None) -> str:
    """One sentence on ``arm`` vs the reference in ``metric`` (default: the headline): the
    paired difference with its interval and p-values, and the verdict on the study's claim for
    that arm."""
    metric = metric or record.get("metric", "test_top1")
    diff = next(p for p in _paired_rows(record, metric) if p["arm"] == arm)
    comparison = paired_comparison(arm, diff["diffs"], [0.0] * len(diff["diffs"]))
    comparison = dataclasses.replace(comparison, p_holm=(
        diff["p_holm"] if diff["p_holm"] is not None else math.nan))
    claim = {1: f"claim: better than {diff['minus']}", -1: f"claim: worse than {diff['minus']}",
             None: "no directional claim"}[diff["expected"]]
    word = diff["verdict"] or "no verdict"
    what = "" if metric == "test_top1" else f" ({METRIC_LABELS.get(metric, metric)})"
    return (f"{arm} - {diff['minus']} on {record['dataset']}{what}: "
            f"{format_comparison(comparison)} -> {word} ({claim})")


def study_markdown(record: dict) -> str:
    """The study's report as markdown: the question and the paper's claim, the setting, one
    table per metric, the verdict sentences, the quality check, the pretraining run and the
    provenance."""
    study = _study_of(record)
    lines = [f"# {record['study']} on {record['dataset']} ({record['data']})", "",
             f"**Question.** {record['question']}", "", f"**Paper.** {record['paper']}", "",
             f"**Setting.** {_setting(record)}; body {record['budget']['model']}"
             + (f" with {record['budget']['model_options']}"
                if record["budget"].get("model_options") else "")
             + f", batch {record['budget']['batch_size']}, lr {record['budget']['lr']:g}, "
             f"weight decay {record['budget']['weight_decay']:g}; paired starts (every arm of a "
             "seed starts from the same weights wherever the arms share them). Differences "
             f"are arm minus {record['reference']} at the same seed, in points; p from a "
             "paired t-test over seeds, Holm-adjusted within each metric.", ""]
    for metric in _metrics(record):
        label = METRIC_LABELS.get(metric, metric)
        lines += [f"## {label.removesuffix(' %')}", "",
                  f"| arm | {label} | minus {record['reference']} [95% CI] | p | Holm p | "
                  "verdict | params | MMACs |",
                  "|---|---:|---|---:|---:|---|---:|---:|",
                  *(f"| {r['name']} | {r['mean']:.2f} +- {r['std']:.2f} | {r['diff']} | "
                    f"{r['p']} | {r['holm']} | {r['verdict']} | {r['params']:,} | "
                    f"{r['macs'] / 1e6:.2f} |" for r in _table(record, metric)), ""]
        lines += [f"- {verdict(record, arm.name, metric)}" for arm in study.arms
                  if arm.name != record["reference"]
                  and any(p["arm"] == arm.name for p in _paired_rows(record, metric))]
        lines.append("")
    if record.get("quality"):
        lines += [quality_line(record), ""]
    for pre in record.get("pretraining", []):
        lines += [f"Pretraining of {pre['arm']!r}: classification on {pre['dataset']} (seed "
                  f"{pre['seed']}, {pre['budget']['epochs']} epochs, {pre['budget']['n_train']} "
                  f"images), test top-1 {pre['test_top1']:.2f} %, {pre['wall_time_s']:.0f} s; "
                  f"run `{pre['run']}`, weights `{pre['weights']}`.", ""]
    prov = record["provenance"]
    git = prov.get("git") or {}
    lines.append(f"Trained {record['runs_trained_now']} runs now; training wall time "
                 f"{record['train_wall_time_s']:.0f} s. Commit "
                 f"{str(git.get('commit') or prov.get('git_commit') or '?')[:12]}"
                 f"{' (dirty)' if git.get('dirty') else ''}, {prov.get('date', '?')}, "
                 f"{prov.get('cpu_model') or prov.get('device', '?')}, "
                 f"{prov.get('torch_threads', '?')} thread(s).")
    return "\n".join(lines)


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
