"""benchmarks/studies/alarm_stats.py: the alarm validation's numbers on crafted cases."""

from __future__ import annotations

import math
import random
from typing import List

import pytest

from benchmarks.studies.alarm_stats import (
    MARGIN,
    auroc,
    healthy_threshold,
    held_out_split,
    lead_time,
    lowest,
    snapshot_labels,
)


def _pairs(positives: List[float], negatives: List[float]) -> float:
    """AUROC by a plain double loop over all pairs (the independent computation)."""
    total = 0.0
    for p in positives:
        for n in negatives:
            total += 1.0 if p < n else 0.5 if p == n else 0.0
    return total / (len(positives) * len(negatives))


@pytest.mark.parametrize(
    "positives, negatives, expected",
    [
        ([0.1, 0.2], [0.3, 0.4], 1.0),  # every collapsed value below every healthy
        ([0.3, 0.4], [0.1, 0.2], 0.0),  # the wrong way round
        ([0.5, 0.5], [0.5], 0.5),  # all ties
        ([1.0, 3.0], [2.0, 4.0], 0.75),  # 3 of 4 pairs
        ([2.0], [2.0, 3.0], 0.75),  # one tie (1/2) and one win
    ],
)
def test_auroc_closed_cases(
    positives: List[float], negatives: List[float], expected: float
) -> None:
    assert auroc(positives, negatives) == expected


def test_auroc_equals_the_pair_count_and_ignores_monotone_maps() -> None:
    rng = random.Random(0)
    positives = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in range(17)]
    negatives = [rng.choice([0.2, 0.3, 0.5, 0.7]) for _ in range(23)]
    value = auroc(positives, negatives)
    assert value == pytest.approx(_pairs(positives, negatives), abs=1e-12)
    assert 0.5 < value < 1.0
    # A rank statistic: a strictly increasing map changes nothing.
    assert (
        auroc(
            [math.exp(3 * p) for p in positives], [math.exp(3 * n) for n in negatives]
        )
        == value
    )
    # Swapping the classes gives the complement.
    assert auroc(negatives, positives) == pytest.approx(1.0 - value, abs=1e-12)


def test_auroc_without_both_classes_is_nan() -> None:
    assert math.isnan(auroc([], [0.1]))
    assert math.isnan(auroc([0.1], []))


def test_snapshot_labels() -> None:
    steps = [0, 100, 200, 300]
    assert snapshot_labels(steps, "collapsed", 200) == [False, None, True, True]
    assert snapshot_labels(steps, "learned", None) == [False] * 4
    assert snapshot_labels(steps, "no gain", None) == [False, None, None, None]
    # A collapsed run whose kNN never fell below (only its final one did not count).
    assert snapshot_labels(steps, "collapsed", None) == [False, None, None, None]


def test_lead_time_is_positive_when_the_alarm_comes_first() -> None:
    assert lead_time(300, 150) == 150
    assert lead_time(300, 300) == 0
    assert lead_time(200, 350) == -150
    assert lead_time(None, 150) is None
    assert lead_time(300, None) is None


def test_held_out_split_keeps_the_declared_order_and_refuses_overlap() -> None:
    present = ["swav", "dino", "byol", "simclr"]
    fit, held = held_out_split(present, ["simsiam", "simclr", "byol"], ["swav", "dino"])
    assert fit == ["simclr", "byol"] and held == ["swav", "dino"]
    assert set(fit).isdisjoint(held)
    with pytest.raises(ValueError, match="both fit and held out"):
        held_out_split(present, ["byol", "dino"], ["dino"])


def test_healthy_threshold_is_the_margin_below_the_lowest_healthy_value() -> None:
    assert healthy_threshold([0.5, 0.3, 0.9], 0.5) == 0.15
    assert healthy_threshold([0.5, math.nan, 0.4]) == pytest.approx(MARGIN * 0.4)
    with pytest.raises(ValueError, match="margin"):
        healthy_threshold([0.5], 0.0)
    with pytest.raises(ValueError, match="healthy"):
        healthy_threshold([math.nan])


def test_lowest_skips_nan_wherever_it_stands() -> None:
    nan = math.nan
    for values in ([nan, 0.4, 0.2], [0.4, nan, 0.2], [0.2, 0.4, nan]):
        assert lowest(values) == 0.2
    assert math.isnan(lowest([nan, nan])) and math.isnan(lowest([]))
