"""Paired statistics for ablations whose arms are trained with the same seeds.

Arms that share seeds share data order, initialisation and augmentation draws, so their results
are paired: the per-seed difference ``arm - reference`` removes the seed-to-seed variance both
arms have in common, and a paired t-test on those differences is what a reviewer expects
(:func:`paired_comparison`). A study makes several claims at once, so the p-values of one family
of comparisons are adjusted with Holm's step-down method (:func:`holm`, :func:`adjust_family`),
which controls the family-wise error rate without Bonferroni's loss of power. For two models
scored on the same test images, :func:`mcnemar` tests whether they err on different images.

Every test comes from :mod:`scipy.stats`; only Holm's adjustment, which scipy lacks, is written
here. Differences are in the units of the inputs ("points" when accuracies are in percent).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "PairedComparison",
    "paired_comparison",
    "holm",
    "adjust_family",
    "mcnemar",
    "format_comparison",
]


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True)
class PairedComparison:
    """One arm against its reference over the seeds both were trained with.

    ``diffs`` are the per-seed differences ``arm - reference``; ``std`` is the sample standard
    deviation (``ddof=1``, 0.0 for a single seed); ``ci95`` the t-interval of the mean difference
    and ``p`` the two-sided paired t-test p-value (both nan below two seeds). ``p_holm`` is the
    Holm-adjusted p within the family passed to :func:`adjust_family`; it equals ``p`` until then.
    """

    name: str
    diffs: tuple[float, ...]
    mean: float
    std: float
    n: int
    ci95: tuple[float, float]
    p: float
    p_holm: float

    def to_dict(self) -> dict:
        """A JSON-able dict: tuples become lists and nan becomes ``None`` (JSON has no nan)."""
        return {
            "name": self.name,
            "diffs": [float(d) for d in self.diffs],
            "mean": _none_if_nan(self.mean),
            "std": _none_if_nan(self.std),
            "n": int(self.n),
            "ci95": [_none_if_nan(x) for x in self.ci95],
            "p": _none_if_nan(self.p),
            "p_holm": _none_if_nan(self.p_holm),
        }

    def verdict(self, alpha: float = 0.05, expected_sign: int = +1) -> str:
        """What the comparison says about a claim predicting the sign ``expected_sign``.

        "supported" when the Holm-adjusted p is below ``alpha`` and the mean difference has the
        predicted sign, "contradicted" when it is significant with the opposite sign, and
        "not shown" otherwise (too few seeds, too much noise, or a mean of exactly 0).
        """
        if expected_sign not in (1, -1):
            raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
        if self.n < 2 or not self.p_holm < alpha:  # also catches a nan p_holm
            return "not shown"
        sign = int(np.sign(self.mean))
        if sign == expected_sign:
            return "supported"
        if sign == -expected_sign:
            return "contradicted"
        return "not shown"


def _as_finite_vector(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains non-finite values (nan or inf): {arr.tolist()}")
    return arr


def paired_comparison(
    name: str, arm: Sequence[float], reference: Sequence[float]
) -> PairedComparison:
    """Compare ``arm`` with ``reference``, both listed in the same seed order.

    The mean difference gets a 95% t-interval (``scipy.stats.t``) and a two-sided one-sample
    t-test of the differences against 0 (``scipy.stats.ttest_1samp``, the same as
    ``ttest_rel(arm, reference)``). Degenerate cases with zero spread skip scipy, whose answer
    there is nan: all differences exactly 0 give p = 1.0, all equal and nonzero give p = 0.0
    (the limit of an infinite t); the interval then collapses to the mean.
    """
    a = _as_finite_vector(arm, "arm")
    r = _as_finite_vector(reference, "reference")
    if len(a) != len(r):
        raise ValueError(
            f"arm and reference must be paired by seed: got {len(a)} vs {len(r)} values"
        )
    if len(a) == 0:
        raise ValueError("arm and reference are empty: need at least one seed")
    diffs = a - r
    n = len(diffs)
    mean = float(diffs.mean())
    if n < 2:
        std, ci95, p = 0.0, (math.nan, math.nan), math.nan
    else:
        std = float(diffs.std(ddof=1))
        if std == 0.0:
            ci95 = (mean, mean)
            p = 1.0 if mean == 0.0 else 0.0
        else:
            lo, hi = stats.t.interval(0.95, df=n - 1, loc=mean, scale=std / math.sqrt(n))
            ci95 = (float(lo), float(hi))
            p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return PairedComparison(
        name=name,
        diffs=tuple(float(d) for d in diffs),
        mean=mean,
        std=std,
        n=n,
        ci95=ci95,
        p=p,
        p_holm=p,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The k-th smallest of m p-values is multiplied by ``m - k + 1``; a running maximum keeps the
    adjusted values in the order of the raw ones, and they are capped at 1. A nan (a comparison
    that could not be tested) stays nan and does not count in m.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be a 1-D sequence, got shape {p.shape}")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0.0) | (p[valid] > 1.0)):
        raise ValueError(f"p-values must lie in [0, 1] (or be nan), got {p.tolist()}")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(valid)
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return [float(x) for x in out]


def adjust_family(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """Copies of ``comparisons`` with ``p_holm`` adjusted across them as one family."""
    adjusted = holm([c.p for c in comparisons])
    return [dataclasses.replace(c, p_holm=q) for c, q in zip(comparisons, adjusted, strict=True)]


def _as_bool_vector(values: Sequence[bool] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of booleans, got shape {arr.shape}")
    if arr.dtype != bool and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{what} must hold per-image correctness (True/False or 1/0)")
    return arr.astype(bool)


def mcnemar(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray) -> dict:
    """Exact McNemar test of two models' per-image correctness on the same test images.

    Only discordant images count: ``a_only`` (A right, B wrong) and ``b_only`` (the reverse).
    Under the null both are equally likely, so ``p`` is the two-sided exact binomial test
    ``scipy.stats.binomtest(a_only, a_only + b_only, 0.5)``; 1.0 without discordant images.
    """
    a = _as_bool_vector(correct_a, "correct_a")
    b = _as_bool_vector(correct_b, "correct_b")
    if len(a) != len(b):
        raise ValueError(
            f"correct_a and correct_b must cover the same test images: got {len(a)} vs {len(b)}"
        )
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    n = a_only + b_only
    p = 1.0 if n == 0 else float(stats.binomtest(a_only, n, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p": p}


def _pts(x: float) -> str:
    s = f"{x:+.2f}"
    return "+0.00" if s == "-0.00" else s


def format_comparison(c: PairedComparison) -> str:
    """One-line summary, e.g. ``"+2.00 [-0.74, +4.74] p=0.12 (Holm 0.36)"``.

    Points with two decimals, p-values with two significant digits; a single seed has no
    interval or test and says so.
    """
    if c.n < 2:
        return f"{_pts(c.mean)} (n={c.n}: no CI, no test)"
    lo, hi = c.ci95
    return f"{_pts(c.mean)} [{_pts(lo)}, {_pts(hi)}] p={c.p:.2g} (Holm {c.p_holm:.2g})"
