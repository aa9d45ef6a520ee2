"""The stability study's corrected record, pinned on a few of its rows."""

from __future__ import annotations

import math
from typing import Dict, List

import pytest

from benchmarks.studies import stability_correction as sc
from benchmarks.studies import stats

NOT_HURT = "inconclusive (the original is not hurt)"


@pytest.fixture(scope="module")
def rows() -> Dict[str, List[sc.Row]]:
    return {p: sc.correct(sc.parse(text)) for p, text in sc.PUBLISHED.items()}


def _row(rows: Dict[str, List[sc.Row]], protocol: str, case: str) -> sc.Row:
    (row,) = [r for r in rows[protocol] if r.case == case]
    return row


def test_parse_keeps_every_published_row() -> None:
    for text in sc.PUBLISHED.values():
        cases = sc.parse(text)
        assert [c.hypothesis for c in cases] == ["H1"] * 3 + ["H2"] * 6 + ["H3"] * 6 + [
            "H4"
        ] * 2
    (simclr,) = [
        c for c in sc.parse(sc.PUBLISHED["v2"]) if c.case == "SimCLR, batch 128 → 16"
    ]
    assert simclr.drop == sc.Published("-0.018", "-0.026", "-0.010")
    assert simclr.comparison == sc.Published("-0.015", "-0.022", "-0.009")


def test_rule_as_written_changes_exactly_the_four_verdicts(
    rows: Dict[str, List[sc.Row]],
) -> None:
    changed = {
        (p, r.case): r.as_written
        for p, protocol_rows in rows.items()
        for r in protocol_rows
        if r.as_written != r.published
    }
    assert changed == {
        ("v1", "BYOL, batch 128 → 16"): NOT_HURT,
        ("v1", "DINO, batch 128 → 16"): NOT_HURT,
        ("v1", "DINO, batch 128 → 32"): NOT_HURT,
        ("v2", "SimCLR, batch 128 → 16"): NOT_HURT,
    }


def test_signed_zero_end_says_which_side_of_zero() -> None:
    # v2 BYOL EMA 0: the drop's lower end is printed -0.000: at most 0, not hurt.
    (case,) = [
        c for c in sc.parse(sc.PUBLISHED["v2"]) if c.case == "BYOL, EMA 0.99 → 0"
    ]
    assert sc.verdict_as_written(case) == NOT_HURT
    # The same case printed with +0.000 would have been hurt (and D straddles 0).
    hurt = sc.Case(
        "H2",
        "x",
        "x",
        case.comparison,
        sc.Published("+0.014", "+0.000", "+0.028"),
    )
    assert sc.verdict_as_written(hurt) == "inconclusive"
    assert math.copysign(1.0, sc.Published("+0.0", "-0.000", "+0.0").interval().low) < 0


def test_t_interval_from_published_ends(rows: Dict[str, List[sc.Row]]) -> None:
    # v1 DINO EMA 0.5: D +0.173 [+0.162, +0.184], SE = 0.022 / 4 = 0.0055;
    # 95% with 2 df: ± 4.3027 * 0.0055 = ± 0.02366.
    row = _row(rows, "v1", "DINO, EMA 0.99 → 0.5")
    assert row.t95 is not None and row.drop_t95 is not None
    assert row.t95.se == pytest.approx(0.0055)
    assert (row.t95.low, row.t95.high) == pytest.approx(
        (0.173 - 0.023665, 0.173 + 0.023665), abs=1e-5
    )
    # drop +0.207 [+0.179, +0.235]: SE 0.014, ± 0.06024
    assert row.drop_t95.low == pytest.approx(0.207 - 0.060238, abs=1e-5)
    assert row.verdict_t95 == "supported"


def test_t_interval_verdicts_without_multiplicity(
    rows: Dict[str, List[sc.Row]],
) -> None:
    # v1 SimCLR H1: -0.001 ± 4.303 * 0.0055 = [-0.025, +0.023] reaches -0.02.
    assert _row(rows, "v1", "SimCLR").verdict_t95 == "inconclusive"
    # v1 BYOL H1: +0.056 [+0.037, +0.075] stays above -0.02.
    assert _row(rows, "v1", "BYOL").verdict_t95 == "supported"
    # v2 DINO EMA 0: the original's drop +0.110 ± 4.303 * 0.03375 reaches 0.
    assert _row(rows, "v2", "DINO, EMA 0.99 → 0").verdict_t95 == NOT_HURT


def test_holm_over_fifteen_decides_nothing_at_three_seeds(
    rows: Dict[str, List[sc.Row]],
) -> None:
    # With 2 degrees of freedom the first Holm step (α / 15) needs |t| > 17.3;
    # the smallest p-value (v1 H1 BYOL, t = 16.9) just misses it.
    for protocol_rows in rows.values():
        tested = [r for r in protocol_rows if r.hypothesis != "H4"]
        assert len(tested) == 15
        for r in tested:
            assert r.holm_confidence == pytest.approx(1 - 0.05 / 15)
            assert r.verdict_holm in ("inconclusive", NOT_HURT)
    assert _row(rows, "v1", "DINO, EMA 0.99 → 0.5").verdict_holm == NOT_HURT
    assert _row(rows, "v1", "BYOL").sensitive_holm  # within rounding of the bar


def test_holm_per_hypothesis_sensitivity() -> None:
    per_hypothesis = sc.correct(sc.parse(sc.PUBLISHED["v1"]), per_hypothesis=True)
    verdicts = {r.case: r.verdict_holm for r in per_hypothesis if r.hypothesis != "H4"}
    assert verdicts["BYOL"] == "supported"
    assert verdicts["DINO, EMA 0.99 → 0.5"] == "supported"
    assert verdicts["DINO, EMA 0.99 → 0"] == "inconclusive"


def test_h4_is_recomputed_but_not_tested(rows: Dict[str, List[sc.Row]]) -> None:
    assert _row(rows, "v2", "DINO (original)").as_written == "supported"
    assert _row(rows, "v1", "DINO (original)").as_written == "not supported"
    assert _row(rows, "v1", "DINO (original)").holm_confidence is None


def test_main_prints_both_tables(capsys: pytest.CaptureFixture[str]) -> None:
    sc.main()
    out = capsys.readouterr().out
    assert out.count("### Protocol") == 2
    assert out.count("| H3 | SimCLR, batch 128 → 16 |") == 2
    assert "Rule (i) changes 3 published verdict(s)" in out
    assert "Rule (i) changes 1 published verdict(s)" in out


def test_case_p_values() -> None:
    cases = {c.case: c for c in sc.parse(sc.PUBLISHED["v1"])}
    # H1 tests ER - original = -0.02: t = (0.056 + 0.02) / 0.0045.
    t = 0.076 / 0.0045
    assert sc.case_p_value(cases["BYOL"]) == pytest.approx(
        2 * (1 - stats.t_cdf(t, 2)), rel=1e-9
    )
    # H2/H3: the larger of the two conditions' p-values; here the drop's
    # (t = 0.207 / 0.014) is larger than D's (t = 0.173 / 0.0055).
    case = cases["DINO, EMA 0.99 → 0.5"]
    assert sc.case_p_value(case) == pytest.approx(
        2 * (1 - stats.t_cdf(0.207 / 0.014, 2)), rel=1e-9
    )
    # An original whose mean drop is not positive cannot be hurt: p = 1.
    assert sc.case_p_value(cases["BYOL, EMA 0.99 → 0"]) == 1.0
