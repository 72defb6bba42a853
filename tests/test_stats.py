"""Tests of dsm_ref.stats against references computed here with scipy."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

from dsm_ref.stats import (
    PairedComparison,
    adjust_family,
    format_comparison,
    holm,
    mcnemar,
    paired_comparison,
)


def _comparison(mean: float, p: float, n: int = 5, p_holm: float | None = None) -> PairedComparison:
    return PairedComparison(
        name="x",
        diffs=(mean,) * n,
        mean=mean,
        std=1.0,
        n=n,
        ci95=(mean - 1, mean + 1),
        p=p,
        p_holm=p if p_holm is None else p_holm,
    )


def test_paired_comparison_matches_scipy():
    reference = [70.0, 71.0, 69.5, 72.0]
    diffs = np.array([1.0, 2.0, 3.0, 4.0])
    arm = list(np.array(reference) + diffs)
    c = paired_comparison("dynamic - static", arm, reference)

    assert c.name == "dynamic - static"
    assert c.n == 4
    assert c.diffs == pytest.approx(tuple(diffs))
    assert c.mean == pytest.approx(2.5)
    assert c.std == pytest.approx(np.std(diffs, ddof=1))
    lo, hi = stats.t.interval(0.95, df=3, loc=2.5, scale=stats.sem(diffs))
    assert c.ci95 == pytest.approx((lo, hi))
    assert c.p == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue)
    assert c.p == pytest.approx(stats.ttest_rel(arm, reference).pvalue)
    assert c.p_holm == c.p


def test_paired_comparison_degenerate_cases():
    one = paired_comparison("one seed", [71.0], [70.0])
    assert (one.n, one.mean, one.std) == (1, 1.0, 0.0)
    assert all(math.isnan(x) for x in (*one.ci95, one.p, one.p_holm))

    zero = paired_comparison("no change", [70.0, 71.0, 72.0], [70.0, 71.0, 72.0])
    assert zero.p == 1.0
    assert zero.ci95 == (0.0, 0.0)

    constant = paired_comparison("same gain", [72.0, 73.0], [70.0, 71.0])
    assert constant.p == 0.0
    assert constant.ci95 == (2.0, 2.0)


@pytest.mark.parametrize(
    ("arm", "reference", "match"),
    [
        ([1.0, 2.0], [1.0], "paired by seed: got 2 vs 1"),
        ([], [], "empty"),
        ([1.0, float("nan")], [1.0, 2.0], "arm contains non-finite"),
        ([1.0, 2.0], [1.0, float("inf")], "reference contains non-finite"),
    ],
)
def test_paired_comparison_rejects_bad_input(arm, reference, match):
    with pytest.raises(ValueError, match=match):
        paired_comparison("bad", arm, reference)


def test_holm_textbook_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_monotone_and_capped():
    p = [0.2, 0.01, 0.5, 0.03, 0.9, 0.04]
    adjusted = holm(p)
    assert all(0.0 <= q <= 1.0 for q in adjusted)
    assert all(q >= raw for q, raw in zip(adjusted, p, strict=True))
    ordered = [adjusted[i] for i in np.argsort(p)]
    assert ordered == sorted(ordered)
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []


def test_holm_nan_passes_through_and_shrinks_family():
    adjusted = holm([0.01, float("nan"), 0.04])
    assert math.isnan(adjusted[1])
    assert [adjusted[0], adjusted[2]] == pytest.approx(holm([0.01, 0.04]))
    assert [adjusted[0], adjusted[2]] == pytest.approx([0.02, 0.04])


def test_holm_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        holm([0.5, 1.5])


def test_adjust_family_returns_adjusted_copies():
    comparisons = [_comparison(1.0, 0.01), _comparison(1.0, 0.04), _comparison(1.0, 0.03)]
    adjusted = adjust_family(comparisons)
    assert [c.p_holm for c in adjusted] == pytest.approx([0.03, 0.06, 0.06])
    assert [c.p for c in adjusted] == [0.01, 0.04, 0.03]
    assert [c.p_holm for c in comparisons] == [0.01, 0.04, 0.03]  # originals untouched


@pytest.mark.parametrize(
    ("mean", "p_holm", "expected_sign", "verdict"),
    [
        (2.0, 0.01, +1, "supported"),
        (-2.0, 0.01, +1, "contradicted"),
        (-2.0, 0.01, -1, "supported"),
        (2.0, 0.01, -1, "contradicted"),
        (2.0, 0.30, +1, "not shown"),
        (-2.0, 0.30, +1, "not shown"),
    ],
)
def test_verdict(mean, p_holm, expected_sign, verdict):
    c = _comparison(mean, p=p_holm / 3, p_holm=p_holm)
    assert c.verdict(expected_sign=expected_sign) == verdict


def test_verdict_uses_holm_p_and_alpha():
    c = _comparison(2.0, p=0.02, p_holm=0.06)
    assert c.verdict() == "not shown"
    assert c.verdict(alpha=0.10) == "supported"


def test_verdict_not_shown_with_one_seed():
    c = paired_comparison("one seed", [80.0], [70.0])
    assert c.verdict() == "not shown"
    with pytest.raises(ValueError, match="expected_sign must be"):
        c.verdict(expected_sign=0)


def test_to_dict_is_json_able():
    d = paired_comparison("a - b", [2.0, 3.0, 5.0], [1.0, 1.0, 1.0]).to_dict()
    assert d["diffs"] == [1.0, 2.0, 4.0]
    assert isinstance(d["ci95"], list)
    json.dumps(d, allow_nan=False)

    d1 = paired_comparison("one seed", [2.0], [1.0]).to_dict()
    assert d1["ci95"] == [None, None]
    assert d1["p"] is None and d1["p_holm"] is None
    json.dumps(d1, allow_nan=False)


def test_format_comparison():
    c = _comparison(2.0, p=0.1234, p_holm=0.3567)
    c = dataclasses.replace(c, ci95=(-0.7412, 4.7412))
    assert format_comparison(c) == "+2.00 [-0.74, +4.74] p=0.12 (Holm 0.36)"
    one = paired_comparison("one seed", [72.0], [70.0])
    assert format_comparison(one) == "+2.00 (n=1: no CI, no test)"


def test_mcnemar_matches_binomtest():
    a = [True, True, True, True, True, False, True, False, True, True]
    b = [True, False, False, False, True, True, True, False, False, True]
    result = mcnemar(a, b)
    # discordant: a right & b wrong at 1, 2, 3, 8; a wrong & b right at 5
    assert result["a_only"] == 4
    assert result["b_only"] == 1
    assert result["p"] == pytest.approx(stats.binomtest(4, 5, 0.5).pvalue)
    assert mcnemar(np.array(a), np.array(b)) == result


def test_mcnemar_without_discordant_pairs():
    assert mcnemar([True, False], [True, False]) == {"a_only": 0, "b_only": 0, "p": 1.0}


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="same test images: got 3 vs 2"):
        mcnemar([True, False, True], [True, False])
    with pytest.raises(ValueError, match="per-image correctness"):
        mcnemar([3, 7], [1, 0])
