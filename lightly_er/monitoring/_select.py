"""Which of EntropyMonitor's values go to the loggers: its ``metrics`` argument.

Private to :mod:`lightly_er.monitoring.callback`; no Lightning here.
"""

from __future__ import annotations

from typing import (
    Any,
    FrozenSet,
    List,
    Literal,
    Mapping,
    Sequence,
    Tuple,
    Union,
    get_args,
)

from lightly_er.monitoring._names import MetricName, MonitorMetric
from lightly_er.monitoring.rules import AlarmRule

MetricSelection = Union[Literal["compact", "all"], Sequence[MonitorMetric]]
"""``"compact"``, ``"all"``, or the names of the metrics to log."""

# Not get_args(MonitorMetric): Python < 3.9.1 does not flatten a nested Literal.
MONITOR_METRICS: Tuple[str, ...] = (
    *get_args(MetricName),
    "kl_teacher_student",
    "criterion",
)
SELECTIONS: Tuple[str, ...] = ("compact", "all")
CRITERION = "criterion"
"""The module name under which the criterion's terms are recorded."""

Row = Tuple[str, str, float]
"""(module, metric, value) measured at one check."""


def check_metrics(metrics: Any) -> Union[str, FrozenSet[str]]:
    """metrics checked: ``"compact"``, ``"all"``, or the set of names it lists.

    Raises:
        TypeError: If metrics is neither a string nor a sequence of strings.
        ValueError: If it is another string, or lists a name that is not a metric.
    """
    names = ", ".join(map(repr, MONITOR_METRICS))
    if isinstance(metrics, str):
        if metrics in SELECTIONS:
            return metrics
        hint = (
            f" (for this one metric pass metrics=[{metrics!r}])"
            if metrics in MONITOR_METRICS
            else ""
        )
        raise ValueError(
            f"metrics must be 'compact', 'all' or a list of metric names, got "
            f"{metrics!r}{hint}"
        )
    if not isinstance(metrics, Sequence):
        raise TypeError(
            "metrics must be 'compact', 'all' or a list of metric names, got "
            f"{type(metrics).__name__}"
        )
    for name in metrics:
        if name not in MONITOR_METRICS:
            raise ValueError(
                f"metrics lists {name!r}, which the monitor does not measure; the "
                f"names are: {names}"
            )
    return frozenset(metrics)


def compact_metrics(
    support: str, role: str, rules: Sequence[AlarmRule]
) -> Tuple[str, ...]:
    """The metrics a module logs by default: its alarm's and its entropy gap.

    The metric of every rule that reads the module, and ``entropy_gap`` (sphere)
    or ``entropy`` (discrete: the entropy of the batch marginal, whose minimum is
    0, so that it is its own gap).
    """
    alarm = [rule.metric for rule in rules if rule.applies(support, role)]
    gap = "entropy_gap" if support == "sphere" else "entropy"
    return tuple(dict.fromkeys([*alarm, gap]))


def logged_rows(
    rows: Sequence[Row],
    modules: Mapping[str, Tuple[str, str]],
    rules: Sequence[AlarmRule],
    selection: Union[str, FrozenSet[str]],
) -> List[Row]:
    """The rows that go to the loggers under selection (checked by check_metrics).

    Args:
        rows: Every (module, metric, value) of a check.
        modules: (support, role) of every watched module, by name.
        rules: The alarm's rules.
        selection: ``"compact"``, ``"all"`` or a set of names.
    """
    if selection == "all":
        return list(rows)
    if selection == "compact":
        wanted = {
            name: compact_metrics(support, role, rules)
            for name, (support, role) in modules.items()
        }
        return [row for row in rows if row[1] in wanted.get(row[0], ())]
    return [
        row
        for row in rows
        if (CRITERION in selection if row[0] == CRITERION else row[1] in selection)
    ]
