"""The alarm validation's criteria on crafted run results (every verdict branch)."""

from __future__ import annotations

import math
from typing import List, Optional

import pytest
from scipy.stats import beta

from benchmarks.studies.alarm import plan
from benchmarks.studies.alarm.replay import RunResult
from benchmarks.studies.alarm.verdicts import evaluate, family_rows, quality, shipped

E0, E1, E2 = plan.CANDIDATES[:3]
ROLES = ("all", "student", "teacher")


def run(
    i: int,
    collapsed: bool,
    alarm: Optional[int],
    first_met: Optional[int] = 400,
    method: str = "byol",
    others: Optional[int] = None,
    diverged: bool = False,
    below: bool = False,
) -> RunResult:
    """A run whose E0 alarm (all roles, as a student) is at ``alarm``; E1 and E2
    at ``others``."""
    r = RunResult(f"r{i}", method, method, i, "new", diverged)
    r.collapsed, r.first_met, r.knn_below = (
        collapsed,
        first_met if collapsed else None,
        below,
    )
    student = {"all": alarm, "student": alarm, "teacher": None}
    r.alarms = {
        "E0": student,
        "E1": dict.fromkeys(ROLES, others),
        "E2": dict.fromkeys(ROLES, None),
    }
    return r  # fmt: skip


def corpus(caught: int, lead: int, false: int, collapsed: int = 15) -> List[RunResult]:
    runs = [run(i, True, 400 - lead if i < caught else None) for i in range(collapsed)]
    return runs + [run(100 + i, False, 300 if i < false else None) for i in range(20)]


def test_a_family_that_meets_every_criterion_passes() -> None:
    row = evaluate(corpus(caught=15, lead=200, false=1), E0)
    assert (row.collapsed, row.detected, row.healthy, row.false_alarms) == (
        15,
        15,
        20,
        1,
    )
    assert row.sensitivity_lower == pytest.approx(0.025 ** (1 / 15), abs=1e-9)
    assert row.median_lead == 200.0
    # upper of 1/20: 1 - (0.025)^(1/20) is the upper of 0/20; 1/20 is 0.2487 (exact).
    assert row.false_alarm_upper == pytest.approx(0.24873, abs=1e-4)
    assert row.verdict == "pass"


@pytest.mark.parametrize(
    ("caught", "lead", "false", "verdict"),
    [
        (11, 200, 0, "fail: sensitivity"),  # 11/15: lower 0.449 < 0.5 (12/15: 0.519)
        (12, 200, 0, "pass"),
        (15, 99, 0, "fail: lead time"),
        (15, 100, 0, "pass"),
        (15, 200, 2, "fail: false alarms"),  # 2/20: upper 0.317 > 0.3
        (5, 50, 5, "fail: sensitivity, lead time, false alarms"),
    ],
)
def test_each_criterion_fails_alone_at_its_boundary(
    caught: int, lead: int, false: int, verdict: str
) -> None:
    assert evaluate(corpus(caught, lead, false), E0).verdict == verdict


@pytest.mark.parametrize("caught", [11, 12, 15])
def test_sensitivity_bound_is_the_beta_quantile(caught: int) -> None:
    # Clopper-Pearson's lower end: the 2.5 % quantile of Beta(k, n - k + 1).
    expected = beta.ppf(0.025, caught, 15 - caught + 1)
    lower = evaluate(corpus(caught, 200, 0), E0).sensitivity_lower
    assert lower == pytest.approx(expected, abs=1e-6)


def test_the_median_lead_of_an_even_number_and_negative_leads() -> None:
    runs = [run(0, True, 450), run(1, True, 300), run(2, True, 250)]
    runs += [run(3, True, 100), run(4, True, None), run(5, False, None)]
    row = evaluate(runs, E0)
    # first met 400: leads -50, +100, +150, +300; the missed run has none
    assert row.leads == [-50, 100, 150, 300]
    assert row.median_lead == 125.0
    assert row.detected == 4 and row.collapsed == 5


@pytest.mark.parametrize("collapsed", [True, False])
def test_a_family_without_one_of_the_classes_is_not_testable(collapsed: bool) -> None:
    runs = [run(i, collapsed, 100) for i in range(5)]
    side = "with" if not collapsed else "without"
    assert evaluate(runs, E0).verdict == f"not testable: no run {side} head collapse"


def test_diverged_runs_and_other_families_are_left_out() -> None:
    runs = corpus(15, 200, 0) + [run(50, True, None, diverged=True)]
    runs.append(run(51, False, 100, method="dino"))
    runs[-1].alarms = {"P0": dict.fromkeys(ROLES, 100)}
    row = evaluate(runs, E0)
    assert (row.collapsed, row.healthy, row.verdict) == (15, 20, "pass")


def test_the_second_outcome_is_counted_on_every_run() -> None:
    runs = [run(0, True, 200, below=True), run(1, False, 200, below=True)]
    runs += [run(2, False, None, below=True), run(3, False, None)]
    row = evaluate(runs, E0)
    assert (row.below, row.not_below) == ("2/3", "0/1")


def test_role_rows_read_only_runs_with_a_head_of_that_role() -> None:
    runs = corpus(15, 200, 0)
    runs.append(run(60, False, None, method="simsiam"))
    teacher = evaluate(runs, E0, role="teacher")
    # SimSiam has no teacher head: only the BYOL runs, whose teachers never alarm.
    assert (teacher.collapsed, teacher.healthy, teacher.detected) == (15, 20, 0)
    assert teacher.verdict == "(fail: sensitivity, lead time; not a verdict)"
    assert evaluate(runs, E0, role="student").healthy == 21


def test_the_primary_ships_validated_when_it_passes() -> None:
    rows = family_rows(corpus(15, 200, 0), "embedding")
    assert shipped(rows, "embedding") == "E0 (dimension_score < 0.25): validated"


def test_an_alternative_ships_only_if_it_passes_at_its_bonferroni_level() -> None:
    # E0 never alarms; E1 catches 13 of 15 with lead 200 and no false alarm.
    runs = [run(i, True, None, others=200 if i < 13 else None) for i in range(15)]
    runs += [run(100 + i, False, None) for i in range(20)]
    rows = family_rows(runs, "embedding")
    levels = {(r.candidate, r.role): r.confidence for r in rows}
    assert levels[("E0", "all")] == 0.95 and levels[("E1", "all")] == 0.975
    assert shipped(rows, "embedding") == "E1 (collapse_score < 0.5): validated"
    # 12 of 15 passes at 95 % (lower 0.519) but not at 97.5 % (lower 0.4825).
    runs[12].alarms["E1"] = dict.fromkeys(ROLES, None)
    rows = family_rows(runs, "embedding")
    e1 = next(r for r in rows if (r.candidate, r.role) == ("E1", "all"))
    assert e1.detected == 12
    assert e1.sensitivity_lower == pytest.approx(beta.ppf(0.0125, 12, 4), abs=1e-6)
    assert e1.verdict == "fail: sensitivity"
    assert shipped(rows, "embedding") == "E0 (dimension_score < 0.25): not validated"


def test_quality_recommends_a_score_that_ranks_held_out_runs() -> None:
    runs = []
    for seed in range(10):
        r = RunResult(f"q{seed}", "dino", "dino", seed, "new", False)
        r.final_knn = 0.70 + 0.01 * seed
        # RankMe follows the kNN; the collapse score runs against it.
        r.scores = {s: math.nan for s in plan.QUALITY_SCORES}
        r.scores.update(effective_rank=10.0 + seed, collapse_score=1.0 - 0.1 * seed)
        runs.append(r)
    q = quality(runs, "dino")
    assert q["chosen"] == "effective_rank"
    held = q["scores"]["effective_rank"]
    assert held["rho_held"] == pytest.approx(1.0) and held["n_held"] == 5.0
    assert held["regret"] == 0.0 and held["p"] < 0.05
    assert q["verdict"] == "recommend effective_rank"
    # The collapse score picks the worst held-out run: regret 0.79 - 0.71.
    assert q["scores"]["collapse_score"]["regret"] == pytest.approx(0.08)


def test_quality_says_none_works_when_the_held_out_runs_disagree() -> None:
    runs = []
    for seed in range(10):
        r = RunResult(f"q{seed}", "swav", "swav", seed, "new", False)
        r.final_knn = 0.70 + 0.01 * seed
        odd = seed % 2 == 1
        r.scores = {s: math.nan for s in plan.QUALITY_SCORES}
        r.scores["entropy_gap"] = -float(seed) if odd else float(seed)
        runs.append(r)
    q = quality(runs, "swav")
    assert q["chosen"] == "entropy_gap"
    assert q["scores"]["entropy_gap"]["rho_held"] == pytest.approx(-1.0)
    assert q["verdict"] == "none works"
    assert quality(runs, "byol") == {
        "method": "byol", "chosen": None, "verdict": "none works",
        "scores": quality(runs, "byol")["scores"],
    }  # fmt: skip
