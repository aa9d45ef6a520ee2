"""The studies' statistics: t quantiles, intervals, Holm, and each verdict branch."""

from __future__ import annotations

import math
import random

import pytest

from benchmarks.studies import stats
from benchmarks.studies.stats import Interval


# ---------------------------------------------------------------------------------------
# Student's t against closed forms
# ---------------------------------------------------------------------------------------
def _t1(p: float) -> float:  # Cauchy
    return math.tan(math.pi * (p - 0.5))


def _t2(p: float) -> float:
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def _t4(p: float) -> float:
    alpha = 4 * p * (1 - p)
    q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
    return math.copysign(2 * math.sqrt(q - 1), p - 0.5)


@pytest.mark.parametrize("p", [0.001, 0.1, 0.3, 0.6, 0.9, 0.975, 0.995, 0.9999])
@pytest.mark.parametrize("df, closed_form", [(1, _t1), (2, _t2), (4, _t4)])
def test_t_quantile_closed_forms(p: float, df: int, closed_form) -> None:  # type: ignore[no-untyped-def]
    assert stats.t_quantile(p, df) == pytest.approx(closed_form(p), rel=1e-10)


def test_t_quantile_table_values() -> None:
    # The values the corrected record uses, and the normal limit.
    assert stats.t_quantile(0.975, 2) == pytest.approx(4.3027, abs=5e-5)
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.7764, abs=5e-5)
    assert stats.t_quantile(0.975, 1) == pytest.approx(12.7062, abs=5e-5)
    assert stats.t_quantile(0.975, 10_000) == pytest.approx(1.95996, abs=1e-3)
    assert stats.t_quantile(0.5, 3) == 0.0
    assert stats.t_quantile(0.025, 2) == pytest.approx(-4.3027, abs=5e-5)


@pytest.mark.parametrize("df", [2, 3, 5, 8])
@pytest.mark.parametrize("t", [-7.0, -1.3, 0.2, 2.5, 40.0])
def test_t_cdf_even_and_odd_closed_forms(df: int, t: float) -> None:
    # df = 2: 1/2 + t / (2 √(2 + t²)); other df: numeric integral of the density.
    if df == 2:
        expected = 0.5 + t / (2 * math.sqrt(2 + t * t))
    else:
        norm = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
        steps = 20_000
        # ∫_0^|t| by Simpson's rule, then symmetry
        h = abs(t) / steps
        f = [
            norm * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)
        ]
        integral = h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
        expected = 0.5 + math.copysign(integral, t)
    assert stats.t_cdf(t, df) == pytest.approx(expected, abs=1e-9)


def test_t_against_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 6, 7, 29, 30, 101):
        for p in (0.6, 0.9, 0.975, 0.99, 0.9995):
            assert stats.t_quantile(p, df) == pytest.approx(
                scipy_stats.t.ppf(p, df), rel=1e-9
            )


@pytest.mark.parametrize("df", [0, -1, 2.0, True, stats.MAX_DF + 1])
def test_t_rejects_bad_df(df: object) -> None:
    with pytest.raises(ValueError, match="df must be an integer"):
        stats.t_quantile(0.9, df)  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_t_quantile_rejects_bad_p(p: float) -> None:
    with pytest.raises(ValueError, match="p must be in"):
        stats.t_quantile(p, 3)


# ---------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------
def test_t_interval_by_hand() -> None:
    interval = stats.t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, SE 1/√3, df 2
    half = 4.302652729749 / math.sqrt(3)
    assert interval.mean == pytest.approx(2.0)
    assert interval.se == pytest.approx(1 / math.sqrt(3))
    assert interval.n == 3
    assert (interval.low, interval.high) == pytest.approx((2 - half, 2 + half))
    assert interval.confidence == 0.95
    wider = stats.t_interval([1.0, 2.0, 3.0], confidence=0.99)  # t_{0.995,2} = 9.9248
    assert wider.high == pytest.approx(2 + 9.924843 / math.sqrt(3), abs=1e-5)


def test_interval_from_se_matches_t_interval() -> None:
    values = [0.3, 0.1, 0.25, 0.4, 0.05]
    direct = stats.t_interval(values, 0.9)
    rebuilt = stats.interval_from_se(direct.mean, direct.se, 5, 0.9)
    assert (rebuilt.low, rebuilt.high) == pytest.approx((direct.low, direct.high))


def test_interval_needs_two_values() -> None:
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.t_interval([0.5])
    with pytest.raises(ValueError, match="finite"):
        stats.t_interval([0.5, math.nan])


def test_paired_by_seed() -> None:
    assert stats.paired({0: 0.5, 1: 0.7}, {1: 0.6, 0: 0.2}) == pytest.approx(
        {0: 0.3, 1: 0.1}
    )
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired({0: 0.5, 1: 0.7}, {0: 0.2, 2: 0.6})


def test_p_value_is_the_interval_test() -> None:
    # The 95% t-interval touches the threshold exactly when p = 0.05.
    se, n = 0.01, 3
    mean = 4.302652729749 * se
    assert stats.p_value(mean, se, n) == pytest.approx(0.05, abs=1e-9)
    assert stats.p_value(0.02, 0.0, 3) == 0.0
    assert stats.p_value(0.0, 0.0, 3) == 1.0
    assert stats.p_value(-0.02, 0.01, 3, threshold=-0.02) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------
# Holm
# ---------------------------------------------------------------------------------------
# The four-hypothesis example of the Holm-Bonferroni method (p = 0.01, 0.04, 0.03,
# 0.005 at α = 0.05): H4 and H1 are rejected, H2 and H3 are not.
TEXTBOOK = [0.01, 0.04, 0.03, 0.005]


def test_holm_adjusted_textbook_example() -> None:
    assert stats.holm_adjusted(TEXTBOOK) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rejected = [p <= 0.05 for p in stats.holm_adjusted(TEXTBOOK)]
    assert rejected == [True, False, False, True]


def test_holm_confidences_textbook_example() -> None:
    # H4 at α/4, H1 at α/3, H3 fails at α/2 and H2 keeps that level.
    assert stats.holm_confidences(TEXTBOOK, 0.05) == pytest.approx(
        [1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2, 1 - 0.05 / 4]
    )


def test_holm_of_one_is_the_test_itself() -> None:
    assert stats.holm_adjusted([0.03]) == [0.03]
    assert stats.holm_confidences([0.03]) == pytest.approx([0.95])


def test_holm_intervals_decide_as_holm() -> None:
    # Each comparison's interval at its Holm level excludes the threshold exactly
    # when Holm's adjusted p-value is <= α: intervals and verdicts agree.
    rng = random.Random(0)
    for _ in range(300):
        m = rng.randint(1, 17)
        n = rng.choice([3, 5])
        family = [
            (rng.gauss(0, 0.02), rng.uniform(0.002, 0.02), rng.choice([0.0, -0.02]))
            for _ in range(m)
        ]
        p = [stats.p_value(mean, se, n, theta) for mean, se, theta in family]
        levels = stats.holm_confidences(p, 0.05)
        adjusted = stats.holm_adjusted(p)
        for (mean, se, theta), level, adj in zip(family, levels, adjusted, strict=True):
            interval = stats.interval_from_se(mean, se, n, level)
            excludes = interval.low > theta or interval.high < theta
            if abs(adj - 0.05) > 1e-9:  # away from the exact boundary
                assert excludes == (adj <= 0.05)


def test_holm_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        stats.holm_adjusted([])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        stats.holm_confidences([0.2, 1.2])


# ---------------------------------------------------------------------------------------
# Verdicts, branch by branch
# ---------------------------------------------------------------------------------------
def _iv(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, (high - low) / 4, 3, low, high)


@pytest.mark.parametrize(
    "low, high, verdict",
    [
        (-0.019, 0.03, "supported"),  # lower end above -0.02
        (-0.05, -0.021, "not supported"),  # upper end below -0.02
        (-0.03, 0.01, "inconclusive"),  # reaches the margin
        (-0.02, 0.01, "inconclusive"),  # lower end exactly at -margin
    ],
)
def test_noninferiority(low: float, high: float, verdict: str) -> None:
    assert stats.noninferiority(_iv(low, high), 0.02) == verdict


def test_robustness_original_not_hurt_comes_first() -> None:
    # Issue 22's case, v2 SimCLR batch 128 -> 16: the original gained (drop
    # -0.018 [-0.026, -0.010]), SimCLR-ER gained less (D -0.015 [-0.022, -0.009]).
    # Not "ER is hurt more": ER was not hurt at all.
    drop = _iv(-0.026, -0.010)
    d = _iv(-0.022, -0.009)
    assert stats.robustness(d, drop) == "inconclusive (the original is not hurt)"
    assert stats.robustness(_iv(0.01, 0.05), drop) == (
        "inconclusive (the original is not hurt)"
    )
    # The drop's interval reaching exactly 0 is "not hurt".
    assert stats.robustness(_iv(0.01, 0.05), _iv(0.0, 0.04)) == (
        "inconclusive (the original is not hurt)"
    )


@pytest.mark.parametrize(
    "d, verdict",
    [
        ((0.001, 0.04), "supported"),
        ((-0.04, -0.001), "not supported (ER is hurt more)"),
        ((-0.01, 0.02), "inconclusive"),
        ((0.0, 0.02), "inconclusive"),
    ],
)
def test_robustness_original_hurt(d: tuple[float, float], verdict: str) -> None:
    assert stats.robustness(_iv(*d), _iv(0.02, 0.2)) == verdict


@pytest.mark.parametrize(
    "gain, verdict",
    [
        ((-0.4, -0.2), "collapses"),
        ((-0.049, 0.01), "does not collapse"),
        ((-0.1, -0.03), "inconclusive"),
        ((-0.1, -0.05), "inconclusive"),  # upper end exactly at -margin
    ],
)
def test_collapse(gain: tuple[float, float], verdict: str) -> None:
    assert stats.collapse(_iv(*gain), 0.05) == verdict


@pytest.mark.parametrize(
    "control, gain, verdict",
    [
        ("collapses", (0.001, 0.05), "supported"),
        ("collapses", (-0.3, -0.06), "not supported"),
        ("collapses", (-0.04, 0.02), "inconclusive"),
        ("collapses", (0.0, 0.02), "inconclusive"),
        # no collapse to prevent: inconclusive even when the ER arm learned
        (
            "does not collapse",
            (0.05, 0.1),
            "inconclusive (no collapse without the entropy term)",
        ),
        (
            "inconclusive",
            (0.05, 0.1),
            "inconclusive (no collapse without the entropy term)",
        ),
    ],
)
def test_prevents_collapse(
    control: str, gain: tuple[float, float], verdict: str
) -> None:
    assert stats.prevents_collapse(_iv(*gain), 0.05, control) == verdict


def test_verdicts_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="margin"):
        stats.noninferiority(_iv(0, 1), -0.1)
    with pytest.raises(ValueError, match="control"):
        stats.prevents_collapse(_iv(0, 1), 0.05, "collapsed")
