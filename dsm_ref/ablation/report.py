"""Reading stored records: schema check, paired statistics (recomputed for records stored before
they were part of the schema), the plain-text tables and the one-sentence verdicts."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from pathlib import Path

from ..stats import adjust_family, format_comparison, paired_comparison
from .studies import SCHEMA, STUDIES, Study

__all__ = ["paired_statistics", "with_statistics", "load_study", "study_table", "verdict",
           "curve_table"]

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
