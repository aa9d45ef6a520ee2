"""The alarm validation's statistics on plain numbers (numpy, no torch).

``benchmarks/studies/alarm_validation.py`` measures the corpus and replays the
monitor's alarm; the numbers it reports are computed here, so that the tests can
hold them to closed cases (``tests/benchmarks/studies/test_alarm_stats.py``).

Conventions: a lower metric value means more collapsed; a snapshot is *healthy* if
its run learned (every snapshot) or it is a step-0 snapshot (the untrained
network), *collapsed* if its run is labeled collapsed and the snapshot is at or
after the run's ``first_below_step``; other snapshots are not used.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

MARGIN = 0.8
"""A fitted threshold is this fraction of the lowest healthy value of the fit
methods: 20 % below anything healthy seen, since the corpora have (almost) no
collapsed runs of the fit methods to place it against."""


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a collapsed value is below a healthy one), ties counted one half.

    The Mann-Whitney statistic over all pairs, with collapsed (positive) values
    expected low: 1 separates perfectly, 0.5 is chance, 0 separates the wrong way.
    NaN without both classes.

    Examples:
        >>> auroc([0.1, 0.2], [0.3, 0.4]), auroc([0.3], [0.3]), auroc([], [1.0])
        (1.0, 0.5, nan)
    """
    if not positives or not negatives:
        return math.nan
    pos = np.asarray(positives, dtype=np.float64)[:, None]
    neg = np.asarray(negatives, dtype=np.float64)[None, :]
    below = (pos < neg).sum() + 0.5 * (pos == neg).sum()
    return float(below / (pos.size * neg.size))


def lowest(values: Sequence[float]) -> float:
    """The lowest value that is not NaN; NaN if there is none.

    A head whose outputs are not finite reads NaN; Python's ``min`` would return it
    or skip it depending on where it stands in the list.

    Examples:
        >>> lowest([0.3, float("nan"), 0.2]), lowest([float("nan"), 0.2])
        (0.2, 0.2)
        >>> lowest([float("nan")])
        nan
    """
    return min((v for v in values if not math.isnan(v)), default=math.nan)


def snapshot_labels(
    steps: Sequence[int], label: str, first_below: Optional[int]
) -> List[Optional[bool]]:
    """Per snapshot: True (collapsed), False (healthy) or None (not used).

    Examples:
        >>> snapshot_labels([0, 100, 200], "collapsed", 200)
        [False, None, True]
        >>> snapshot_labels([0, 100], "learned", None), snapshot_labels([0, 100], "no gain", None)
        ([False, False], [False, None])
    """
    out: List[Optional[bool]] = []
    for step in steps:
        if step == 0 or label == "learned":
            out.append(False)
        elif label == "collapsed" and first_below is not None and step >= first_below:
            out.append(True)
        else:
            out.append(None)
    return out


def lead_time(first_below: Optional[int], alarm: Optional[int]) -> Optional[int]:
    """Steps from the alarm to the kNN falling below the untrained network.

    Positive: the alarm came first (a warning ahead of the damage); negative: it
    came late; None: no alarm, or the kNN never fell below.

    Examples:
        >>> lead_time(300, 150), lead_time(300, 400), lead_time(300, None)
        (150, -100, None)
    """
    if first_below is None or alarm is None:
        return None
    return first_below - alarm


def held_out_split(
    present: Sequence[str], fit: Sequence[str], held_out: Sequence[str]
) -> Tuple[List[str], List[str]]:
    """The declared (fit, held-out) methods that are present, in declared order.

    Raises:
        ValueError: If a method is declared on both sides.

    Examples:
        >>> held_out_split(["dino", "byol"], ["byol", "simsiam"], ["dino", "swav"])
        (['byol'], ['dino'])
    """
    both = set(fit) & set(held_out)
    if both:
        raise ValueError(f"methods declared both fit and held out: {sorted(both)}")
    return [m for m in fit if m in present], [m for m in held_out if m in present]


def healthy_threshold(healthy: Sequence[float], margin: float = MARGIN) -> float:
    """``margin`` times the lowest healthy value (NaN values ignored).

    Raises:
        ValueError: If there is no healthy value or the margin is not in (0, 1].

    Examples:
        >>> healthy_threshold([0.5, 0.25, float("nan")], 0.8)
        0.2
    """
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    values = [v for v in healthy if not math.isnan(v)]
    if not values:
        raise ValueError("healthy must hold at least one value that is not NaN")
    return margin * min(values)


__all__ = [
    "MARGIN",
    "auroc",
    "healthy_threshold",
    "held_out_split",
    "lead_time",
    "lowest",
    "snapshot_labels",
]
