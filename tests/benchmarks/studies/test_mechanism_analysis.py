"""The mechanism study's verdicts on crafted numbers, held to the pre-registration."""

from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional

import pytest

from benchmarks.studies import stats
from benchmarks.studies.mechanism import analysis
from benchmarks.studies.mechanism.config import (
    HEADLINE_ARMS,
    StudyConfig,
    batch_axis_specs,
    run_specs,
)

C = 0.05
SEEDS = range(5)


def per_seed(*values: float) -> Dict[int, float]:
    return dict(enumerate(values))


COLLAPSED = per_seed(-0.30, -0.31, -0.29, -0.30, -0.32)
LEARNED = per_seed(0.030, 0.040, 0.035, 0.032, 0.038)
FLAT = per_seed(0.001, -0.002, 0.000, 0.002, -0.001)
WIDE = per_seed(-0.30, 0.10, -0.20, 0.05, -0.02)


def _one(cases: Dict[str, Any]) -> List[analysis.Row]:
    return analysis.headline_rows(cases, C, 0.05, 9)


def test_headline_wording_for_every_branch() -> None:
    rows = _one(
        {
            "rescued": (COLLAPSED, LEARNED),
            "both collapse": (COLLAPSED, COLLAPSED),
            "no collapse": (FLAT, COLLAPSED),
            "unclear": (COLLAPSED, WIDE),
        }
    )
    got = {r.case: r.verdicts for r in rows}
    assert got["rescued"] == {"H-control": "collapses", "H-entropy": "supported"}
    assert got["both collapse"] == {
        "H-control": "collapses",
        "H-entropy": "not supported",
    }
    # No collapse without the entropy term: nothing to prevent, whatever w = 1 did.
    assert got["no collapse"] == {
        "H-control": "does not collapse",
        "H-entropy": "inconclusive (no collapse without the entropy term)",
    }
    assert got["unclear"] == {"H-control": "collapses", "H-entropy": "inconclusive"}


def test_headline_inconclusive_control_when_the_interval_straddles_minus_c() -> None:
    (row,) = _one({"case": (per_seed(-0.10, 0.00, -0.08, -0.02, -0.06), LEARNED)})
    assert row.verdicts["H-control"] == "inconclusive"
    assert row.verdicts["H-entropy"] == (
        "inconclusive (no collapse without the entropy term)"
    )


def test_headline_p_is_the_larger_of_the_registered_two() -> None:
    g0, g1 = list(COLLAPSED.values()), list(LEARNED.values())
    p_control = stats.p_value(*stats.mean_se(g0), 5, -C)
    p_entropy = stats.p_value(*stats.mean_se(g1), 5, 0.0)
    assert analysis.headline_p(g0, g1, C) == max(p_control, p_entropy)
    # G1 below -c: tested against -c; G1 between: p 1; G0 above -c: p 1.
    g1_low = list(COLLAPSED.values())
    assert analysis.headline_p(g0, g1_low, C) == max(
        p_control, stats.p_value(*stats.mean_se(g1_low), 5, -C)
    )
    assert analysis.headline_p(g0, [-0.01, -0.02, -0.03, -0.02, -0.01], C) == 1.0
    assert analysis.headline_p(list(FLAT.values()), g1, C) == 1.0


def test_headline_intervals_are_read_at_the_holm_level_of_a_family_of_nine() -> None:
    cases = {"a": (COLLAPSED, LEARNED), "b": (FLAT, FLAT)}
    rows = _one(cases)
    p = [
        analysis.headline_p(list(g0.values()), list(g1.values()), C)
        for g0, g1 in cases.values()
    ]
    levels = stats.holm_confidences(p + [1.0] * 7)
    for row, level in zip(rows, levels, strict=False):
        assert row.confidence == level
        assert row.family == 9
    assert rows[0].confidence == pytest.approx(1 - 0.05 / 9)
    g0 = stats.t_interval(list(COLLAPSED.values()), rows[0].confidence)
    assert rows[0].intervals["G0"] == g0


def test_a_wider_holm_interval_turns_a_verdict_inconclusive() -> None:
    # Decided at 95 %, not at the first Holm step of nine (1 - 0.05/9).
    g0 = per_seed(-0.070, -0.110, -0.060, -0.100, -0.080)
    assert stats.collapse(stats.t_interval(list(g0.values()), 0.95), C) == "collapses"
    (row,) = _one({"case": (g0, LEARNED)})
    assert row.verdicts["H-control"] == "inconclusive"


def test_missing_case_keeps_the_family_size_and_says_so() -> None:
    rows = _one({"a": (COLLAPSED, LEARNED), "b": (per_seed(-0.3), per_seed(0.1))})
    assert rows[1].verdicts == {
        "H-control": analysis.MISSING,
        "H-entropy": analysis.MISSING,
    }
    assert rows[0].confidence == pytest.approx(1 - 0.05 / 9)


def test_noninferiority_wording_and_p() -> None:
    rows = analysis.noninferiority_rows(
        "H-cost",
        {
            "fine": per_seed(0.001, -0.002, 0.000, 0.002, -0.001),
            "worse": per_seed(-0.10, -0.11, -0.09, -0.10, -0.12),
            "unclear": per_seed(-0.05, 0.03, -0.04, 0.02, 0.00),
        },
        0.02,
        0.05,
        4,
    )
    assert [r.verdicts["H-cost"] for r in rows] == [
        "supported",
        "not supported",
        "inconclusive",
    ]
    values = [0.001, -0.002, 0.000, 0.002, -0.001]
    assert rows[0].p == stats.p_value(*stats.mean_se(values), 5, -0.02)
    assert all(r.family == 4 for r in rows)


def test_unif_wording() -> None:
    assert analysis.unif_row(per_seed(0.02, 0.03, 0.025)).verdicts == {
        "H-unif": "ER better"
    }
    assert analysis.unif_row(per_seed(-0.02, -0.03, -0.025)).verdicts == {
        "H-unif": "uniformity better"
    }
    assert analysis.unif_row(per_seed(-0.02, 0.03, 0.0)).verdicts == {
        "H-unif": "no difference shown"
    }
    assert analysis.unif_row(per_seed(0.02, 0.03, 0.025)).confidence == 0.95


def test_batch_original_not_hurt_comes_first_whatever_d() -> None:
    # The original gains from the smaller batch (drop < 0) and ER loses: by the
    # rule as written this is "inconclusive (the original is not hurt)", not
    # "ER is hurt more".
    not_hurt = per_seed(-0.02, -0.03, -0.025)
    er_drop = per_seed(0.05, 0.06, 0.055)
    hurt = per_seed(0.10, 0.11, 0.105)
    rows = analysis.batch_rows(
        {
            "not hurt": (not_hurt, er_drop),
            "ER robust": (hurt, per_seed(0.001, 0.0, -0.001)),
            "ER hurt more": (hurt, per_seed(0.20, 0.21, 0.205)),
        },
        0.05,
        9,
    )
    got = {r.case: r.verdicts["H-batch"] for r in rows}
    assert got["not hurt"] == "inconclusive (the original is not hurt)"
    # With 3 seeds, the first Holm step of nine needs |t| > 13.4: decided only
    # for large, consistent effects, as these are.
    assert got["ER robust"] == "supported"
    assert got["ER hurt more"] == "not supported (ER is hurt more)"
    d = [a - b for a, b in zip(hurt.values(), (0.001, 0.0, -0.001), strict=True)]
    assert rows[1].p == max(
        stats.p_value(*stats.mean_se(list(hurt.values())), 3),
        stats.p_value(*stats.mean_se(d), 3),
    )
    assert rows[0].p == 1.0  # the original's mean drop is not positive


def test_verdict_lines_and_the_verdict_line() -> None:
    rows = _one({"byol-nopred": (COLLAPSED, LEARNED)})
    lines = analysis.verdict_lines(rows)
    assert lines[0].startswith("H-control | byol-nopred | collapses | G0 ")
    assert lines[1].startswith("H-entropy | byol-nopred | supported | G0 ")
    assert "n = 5, Holm level 0.9944 (family of 9)" in lines[0]
    assert analysis.summary_line(rows) == (
        "Verdicts: H-control: 1 collapses; H-entropy: 1 supported."
    )


# ---------------------------------------------------------------------------------------
# From run records
# ---------------------------------------------------------------------------------------
def _record(spec: Any, final: float) -> Dict[str, Any]:
    return {
        "run_id": spec.run_id,
        "spec": spec.to_dict(),
        "final_knn": final,
        "best_knn": final,
        "final_probe": final,
        "label": "learned",
    }


def test_hypotheses_pair_the_registered_runs() -> None:
    config = StudyConfig("t", 20, evaluations=2)
    untrained = {s: 0.74 + 0.001 * s for s in config.seeds}

    def final(
        arm: str, weight: Optional[float], batch: int, steps: int, seed: int
    ) -> float:
        base = untrained[seed]
        if arm in HEADLINE_ARMS and weight == 0.0:
            return base - 0.30 - 0.01 * (seed % 2)  # the device removed: collapse
        if batch == config.large_batch:
            return base + 0.03 + 0.001 * seed
        if batch == config.small_batch and steps == config.steps:
            # fixed steps: the originals lose 10 points, ER 1
            return base + (0.02 if weight == 1.0 else -0.07) + 0.002 * seed
        return base + 0.04 + 0.001 * (seed % 3)

    records = [
        _record(s, final(s.arm, s.weight, s.batch, s.steps, s.seed))
        for s in run_specs(config)
    ]
    rows = analysis.hypotheses(analysis.Results(records, untrained), config)
    by = {(r.hypothesis, r.case): r for r in rows}
    assert len(rows) == 9 + 4 + 3 + 1 + 9
    nopred = by[("H-control/H-entropy", "byol-nopred")]
    assert nopred.verdicts == {"H-control": "collapses", "H-entropy": "supported"}
    assert nopred.n == 5
    assert nopred.intervals["G0"].mean == pytest.approx(-0.304)
    assert by[("H-cost", "byol")].verdicts == {"H-cost": "supported"}
    simclr = by[("H-replace", "SimCLR-ER (simclr-er, w = 1) - SimCLR")]
    assert simclr.intervals["d"].mean == pytest.approx(0.0)
    fixed_steps = by[("H-batch", "BYOL, 128 → 32, fixed steps")]
    assert fixed_steps.n == 3
    # drop(original) = 0.04 + 0.001 (s % 3) + 0.07 - 0.002 s; D = drop(o) - drop(ER)
    drops = [0.04 + 0.001 * (s % 3) + 0.07 - 0.002 * s for s in range(3)]
    assert fixed_steps.intervals["drop(original)"].mean == pytest.approx(
        statistics.fmean(drops)
    )
    assert fixed_steps.intervals["D"].mean == pytest.approx(0.09)
    assert by[("H-unif", "BYOL-ER - BYOL + uniformity")].n == 3
    # every batch-axis run of the plan is read by a comparison
    assert {
        (s.arm, s.weight, s.batch, s.steps) for s in batch_axis_specs(0, config)
    } <= {k for k in analysis.Results(records, untrained).records}
