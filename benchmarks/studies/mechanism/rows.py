"""The rows of the mechanism study's hypotheses: one comparison each, the Holm family
it enters, and their verdict lines and tables.

:mod:`benchmarks.studies.mechanism.analysis` builds the rows and re-exports these
names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

from benchmarks.studies import stats
from benchmarks.studies.stats import Interval

PerSeed = Mapping[int, float]
MISSING = "missing (fewer than 2 seeds)"
ER_BETTER = "ER better"
UNIFORMITY_BETTER = "uniformity better"
NO_DIFFERENCE = "no difference shown"
FAMILY_SIZES: Dict[str, int] = {
    "H-control/H-entropy": 9,
    "H-cost": 4,
    "H-replace": 3,
    "H-unif": 1,
    "H-batch": 9,
}
"""The registered Holm families (26 tested comparisons)."""


@dataclass
class Row:
    """One comparison: its verdict(s), intervals at its Holm level, and n.

    Attributes:
        hypothesis: ``H-control``/``H-entropy`` (one row, two verdicts), ``H-cost``,
            ``H-replace``, ``H-unif`` or ``H-batch``.
        case: What is compared.
        verdicts: Verdict per hypothesis (the headline row has two).
        intervals: The named intervals the verdicts are read from (e.g. ``G0``).
        n: Seeds paired.
        p: The p-value the comparison entered its family with.
        confidence: Its Holm confidence level.
        family: The family's size.
        beside: Numbers reported beside it (not tested).
    """

    hypothesis: str
    case: str
    verdicts: Dict[str, str]
    intervals: Dict[str, Interval]
    n: int
    p: float
    confidence: float
    family: int
    beside: Dict[str, str] = field(default_factory=dict)


def common(*sides: PerSeed) -> List[int]:
    """The seeds every side has (a study stopped early pairs what it has)."""
    seeds = set(sides[0])
    for side in sides[1:]:
        seeds &= set(side)
    return sorted(seeds)


def _p(values: Sequence[float], threshold: float) -> float:
    mean, se = stats.mean_se(values)
    return stats.p_value(mean, se, len(values), threshold)


def _family(p_values: List[float], alpha: float, size: int) -> List[float]:
    """Holm levels of a family padded to its registered size with p = 1."""
    padded = p_values + [1.0] * (size - len(p_values))
    return stats.holm_confidences(padded, alpha)[: len(p_values)]


def verdict_lines(rows: Sequence[Row]) -> List[str]:
    """One line per verdict: hypothesis | case | verdict | evidence."""
    lines = []
    for row in rows:
        evidence = "; ".join(f"{k} {v}" for k, v in row.intervals.items())
        where = f"n = {row.n}, Holm level {row.confidence:.4f} (family of {row.family})"
        for hypothesis, verdict in row.verdicts.items():
            lines.append(
                f"{hypothesis} | {row.case} | {verdict} | {evidence or '-'} | {where}"
            )
    return lines


def summary_line(rows: Sequence[Row]) -> str:
    """The verdict line: per hypothesis, how many comparisons got which verdict."""
    counts: Dict[str, Dict[str, int]] = {}
    for row in rows:
        for hypothesis, verdict in row.verdicts.items():
            counts.setdefault(hypothesis, {})
            counts[hypothesis][verdict] = counts[hypothesis].get(verdict, 0) + 1
    parts = []
    for hypothesis, by_verdict in counts.items():
        inner = ", ".join(f"{n} {v}" for v, n in by_verdict.items())
        parts.append(f"{hypothesis}: {inner}")
    return "Verdicts: " + "; ".join(parts) + "."


def table_rows(
    rows: Sequence[Row], hypothesis: str
) -> Tuple[List[str], List[List[str]]]:
    """Columns and cells of one hypothesis's table (mean, interval, n, verdict)."""
    selected = [r for r in rows if r.hypothesis == hypothesis]
    names: List[str] = []
    for r in selected:
        names += [k for k in r.intervals if k not in names]
    extra: List[str] = []
    for r in selected:
        extra += [k for k in r.beside if k not in extra]
    verdict_names = list(selected[0].verdicts) if selected else [hypothesis]
    columns = (
        ["Case", "n", "Holm level"]
        + [f"{k}: mean [interval]" for k in names]
        + verdict_names
        + extra
    )
    cells = []
    for r in selected:
        cells.append(
            [r.case, str(r.n), f"{r.confidence:.4f}"]
            + [str(r.intervals[k]) if k in r.intervals else "-" for k in names]
            + [r.verdicts[v] for v in verdict_names]
            + [r.beside.get(k, "-") for k in extra]
        )
    return columns, cells


__all__ = [
    "ER_BETTER",
    "FAMILY_SIZES",
    "MISSING",
    "NO_DIFFERENCE",
    "UNIFORMITY_BETTER",
    "PerSeed",
    "Row",
    "common",
    "summary_line",
    "table_rows",
    "verdict_lines",
]
