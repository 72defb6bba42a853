"""Exercises of notebook 06, ablations: checks and solutions.

1. ``paired_interval(arm, reference) -> (mean, low, high)``: the mean paired difference of two
   arms run at the same seeds and its 95 % t-interval; checked against
   ``dsm_ref.stats.paired_comparison`` (which uses ``scipy.stats.t``).
2. ``holm_adjust(p_values) -> list``: Holm's step-down correction of a family of p-values;
   checked against ``dsm_ref.stats.holm``.
3. ``mcnemar_exact_p(correct_a, correct_b) -> float``: the exact McNemar test of two models on
   the same test images; checked against ``dsm_ref.stats.mcnemar`` (``scipy.stats.binomtest``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats

from ..stats import holm, mcnemar, paired_comparison
from ._common import Mismatch, call, run_check

__all__ = [
    "check_paired_interval", "solution_paired_interval",
    "check_holm_adjust", "solution_holm_adjust",
    "check_mcnemar_exact_p", "solution_mcnemar_exact_p",
]


def _floats(value, case: str, count: int | None = None) -> list[float]:
    try:
        numbers = [float(v) for v in np.asarray(value, dtype=float).reshape(-1)]
    except (TypeError, ValueError):
        raise Mismatch(f"On {case} your function returned {value!r}, not numbers.") from None
    if count is not None and len(numbers) != count:
        raise Mismatch(f"On {case} expected {count} numbers, got {len(numbers)}.")
    return numbers


def _close(a: float, b: float, tol: float = 1e-7) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# --- 1. the paired difference and its interval ---------------------------------------------------

def solution_paired_interval(arm, reference) -> tuple[float, float, float]:
    """Differences seed by seed, then their mean +- t(0.975, n - 1) * std / sqrt(n)."""
    diffs = np.asarray(arm, dtype=float) - np.asarray(reference, dtype=float)
    n = len(diffs)
    mean = float(diffs.mean())
    half = stats.t.ppf(0.975, df=n - 1) * diffs.std(ddof=1) / math.sqrt(n)
    return mean, float(mean - half), float(mean + half)


def check_paired_interval(function: Callable) -> bool:
    """``function(arm, reference)`` (top-1 of two arms, listed in the same seed order) must
    return ``(mean difference, low, high)`` of the 95 % t-interval of the paired differences."""

    def cases() -> str:
        rng = np.random.default_rng(0)
        seeds_10 = rng.normal(40, 2, 10)
        interval_cases = [
            ("5 seeds, a large gain", [84.1, 83.0, 85.5, 84.9, 83.6],
             [79.0, 77.6, 80.4, 79.8, 78.0]),
            ("2 seeds (1 degree of freedom)", [31.2, 33.0], [30.0, 30.4]),
            ("3 seeds whose order matters", [40.0, 44.0, 42.0], [39.0, 44.5, 40.0]),
            ("10 seeds, a small gain", list(seeds_10 + rng.normal(0.5, 0.4, 10)), list(seeds_10)),
        ]
        for case, arm, reference in interval_cases:
            expected = paired_comparison("case", arm, reference)
            low, high = expected.ci95
            got = _floats(call(function, case, list(arm), list(reference)), case, 3)
            if not _close(got[0], expected.mean):
                raise Mismatch(f"On {case} the mean difference should be {expected.mean:+.4f}, "
                               f"got {got[0]:+.4f}: subtract the reference from the arm, seed by "
                               "seed, and average.")
            if _close(got[1], low) and _close(got[2], high):
                continue
            diffs = np.asarray(arm) - np.asarray(reference)
            n = len(diffs)
            half = (got[2] - got[1]) / 2
            hint = ("The interval is mean +- t * s / sqrt(n), with t = scipy.stats.t.ppf(0.975, "
                    "n - 1) and s the std of the differences (ddof=1).")
            welch = stats.ttest_ind(arm, reference, equal_var=False).confidence_interval(0.95)
            if _close(got[1], welch.low, 1e-6) and _close(got[2], welch.high, 1e-6):
                hint = ("That is the unpaired (Welch) interval of two independent samples. The "
                        "arms share their seeds: take the differences seed by seed first; what "
                        "two arms share then cancels.")
            elif _close(half, 1.959964 * diffs.std(ddof=1) / math.sqrt(n), 1e-5):
                hint = (f"You used 1.96, the normal quantile. With {n} seeds use Student's t with "
                        f"{n - 1} degrees of freedom: t = {stats.t.ppf(0.975, n - 1):.3f}.")
            elif _close(half, stats.t.ppf(0.975, n - 1) * diffs.std(ddof=0) / math.sqrt(n), 1e-6):
                hint = "Use the sample standard deviation of the differences (ddof=1), not ddof=0."
            raise Mismatch(f"On {case} expected the interval [{low:+.4f}, {high:+.4f}], got "
                           f"[{got[1]:+.4f}, {got[2]:+.4f}]. {hint}")
        return ("Mean and 95 % interval match dsm_ref.stats.paired_comparison for 2 to 10 "
                "seeds.")

    return run_check("paired_interval", function, cases)


# --- 2. Holm's correction ------------------------------------------------------------------------

def solution_holm_adjust(p_values) -> list[float]:
    """Sort ascending, multiply the ``i``-th smallest (from 0) by ``m - i``, keep the running
    maximum, cap at 1, and return the adjusted values in the input order."""
    p = [float(x) for x in p_values]
    m = len(p)
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=p.__getitem__)):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def check_holm_adjust(function: Callable) -> bool:
    """``function(p_values)`` must return Holm-adjusted p-values, in the input order."""

    def cases() -> str:
        families = [
            ("4 p-values in no particular order", [0.01, 0.04, 0.03, 0.2]),
            ("two close p-values (0.01, 0.011)", [0.01, 0.011]),
            ("a family where the running maximum matters", [0.3, 0.6, 0.02]),
            ("large p-values (0.4, 0.5, 0.7)", [0.4, 0.5, 0.7]),
            ("a single comparison", [0.04]),
            ("ties (0.02, 0.5, 0.02)", [0.02, 0.5, 0.02]),
        ]
        for case, p in families:
            expected = holm(p)
            got = _floats(call(function, case, list(p)), case, len(p))
            if all(_close(g, e) for g, e in zip(got, expected, strict=True)):
                continue
            m = len(p)
            hint = ("Sort ascending, multiply the i-th smallest (i from 0) by m - i, keep the "
                    "running maximum, cap at 1, and put each value back at its input position.")
            if all(_close(g, min(1.0, m * x)) for g, x in zip(got, p, strict=True)):
                hint = ("That is Bonferroni (every p times m). Holm multiplies only the smallest "
                        "by m, the next by m - 1, and so on.")
            elif any(g > 1 for g in got):
                hint = "An adjusted p-value is capped at 1."
            elif sorted(got) == sorted(expected) or all(
                    _close(g, e) for g, e in zip(sorted(got), sorted(expected), strict=True)):
                hint = "Return the adjusted values in the order of the input, not sorted."
            else:
                order = sorted(range(m), key=p.__getitem__)
                no_running_max = [0.0] * m
                for rank, i in enumerate(order):
                    no_running_max[i] = min(1.0, (m - rank) * p[i])
                if all(_close(g, e) for g, e in zip(got, no_running_max, strict=True)):
                    hint = ("Keep the running maximum: an adjusted p-value may not be smaller "
                            "than that of a smaller raw p-value.")
            expected_text = ", ".join(f"{e:.4g}" for e in expected)
            got_text = ", ".join(f"{g:.4g}" for g in got)
            raise Mismatch(f"On {case} {p} expected [{expected_text}], got [{got_text}]. {hint}")
        return "It matches dsm_ref.stats.holm on 6 families, ties and a single p-value included."

    return run_check("holm_adjust", function, cases)


# --- 3. McNemar's exact test ---------------------------------------------------------------------

def solution_mcnemar_exact_p(correct_a, correct_b) -> float:
    """Only discordant images count; under the null each is A's with probability 1/2, so the
    p-value is the two-sided binomial test of ``a_only`` out of ``a_only + b_only``."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if a_only + b_only == 0:
        return 1.0
    return float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def check_mcnemar_exact_p(function: Callable) -> bool:
    """``function(correct_a, correct_b)`` (per-image correctness of two models on the same test
    images, bool arrays) must return the two-sided exact McNemar p-value."""

    def cases() -> str:
        rng = np.random.default_rng(1)
        shared = rng.random(500)
        model_a = shared < 0.72
        model_b = (shared + rng.normal(0, 0.15, 500)) < 0.66
        five_a = np.array([True] * 5 + [False] * 3 + [True] * 4)
        five_b = np.array([False] * 5 + [False] * 3 + [True] * 4)
        tests = [
            ("500 images, two correlated models", model_a, model_b),
            ("two identical models (no discordant image)", model_a, model_a.copy()),
            ("12 images, A alone right on 5, B alone right on none", five_a, five_b),
            ("6 images, 3 discordant each way", np.array([1, 1, 1, 0, 0, 0], bool),
             np.array([0, 0, 0, 1, 1, 1], bool)),
        ]
        for case, a, b in tests:
            expected = mcnemar(a, b)
            got = call(function, case, a.copy(), b.copy())
            got = _floats(got, case, 1)[0]
            if _close(got, expected["p"]):
                continue
            n = expected["a_only"] + expected["b_only"]
            hint = ("Count the discordant images (A right and B wrong, or the reverse); under the "
                    "null each is A's with probability 1/2: scipy.stats.binomtest(a_only, "
                    "a_only + b_only, 0.5).")
            if n and _close(got, stats.binomtest(expected["a_only"], n, 0.5,
                                                 alternative="greater").pvalue):
                hint = ("That is a one-sided test; the question 'do they differ?' is "
                        "two-sided.")
            elif n and _close(got, stats.binomtest(expected["a_only"], len(a), 0.5).pvalue):
                hint = ("Only the discordant images count: the images both get right or both "
                        "get wrong say nothing about which model is better.")
            elif n == 0:
                hint = "Without discordant images there is no evidence either way: p = 1."
            raise Mismatch(f"On {case} (A alone right on {expected['a_only']}, B alone on "
                           f"{expected['b_only']}) expected p = {expected['p']:.4g}, got "
                           f"{got:.4g}. {hint}")
        return "It matches dsm_ref.stats.mcnemar, with and without discordant images."

    return run_check("mcnemar_exact_p", function, cases)
