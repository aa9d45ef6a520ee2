"""The collapse alarm's rules and streaks, plain Python (no Lightning, no torch).

:class:`lightly_er.monitoring.EntropyMonitor` applies them at every check; a replay
of recorded runs calls the same code, so a validated rule and the shipped one
cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple

from lightly_er.utils.checks import check_int, check_real

Role = str
ROLES: Tuple[Role, ...] = ("student", "teacher")
"""A student is trained; a teacher (an EMA copy, a target network) is only observed."""
RuleModules = Literal["heads", "all"]
RULE_MODULES: Tuple[str, ...] = ("heads", "all")


@dataclass(frozen=True)
class AlarmRule:
    """Flags a watched module when one of its metrics is below a threshold.

    Attributes:
        metric:
            The metric of :class:`lightly_er.monitoring.EntropyMeter` the rule reads,
            e.g. ``"dimension_score"``.
        threshold:
            The module is flagged at a check where the metric is below it.
        support:
            The family of modules the rule applies to: ``"sphere"`` (embeddings) or
            ``"discrete"`` (prototype scores).
        roles:
            Whether it applies to trained modules (``"student"``), observed ones
            (``"teacher"``) or both.
        modules:
            ``"heads"`` (default): the rule skips the modules the monitor takes for
            backbones (``backbone``, ``student_backbone`` and their EMA copies),
            whose features an alarm does not judge; ``"all"``: it reads them too.
        validated:
            Whether the rule passed a validation against a ground truth of
            collapse (docs/monitoring.md has the table); the alarm message says
            whether it did. False for every rule shipped so far.

    Examples:
        >>> from lightly_er.monitoring.rules import AlarmRule
        >>> rule = AlarmRule("dimension_score", 0.2, "sphere")
        >>> rule.flags({"dimension_score": 0.1}), rule.flags({"dimension_score": 0.5})
        (True, False)
        >>> rule.applies("sphere", "student", backbone=True)
        False
    """

    metric: str
    threshold: float
    support: str
    roles: Tuple[Role, ...] = ROLES
    validated: bool = False
    modules: RuleModules = "heads"

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise TypeError(f"metric must be a metric name, got {self.metric!r}")
        check_real(self.threshold, "threshold")
        if self.support not in ("sphere", "discrete"):
            raise ValueError(
                f"support must be 'sphere' or 'discrete', got {self.support!r}"
            )
        if not self.roles or any(role not in ROLES for role in self.roles):
            raise ValueError(f"roles must be a non-empty subset of {ROLES}")
        if not isinstance(self.validated, bool):
            raise TypeError(
                f"validated must be a bool, got {type(self.validated).__name__}"
            )
        if self.modules not in RULE_MODULES:
            raise ValueError(f"modules must be 'heads' or 'all', got {self.modules!r}")

    def applies(self, support: str, role: Role, backbone: bool = False) -> bool:
        """Whether the rule reads modules of this support and role (and a backbone,
        if ``backbone``)."""
        if backbone and self.modules == "heads":
            return False
        return support == self.support and role in self.roles

    def flags(self, metrics: Mapping[str, float]) -> bool:
        """Whether these metrics are flagged (a missing or NaN metric is not)."""
        value = metrics.get(self.metric)
        return value is not None and not math.isnan(value) and value < self.threshold


DEFAULT_RULES: Tuple[AlarmRule, ...] = (
    AlarmRule("dimension_score", 0.25, "sphere"),
    AlarmRule("normalized_mutual_information", 0.05, "discrete"),
)
"""One rule per family, on heads (not backbones). Not validated: replayed on the
collapse corpora of 2026-12-02 they catch the collapses but fire on many healthy
runs (docs/monitoring.md has the table)."""

DEFAULT_PATIENCE = 3
DEFAULT_EVERY_N_STEPS = 50


def check_rules(rules: Any) -> Sequence[AlarmRule]:
    """Raises a TypeError unless rules is a sequence of AlarmRule."""
    if isinstance(rules, (str, AlarmRule)) or not isinstance(rules, Sequence):
        raise TypeError(
            f"rules must be a sequence of AlarmRule, got {type(rules).__name__}"
        )
    for rule in rules:
        if not isinstance(rule, AlarmRule):
            raise TypeError(f"rules must hold AlarmRule objects, got {rule!r}")
    return rules


def extra_rules(
    collapse_threshold: Optional[float], rank_threshold: Optional[float]
) -> Tuple[AlarmRule, ...]:
    """The rules of EntropyMonitor's ``collapse_threshold`` and ``rank_threshold``.

    The collapse score on embeddings; the effective rank on both families.

    Raises:
        TypeError, ValueError: If a threshold is not a finite real number.
    """
    extra: List[AlarmRule] = []
    if collapse_threshold is not None:
        check_real(collapse_threshold, "collapse_threshold")
        extra.append(AlarmRule("collapse_score", collapse_threshold, "sphere"))
    if rank_threshold is not None:
        check_real(rank_threshold, "rank_threshold")
        extra += [
            AlarmRule("effective_rank", rank_threshold, support)
            for support in ("sphere", "discrete")
        ]
    return tuple(extra)


class CollapseWarning(UserWarning):
    """Issued by :class:`lightly_er.monitoring.EntropyMonitor` when an alarm rule
    flags a watched module for ``patience`` consecutive checks."""


@dataclass(frozen=True)
class CollapseAlarm:
    """One alarm of :class:`lightly_er.monitoring.EntropyMonitor`.

    Attributes:
        step: The global step of the check that raised the alarm.
        module: The name of the watched module.
        metric: The metric below its threshold (``"dimension_score"``,
            ``"normalized_mutual_information"``, ...).
        value: Its value at that check.
        threshold: Its threshold.
    """

    step: int
    module: str
    metric: str
    value: float
    threshold: float


@dataclass(frozen=True)
class Flag:
    """What raised an alarm: the rule's metric, its value and threshold, and
    whether the rule is validated."""

    metric: str
    value: float
    threshold: float
    validated: bool = False


def alarm_message(
    flag: Flag, module: str, role: Role, step: int, patience: int, every_n_steps: int
) -> str:
    """The alarm's message: what the rule saw, whether it is validated, what it is not.

    Examples:
        >>> from lightly_er.monitoring.rules import Flag, alarm_message
        >>> print(alarm_message(Flag("dimension_score", 0.01, 0.25), "head",
        ...                     "student", 150, 3, 50))  # doctest: +NORMALIZE_WHITESPACE
        EntropyMonitor alarm at global step 150: student module 'head' read
        dimension_score = 0.01 < 0.25 (the rule's threshold) for 3 consecutive checks
        (every 50 steps). This rule is not validated; see docs/monitoring.md. The
        alarm reads one statistic of this module's outputs; it does not judge the
        backbone's features (a kNN or linear probe does).
    """
    checks = "1 check" if patience == 1 else f"{patience} consecutive checks"
    steps = "step" if every_n_steps == 1 else f"{every_n_steps} steps"
    verdict = (
        "This rule is validated; docs/monitoring.md has its table."
        if flag.validated
        else "This rule is not validated; see docs/monitoring.md."
    )
    return (
        f"EntropyMonitor alarm at global step {step}: {role} module {module!r} read "
        f"{flag.metric} = {flag.value:.4g} < {flag.threshold:g} (the rule's "
        f"threshold) for {checks} (every {steps}). {verdict} The alarm "
        "reads one statistic of this module's outputs; it does not judge the "
        "backbone's features (a kNN or linear probe does)."
    )


class AlarmTracker:
    """Counts consecutive flagged checks per module; alarms once per streak.

    Args:
        rules: The rules to apply.
        patience: Consecutive flagged checks that raise an alarm, >= 1.

    Attributes:
        streaks: The current streak of every module checked so far.

    Examples:
        >>> from lightly_er.monitoring.rules import AlarmRule, AlarmTracker
        >>> tracker = AlarmTracker([AlarmRule("dimension_score", 0.2, "sphere")], 2)
        >>> low = {"dimension_score": 0.1}
        >>> tracker.check("head", "sphere", "student", low) is None  # streak 1
        True
        >>> tracker.check("head", "sphere", "student", low)  # streak 2: the alarm
        Flag(metric='dimension_score', value=0.1, threshold=0.2, validated=False)
    """

    def __init__(self, rules: Sequence[AlarmRule], patience: int) -> None:
        check_int(patience, "patience", 1)
        self.rules = tuple(check_rules(rules))
        self.patience = patience
        self.streaks: Dict[str, int] = {}

    def flagged(
        self,
        support: str,
        role: Role,
        metrics: Mapping[str, float],
        backbone: bool = False,
    ) -> Optional[Flag]:
        """The first rule (in order) that flags these metrics, as a Flag, or None."""
        for rule in self.rules:
            if rule.applies(support, role, backbone) and rule.flags(metrics):
                return Flag(
                    rule.metric,
                    metrics[rule.metric],
                    float(rule.threshold),
                    rule.validated,
                )
        return None

    def check(
        self,
        module: str,
        support: str,
        role: Role,
        metrics: Mapping[str, float],
        backbone: bool = False,
    ) -> Optional[Flag]:
        """Updates the module's streak; returns the Flag when it reaches patience.

        ``backbone``: the module is a backbone (rules on heads only skip it).
        """
        flag = self.flagged(support, role, metrics, backbone)
        if flag is None:
            self.streaks[module] = 0
            return None
        streak = self.streaks.get(module, 0) + 1
        self.streaks[module] = streak
        # Once per streak, when it reaches patience, not on every later check.
        return flag if streak == self.patience else None


__all__ = [
    "DEFAULT_RULES",
    "AlarmRule",
    "AlarmTracker",
    "CollapseAlarm",
    "CollapseWarning",
    "Flag",
    "alarm_message",
]
