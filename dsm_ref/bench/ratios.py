"""Time ratios between two arms timed in the same interleaved rounds, with their uncertainty.

The arms of one point (a ``C x grid`` of the mixers, a size and layout of the DCT) are timed in
turn, round after round, so round ``r`` of one arm and round ``r`` of the other ran under the
same load: their times are paired. A ratio at a point is therefore estimated from the paired
per-round ratios over the counted rounds (the first round warms up and does not count): their
geometric mean, with the 95 % t-interval of the mean log ratio mapped back to a ratio, and a
paired t-test of the log ratio against a bound (:func:`dsm_ref.stats.paired_comparison` on log
times). A target checked at many points is one family of claims, so its p-values are
Holm-adjusted across the points (:func:`judge`); a point then reads "below" or "above" the
bound when the adjusted test says so at 5 %, and "not resolved" when the rounds are too few or
too noisy to tell.

A record made without per-round times (``rounds``) gives a point estimate from the reported
times and no interval; its points are "not resolved".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..stats import PairedComparison, adjust_family, paired_comparison

__all__ = ["RatioEstimate", "counted_rounds", "paired_ratio", "judge"]


@dataclass(frozen=True)
class RatioEstimate:
    """``time(a) / time(b)`` at one point.

    ``ratio``: the geometric mean of the paired per-round ratios (the ratio of the reported
    times when there are no rounds); ``ci95``: its 95 % interval (nan below two rounds);
    ``rounds``: how many paired rounds it rests on; ``comparison``: the paired t-test of
    ``log(a / b) - log(bound)`` (``None`` without rounds), Holm-adjusted once passed through
    :func:`judge`."""

    label: str
    ratio: float
    ci95: tuple[float, float]
    rounds: int
    bound: float
    comparison: PairedComparison | None

    @property
    def interval_text(self) -> str:
        lo, hi = self.ci95
        return "no interval" if math.isnan(lo) else f"95 % CI {lo:.2f}–{hi:.2f}"

    def inverted(self) -> RatioEstimate:
        """The same estimate as ``time(b) / time(a)`` (bound inverted too)."""
        lo, hi = self.ci95
        return RatioEstimate(self.label, 1 / self.ratio, (1 / hi, 1 / lo), self.rounds,
                             1 / self.bound, self.comparison)


def counted_rounds(entry: dict[str, Any] | None) -> list[float]:
    """The per-round times (s) of an entry that count: all but the first when there are
    several (the first warms up and sizes the Timer's blocks), ``[]`` when none are stored."""
    rounds = (entry or {}).get("rounds") or []
    return list(rounds[1:] if len(rounds) > 1 else rounds)


def paired_ratio(label: str, a: dict[str, Any] | None, b: dict[str, Any] | None,
                 bound: float = 1.0) -> RatioEstimate | None:
    """``time(a) / time(b)`` of two timed entries of one point (each with ``time.median_s`` and,
    from interleaved runs, ``rounds``), tested against ``bound``; ``None`` when either entry
    was not timed."""
    if not (a and b and "time" in a and "time" in b):
        return None
    if bound <= 0:
        raise ValueError(f"bound must be a positive time ratio, got {bound}")
    ra, rb = counted_rounds(a), counted_rounds(b)
    if not ra or len(ra) != len(rb):  # no paired rounds: the reported times only
        ratio = a["time"]["median_s"] / b["time"]["median_s"]
        return RatioEstimate(label, ratio, (math.nan, math.nan), 0, bound, None)
    # per-round log ratios, rounded far below any timing's precision so that equal ratios
    # compare equal (an exactly constant ratio then has zero spread, not float noise)
    logs = np.round(np.log(ra) - np.log(rb), 12)
    comparison = paired_comparison(label, logs - math.log(bound), np.zeros_like(logs))
    lo, hi = comparison.ci95
    return RatioEstimate(label, bound * math.exp(comparison.mean),
                         (bound * math.exp(lo), bound * math.exp(hi)) if not math.isnan(lo)
                         else (math.nan, math.nan), comparison.n, bound, comparison)


def judge(estimates: list[RatioEstimate]) -> list[tuple[RatioEstimate, str]]:
    """Each estimate with its verdict against its bound, the p-values Holm-adjusted across all
    of them as one family: ``"below"``, ``"above"`` or ``"not resolved"``."""
    tested = [e for e in estimates if e.comparison is not None]
    adjusted = dict(zip(map(id, tested), adjust_family([e.comparison for e in tested]),
                        strict=True))
    verdicts = []
    for e in estimates:
        c = adjusted.get(id(e))
        verdict = {"supported": "below", "contradicted": "above"}.get(
            c.verdict(expected_sign=-1) if c else "", "not resolved")
        verdicts.append((e if c is None else dataclasses.replace(e, comparison=c), verdict))
    return verdicts
