"""The rescue study's families, Holm levels, intervals and verdicts on crafted numbers."""

from __future__ import annotations

import math
import statistics
from typing import Dict, List

import pytest

from benchmarks.studies import stats
from benchmarks.studies.rescue import analysis, verdicts
from benchmarks.studies.rescue.analysis import Comparison
from benchmarks.studies.rescue.config import preset
from tests.benchmarks.studies import rescue_data

ALPHA = 0.05


def holm_levels(p_values: List[float], alpha: float = ALPHA) -> List[float]:
    """Holm's step-down, written out again: the level each p is read at."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i], i))
    levels = [0.0] * m
    failed_at = None
    for rank, i in enumerate(order):
        step = alpha / (m - rank)
        if failed_at is None and p_values[i] > step:
            failed_at = step
        levels[i] = 1 - (failed_at if failed_at is not None else step)
    return levels


def t_interval(values: List[float], level: float) -> tuple[float, float]:
    t = pytest.importorskip("scipy.stats").t
    mean = statistics.fmean(values)
    half = t.ppf((1 + level) / 2, len(values) - 1) * statistics.stdev(values)
    half /= math.sqrt(len(values))
    return mean - half, mean + half


@pytest.fixture(scope="module")
def comparisons() -> List[Comparison]:
    config = preset("smoke")
    results = analysis.Results(
        rescue_data.records(config), rescue_data.UNTRAINED, rescue_data.heads(config)
    )
    return analysis.analyse(results, config)


def test_family_sizes_are_registered() -> None:
    sizes = analysis.family_sizes(preset("rescue"))
    assert sizes == {"primary": 14, "cost": 10}
    assert analysis.family_sizes(preset("secondary")) == {
        "secondary: byol-nopred": 6,
        "secondary: swav-nosinkhorn": 6,
        "secondary: dino-nocenter": 6,
        "cost": 5,
    }


def test_every_crafted_verdict(comparisons: List[Comparison]) -> None:
    got = {
        (x.arm, x.treatment): x.verdict
        for x in comparisons
        if x.role in ("below", "fails", "treatment")
    }
    assert got == {key: v[2] for key, v in rescue_data.GAINS.items()}
    collapse = {x.arm: x.verdict for x in comparisons if x.role == "collapse"}
    assert collapse == rescue_data.COLLAPSE_VERDICTS
    costs = {x.treatment: x.verdict for x in comparisons if x.role == "cost"}
    assert costs == {t: v[2] for t, v in rescue_data.COSTS.items()}


def test_thresholds_follow_the_failure_mode(comparisons: List[Comparison]) -> None:
    lines = {
        (x.arm, x.role): x.threshold
        for x in comparisons
        if x.treatment in ("none", "koleo")
    }
    assert lines == {
        ("dino-ema0", "collapse"): -0.05, ("dino-ema0", "below"): 0.0,
        ("dino-ema0", "treatment"): 0.0,  # after a collapse: above the untrained network
        ("byol-nopred-ema0", "collapse"): -0.05, ("byol-nopred-ema0", "fails"): 0.02,
        ("byol-nopred-ema0", "treatment"): 0.02,  # after a failure to learn: above +0.02
        ("byol-nopred", "fails"): 0.02, ("byol-nopred", "treatment"): 0.02,
        ("byol", "cost"): -0.02,
    }  # fmt: skip


def test_every_rescue_verdict(comparisons: List[Comparison]) -> None:
    got = {(r.removal, r.treatment): r.verdict for r in analysis.rescues(comparisons)}
    expected = {k: v[3] for k, v in rescue_data.GAINS.items() if v[3] is not None}
    assert got == expected


def test_every_comparison_enters_holm_with_its_own_p(
    comparisons: List[Comparison],
) -> None:
    for family in ("primary", "secondary: byol-nopred", "cost"):
        members = [x for x in comparisons if x.family == family]
        for x in members:
            values = [x.values[s] for s in sorted(x.values)]
            mean = statistics.fmean(values)
            se = statistics.stdev(values) / math.sqrt(len(values))
            if se == 0:
                continue
            p = 2 * (1 - stats.t_cdf(abs(mean - x.threshold) / se, len(values) - 1))
            assert x.p == pytest.approx(min(1.0, p), rel=1e-9, abs=1e-15)
        size = analysis.family_sizes(preset("smoke"))[family]
        expected = holm_levels([x.p for x in members] + [1.0] * (size - len(members)))
        assert [x.level for x in members] == pytest.approx(expected[: len(members)])


def test_does_not_collapse_enters_with_the_p_of_the_verdict_read(
    comparisons: List[Comparison],
) -> None:
    primary = [x for x in comparisons if x.family == "primary"]
    index = next(
        i
        for i, x in enumerate(primary)
        if (x.arm, x.role) == ("byol-nopred-ema0", "collapse")
    )
    control = primary[index]
    assert control.verdict == "does not collapse"
    # Its p is the two-sided test of G0 = -c (G0 is 0.03 above -c, se 1e-4), not 1,
    values = [control.values[s] for s in sorted(control.values)]
    assert control.p == verdicts.threshold_p(values, -0.05) < 0.01
    # so Holm steps past it and reads the comparisons after it at laxer levels than
    # the old rule (p = 1 for "does not collapse") would.
    old = [x.p for x in primary]
    old[index] = 1.0
    old_levels = holm_levels(old)
    others = [
        (x.level, o)
        for i, (x, o) in enumerate(zip(primary, old_levels, strict=True))
        if i != index
    ]
    assert all(new <= o for new, o in others)
    assert any(new < o for new, o in others)


def test_interval_bounds_at_the_holm_level(comparisons: List[Comparison]) -> None:
    for x in comparisons:
        assert x.interval is not None
        values = [x.values[s] for s in sorted(x.values)]
        low, high = t_interval(values, x.level)
        assert x.interval.low == pytest.approx(low, rel=1e-6, abs=1e-9)
        assert x.interval.high == pytest.approx(high, rel=1e-6, abs=1e-9)


def test_a_missing_comparison_keeps_the_family_size() -> None:
    config = preset("smoke")
    crafted = [r for r in rescue_data.records(config) if r["spec"]["seed"] == 100 or
               r["spec"]["arm"] != "dino-ema0"]  # fmt: skip
    results = analysis.Results(
        crafted, rescue_data.UNTRAINED, rescue_data.heads(config)
    )
    rows = analysis.analyse(results, config)
    dino = [x for x in rows if x.arm == "dino-ema0"]
    assert {x.verdict for x in dino} == {verdicts.MISSING}
    assert all(x.p == 1.0 for x in dino)
    rescue = {(r.removal, r.treatment): r.verdict for r in analysis.rescues(rows)}
    assert rescue[("dino-ema0", "entropy")] == verdicts.MISSING
    primary = [x.p for x in rows if x.family == "primary"]
    assert len(primary) == 14
    levels = [x.level for x in rows if x.family == "primary"]
    assert levels == pytest.approx(holm_levels(primary))


def test_verdict_lines_and_summary(comparisons: List[Comparison]) -> None:
    config = preset("smoke")
    lines = analysis.verdict_lines(comparisons, config)
    assert len(lines) == 14 + 6 + 5 + 15
    first = lines[0]
    assert first.startswith(
        "primary | dino-ema0 | none | collapse vs -0.05 | collapses | G "
    )
    assert first.endswith("(family of 14)")
    rescue_lines: Dict[str, str] = {
        line.split(" | ")[1] + "/" + line.split(" | ")[2]: line.split(" | ")[3]
        for line in lines
        if line.startswith("rescue | ")
    }
    assert rescue_lines["byol-nopred-ema0/uniformity"] == "rescues"
    assert analysis.summary_line(comparisons) == (
        "Rescue verdicts: primary: 5 rescues, 3 does not rescue, 2 inconclusive; "
        "secondary: 5 no failure to rescue."
    )


def test_an_interim_reading_states_no_verdict(
    comparisons: List[Comparison],
) -> None:
    config = preset("smoke")
    results = analysis.Results(
        rescue_data.records(config), rescue_data.UNTRAINED, rescue_data.heads(config)
    )
    interim = analysis.analyse(results, config, complete=False)
    assert {x.verdict for x in interim} == {verdicts.INTERIM}
    # The same numbers as the complete reading: only the words are withheld.
    assert [(x.p, x.level, str(x.interval)) for x in interim] == [
        (x.p, x.level, str(x.interval)) for x in comparisons
    ]
    assert {r.verdict for r in analysis.rescues(interim)} == {verdicts.INTERIM}
    lines = analysis.verdict_lines(interim, config)
    words = (verdicts.RESCUES, verdicts.LEARNS, verdicts.BELOW_UNTRAINED, "collapses")
    assert not any(f"| {w} |" in line for line in lines for w in words)
    assert analysis.summary_line(interim) == (
        f"Rescue verdicts: primary: 10 {verdicts.INTERIM}; "
        f"secondary: 5 {verdicts.INTERIM}."
    )
