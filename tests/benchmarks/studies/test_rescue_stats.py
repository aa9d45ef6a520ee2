"""The rescue study's verdict functions, p-values, Clopper-Pearson and power."""

from __future__ import annotations

import math
import statistics

import pytest

from benchmarks.studies import stats
from benchmarks.studies.rescue import power, verdicts
from benchmarks.studies.stats import Interval


def interval(low: float, high: float, n: int = 5) -> Interval:
    return Interval((low + high) / 2, 0.01, n, low, high, 0.99)


# ---------------------------------------------------------------------------------------
# p-values: the one every comparison enters Holm with
# ---------------------------------------------------------------------------------------
def test_threshold_p_is_the_two_sided_t_test_of_the_threshold() -> None:
    values = [-0.07, -0.09, -0.06, -0.08, -0.10]
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(5)
    t = abs(mean + 0.05) / se
    expected = 2 * (1 - stats.t_cdf(t, 4))
    assert verdicts.threshold_p(values, -0.05) == pytest.approx(expected, rel=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    reference = scipy_stats.ttest_1samp(values, -0.05).pvalue
    assert verdicts.threshold_p(values, -0.05) == pytest.approx(reference, rel=1e-9)


def test_threshold_p_does_not_depend_on_the_side() -> None:
    # A mean 0.03 above the threshold gets the p of one 0.03 below: a verdict on
    # either side is a rejection of the same hypothesis (never p = 1).
    above = [0.01, -0.02, 0.0, -0.01, 0.02]
    below = [-0.11, -0.08, -0.10, -0.09, -0.12]
    p_above = verdicts.threshold_p(above, -0.05)
    p_below = verdicts.threshold_p(below, -0.05)
    assert p_above == pytest.approx(p_below, rel=1e-12)
    assert p_above < 0.01


# ---------------------------------------------------------------------------------------
# Verdict wording
# ---------------------------------------------------------------------------------------
def test_learns_three_ways() -> None:
    assert verdicts.learns(interval(0.001, 0.05), 0.0) == "learns"
    assert verdicts.learns(interval(-0.05, -0.001), 0.0) == "does not learn"
    assert verdicts.learns(interval(-0.01, 0.01), 0.0) == "inconclusive"
    assert verdicts.learns(interval(0.01, 0.05), 0.02) == "inconclusive"
    assert verdicts.learns(interval(0.021, 0.05), 0.02) == "learns"
    with pytest.raises(ValueError, match="threshold"):
        verdicts.learns(interval(0.0, 0.1), math.nan)


def test_fails_to_learn_needs_every_head_collapsed() -> None:
    below = interval(-0.03, 0.019, n=4)
    assert verdicts.fails_to_learn(below, 0.02, 4) == "fails to learn"
    assert verdicts.fails_to_learn(below, 0.02, 3) == (
        "does not learn (head not collapsed in every seed)"
    )
    assert verdicts.fails_to_learn(interval(0.021, 0.08, n=4), 0.02, 4) == "learns"
    assert verdicts.fails_to_learn(interval(0.0, 0.03, n=4), 0.02, 4) == "inconclusive"
    with pytest.raises(ValueError, match="heads_collapsed"):
        verdicts.fails_to_learn(below, 0.02, 5)


def test_rescue_joins_the_control_and_the_treatment() -> None:
    c = stats.COLLAPSES
    assert verdicts.rescue(c, c, "learns") == "rescues"
    assert verdicts.rescue(c, c, "does not learn") == "does not rescue"
    assert verdicts.rescue(c, c, "inconclusive") == "inconclusive"
    assert verdicts.rescue("does not collapse", c, "learns") == (
        "inconclusive (no failure to rescue: the control does not collapse)"
    )
    f = verdicts.FAILS_TO_LEARN
    assert verdicts.rescue(f, f, "learns") == "rescues"
    assert verdicts.rescue("learns", f, "learns") == (
        "inconclusive (no failure to rescue: the control learns)"
    )


def test_accuracy_cost_is_noninferiority_in_points() -> None:
    assert verdicts.accuracy_cost(interval(-0.019, 0.01), 0.02) == (
        "costs less than 2 points"
    )
    assert verdicts.accuracy_cost(interval(-0.05, -0.021), 0.02) == (
        "costs more than 2 points"
    )
    assert verdicts.accuracy_cost(interval(-0.03, 0.0), 0.02) == "inconclusive"


def test_collapse_verdicts_of_the_primary_control() -> None:
    # The mechanism study's function, which the primary control reuses.
    assert stats.collapse(interval(-0.106, -0.052), 0.05) == "collapses"
    assert stats.collapse(interval(-0.049, 0.02), 0.05) == "does not collapse"
    assert stats.collapse(interval(-0.121, -0.037), 0.05) == "inconclusive"


# ---------------------------------------------------------------------------------------
# Clopper-Pearson and power
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(0, 10, 0.0, 0.30849710781876), (10, 10, 0.69150289218124, 1.0),
     (3, 10, 0.06673951117773, 0.65245285005999), (2, 4, 0.06758599, 0.93241401)],
)  # fmt: skip
def test_clopper_pearson_matches_the_beta_quantiles(
    k: int, n: int, low: float, high: float
) -> None:
    got = verdicts.clopper_pearson(k, n)
    assert got[0] == pytest.approx(low, abs=1e-7)
    assert got[1] == pytest.approx(high, abs=1e-7)


def test_clopper_pearson_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        verdicts.clopper_pearson(3, 2)


@pytest.mark.parametrize(
    ("c", "df", "ncp"), [(3.81, 9, 5.4), (7.94, 3, 2.0), (4.3, 2, 1.0), (12.7, 1, 3.0)]
)
def test_noncentral_t_matches_scipy(c: float, df: int, ncp: float) -> None:
    nct = pytest.importorskip("scipy.stats").nct
    assert power.noncentral_t_sf(c, df, ncp) == pytest.approx(
        nct.sf(c, df, ncp), abs=2e-4
    )


def test_power_of_a_null_effect_is_half_the_level() -> None:
    # Effect 0: landing on "the true side" at level a happens with probability a/2.
    assert power.power(0.0, 1.0, 10, 0.05) == pytest.approx(0.025, abs=1e-4)


def test_detectable_effect_has_the_target_power() -> None:
    d = power.detectable(10, 0.05 / 12)
    assert power.power(d, 1.0, 10, 0.05 / 12) == pytest.approx(0.8, abs=1e-3)
