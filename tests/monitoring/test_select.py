"""Tests of lightly_er.monitoring._select: what EntropyMonitor's metrics= sends to
the loggers."""

from __future__ import annotations

from typing import List, Tuple, get_args

import pytest

from lightly_er.monitoring import DEFAULT_RULES, AlarmRule, MetricName, MonitorMetric
from lightly_er.monitoring._select import (
    MONITOR_METRICS,
    check_metrics,
    compact_metrics,
    logged_rows,
)

ROWS: List[Tuple[str, str, float]] = [
    ("projection_head", "dimension_score", 0.5),
    ("projection_head", "entropy_gap", 2.0),
    ("projection_head", "collapse_score", 0.7),
    ("projection_head", "entropy", -3.0),
    ("student_head", "normalized_mutual_information", 0.3),
    ("student_head", "entropy", 1.5),
    ("student_head", "kl_teacher_student", 0.2),
    ("teacher_head", "normalized_mutual_information", 0.4),
    ("teacher_head", "entropy", 1.7),
    ("teacher_head", "effective_rank", 3.0),
    ("criterion", "entropy", 4.0),
    ("criterion", "reconstruction", -1.0),
]
MODULES = {
    "projection_head": ("sphere", "student"),
    "student_head": ("discrete", "student"),
    "teacher_head": ("discrete", "teacher"),
}


def test_the_names_are_the_meters_and_two_more() -> None:
    assert MONITOR_METRICS == (*get_args(MetricName), "kl_teacher_student", "criterion")
    assert get_args(MonitorMetric) == MONITOR_METRICS


def test_compact_is_the_alarm_metric_and_the_entropy_gap() -> None:
    logged = logged_rows(ROWS, MODULES, DEFAULT_RULES, "compact")
    assert logged == [
        ("projection_head", "dimension_score", 0.5),
        ("projection_head", "entropy_gap", 2.0),
        ("student_head", "normalized_mutual_information", 0.3),
        ("student_head", "entropy", 1.5),
        ("teacher_head", "normalized_mutual_information", 0.4),
        ("teacher_head", "entropy", 1.7),
    ]
    # Every rule that reads a module adds its metric; a student-only rule skips
    # the teacher.
    rules = (*DEFAULT_RULES, AlarmRule("effective_rank", 2.0, "discrete", ("student",)))
    assert compact_metrics("discrete", "student", rules) == (
        "normalized_mutual_information",
        "effective_rank",
        "entropy",
    )
    assert compact_metrics("discrete", "teacher", rules) == (
        "normalized_mutual_information",
        "entropy",
    )
    assert compact_metrics("sphere", "student", ()) == ("entropy_gap",)


def test_all_and_a_list_of_names() -> None:
    assert logged_rows(ROWS, MODULES, DEFAULT_RULES, "all") == ROWS
    chosen = check_metrics(["entropy", "kl_teacher_student"])
    assert logged_rows(ROWS, MODULES, DEFAULT_RULES, chosen) == [
        ("projection_head", "entropy", -3.0),
        ("student_head", "entropy", 1.5),
        ("student_head", "kl_teacher_student", 0.2),
        ("teacher_head", "entropy", 1.7),
    ]
    # "criterion" selects the loss's terms, and only it does.
    terms = check_metrics(["criterion"])
    assert logged_rows(ROWS, MODULES, DEFAULT_RULES, terms) == ROWS[-2:]
    assert logged_rows(ROWS, MODULES, DEFAULT_RULES, check_metrics([])) == []


@pytest.mark.parametrize(
    "metrics, error, match",
    [
        ("full", ValueError, "metrics must be 'compact', 'all' or a list"),
        ("dimension_score", ValueError, r"metrics=\['dimension_score'\]"),
        (["dimension_score", "rank"], ValueError, "metrics lists 'rank'"),
        ([1], ValueError, "metrics lists 1"),
        (None, TypeError, "metrics must be .* got NoneType"),
    ],
)
def test_bad_metrics_are_rejected(metrics: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_metrics(metrics)
