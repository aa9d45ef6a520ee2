"""Tests of lightly_er.monitoring.rules: the alarm's rules and streaks (plain Python)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict

import pytest

from lightly_er.monitoring import DEFAULT_RULES, AlarmRule
from lightly_er.monitoring import rules as rules_module
from lightly_er.monitoring.rules import AlarmTracker, Flag, alarm_message


def test_default_rules_cover_every_family_and_role() -> None:
    for support in ("sphere", "discrete"):
        for role in ("student", "teacher"):
            assert sum(r.applies(support, role) for r in DEFAULT_RULES) == 1
    assert {r.metric for r in DEFAULT_RULES} == {
        "dimension_score",
        "normalized_mutual_information",
    }


def test_a_rule_flags_below_its_threshold_only() -> None:
    rule = AlarmRule("dimension_score", 0.2, "sphere")
    assert rule.flags({"dimension_score": 0.19})
    assert not rule.flags({"dimension_score": 0.2})
    assert not rule.flags({"dimension_score": math.nan})
    assert not rule.flags({"collapse_score": 0.0})
    assert rule.applies("sphere", "teacher") and not rule.applies("discrete", "student")
    students = AlarmRule("dimension_score", 0.2, "sphere", roles=("student",))
    assert not students.applies("sphere", "teacher")


def test_streaks_alarm_once_per_streak_at_patience() -> None:
    tracker = AlarmTracker([AlarmRule("m", 0.5, "sphere")], patience=3)
    low, high = {"m": 0.1}, {"m": 0.9}
    sequence = [low, low, high, low, low, low, low, low, high, low, low, low]
    fired = [
        i
        for i, metrics in enumerate(sequence)
        if tracker.check("a", "sphere", "student", metrics)
    ]
    # The third consecutive flagged check of each streak, and not after.
    assert fired == [5, 11]
    assert tracker.streaks == {"a": 3}
    # Modules keep their own streaks; other supports are not read.
    assert tracker.check("b", "discrete", "student", low) is None
    assert tracker.streaks["b"] == 0


def test_the_first_flagging_rule_is_reported() -> None:
    tracker = AlarmTracker(
        [AlarmRule("m", 0.5, "sphere"), AlarmRule("r", 2.0, "sphere")], patience=1
    )
    assert tracker.check("a", "sphere", "student", {"m": 0.9, "r": 1.0}) == Flag(
        "r", 1.0, 2.0
    )
    assert tracker.check("b", "sphere", "student", {"m": 0.1, "r": 1.0}) == Flag(
        "m", 0.1, 0.5
    )
    # "a" is still in its streak: no second alarm.
    assert tracker.check("a", "sphere", "student", {"m": 0.1, "r": 1.0}) is None


def test_the_flag_carries_whether_its_rule_is_validated() -> None:
    assert not any(rule.validated for rule in DEFAULT_RULES)  # none is, yet
    tracker = AlarmTracker(
        [AlarmRule("m", 0.5, "sphere", validated=True), AlarmRule("r", 2.0, "sphere")],
        patience=1,
    )
    assert tracker.check("a", "sphere", "student", {"m": 0.1, "r": 9.0}) == Flag(
        "m", 0.1, 0.5, True
    )
    assert tracker.check("b", "sphere", "student", {"m": 0.9, "r": 1.0}) == Flag(
        "r", 1.0, 2.0, False
    )


@pytest.mark.parametrize("validated", [True, False])
def test_the_alarm_message_says_what_the_rule_saw(validated: bool) -> None:
    flag = Flag("normalized_mutual_information", 0.0123456, 0.05, validated)
    message = alarm_message(flag, "teacher_head", "teacher", 700, 3, 50)
    assert message.startswith(
        "EntropyMonitor alarm at global step 700: teacher module 'teacher_head' "
        "read normalized_mutual_information = 0.01235 < 0.05 (the rule's "
        "threshold) for 3 consecutive checks (every 50 steps). "
    )
    verdict = (
        "This rule is validated;"
        if validated
        else "This rule is not validated; see docs/monitoring.md."
    )
    assert verdict in message
    assert "does not judge the backbone" in message
    assert "collapse" not in message.lower()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"metric": "", "threshold": 0.1, "support": "sphere"}, TypeError, "metric"),
        (
            {"metric": "m", "threshold": "1", "support": "sphere"},
            TypeError,
            "threshold",
        ),
        (
            {"metric": "m", "threshold": math.nan, "support": "sphere"},
            ValueError,
            "threshold",
        ),
        ({"metric": "m", "threshold": 0.1, "support": "ball"}, ValueError, "support"),
        (
            {"metric": "m", "threshold": 0.1, "support": "sphere", "roles": ("ema",)},
            ValueError,
            "roles",
        ),
        (
            {"metric": "m", "threshold": 0.1, "support": "sphere", "validated": 1},
            TypeError,
            "validated must be a bool",
        ),
    ],
)
def test_bad_rules_are_rejected(
    kwargs: Dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        AlarmRule(**kwargs)


def test_bad_trackers_are_rejected() -> None:
    with pytest.raises(ValueError, match="patience"):
        AlarmTracker([], patience=0)
    with pytest.raises(TypeError, match="AlarmRule"):
        AlarmTracker(["dimension_score"], patience=1)  # type: ignore[list-item]


def test_rules_module_imports_no_torch_or_lightning() -> None:
    # Read from the file: the module's loader may be pytest's (doctest collection).
    source = Path(rules_module.__file__).read_text(encoding="utf-8")
    imports = [
        line for line in source.splitlines() if line.startswith(("import", "from"))
    ]
    assert imports and not any(
        "torch" in line or "lightning" in line for line in imports
    )


def test_rules_read_heads_unless_told_to_read_backbones() -> None:
    low = {"dimension_score": 0.1}
    heads = AlarmRule("dimension_score", 0.2, "sphere")
    everything = AlarmRule("dimension_score", 0.2, "sphere", modules="all")
    assert heads.modules == "heads" and all(r.modules == "heads" for r in DEFAULT_RULES)
    assert heads.applies("sphere", "student")
    assert not heads.applies("sphere", "student", backbone=True)
    assert everything.applies("sphere", "teacher", backbone=True)
    tracker = AlarmTracker([heads], patience=1)
    assert tracker.check("backbone", "sphere", "student", low, backbone=True) is None
    assert tracker.streaks["backbone"] == 0
    assert tracker.check("head", "sphere", "student", low) == Flag(
        "dimension_score", 0.1, 0.2
    )
    both = AlarmTracker([heads, everything], patience=1)
    assert both.check("backbone", "sphere", "student", low, backbone=True) == Flag(
        "dimension_score", 0.1, 0.2
    )
    with pytest.raises(ValueError, match="modules must be 'heads' or 'all'"):
        AlarmRule("dimension_score", 0.2, "sphere", modules="backbones")  # type: ignore[arg-type]
