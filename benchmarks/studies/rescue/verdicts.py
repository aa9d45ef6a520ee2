"""The rescue study's verdicts, in the wording of its pre-registration.

Each comparison of ``benchmarks/studies/rescue_preregistration.md`` is a t-interval
(n - 1 df) read against one threshold at its Holm level
(:mod:`benchmarks.studies.stats`); the functions here turn intervals into the
registered words, and the tests (``tests/benchmarks/studies/test_rescue_stats.py``)
hold them to the registration. The primary control reuses the mechanism study's
:func:`benchmarks.studies.stats.collapse`.
"""

from __future__ import annotations

import math
from typing import Sequence

from benchmarks.studies.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Interval,
    mean_se,
    noninferiority,
    p_value,
)

BELOW_UNTRAINED = "ends below its untrained network"
ABOVE_UNTRAINED = "ends above its untrained network"
LEARNS = "learns"
DOES_NOT_LEARN = "does not learn"
FAILS_TO_LEARN = "fails to learn"
NO_GAIN_HEAD_SPREAD = "does not learn (head not collapsed in every seed)"
RESCUES = "rescues"
DOES_NOT_RESCUE = "does not rescue"
MISSING = "missing (fewer than 2 seeds)"
INTERIM = "no verdict (interim: not every run has finished)"


def threshold_p(values: Sequence[float], threshold: float) -> float:
    """Two-sided p-value of "the mean equals ``threshold``" (n - 1 df).

    The p-value every comparison of the rescue study enters its Holm family with,
    whatever side of the threshold its mean lies on: a verdict read on either side
    is a rejection of this one hypothesis.
    """
    mean, se = mean_se(values)
    return p_value(mean, se, len(values), threshold)


def learns(gain: Interval, threshold: float) -> str:
    """Rescue study, a treatment's gain G against the line of learning.

    Learns if the interval's lower end is above ``threshold`` (0 for the primary
    removals: above the untrained network; 0.02 for the secondary ones); does not
    learn if its upper end is below it; inconclusive otherwise.
    """
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if gain.low > threshold:
        return LEARNS
    if gain.high < threshold:
        return DOES_NOT_LEARN
    return INCONCLUSIVE


def below_untrained(gain: Interval) -> str:
    """Rescue study, the control of a removal whose failure is ``below`` (DINO at
    EMA 0): G at w = 0 against 0.

    Ends below its untrained network if G's interval lies below 0; ends above it if
    the interval lies above 0; inconclusive otherwise.
    """
    if gain.high < 0:
        return BELOW_UNTRAINED
    if gain.low > 0:
        return ABOVE_UNTRAINED
    return INCONCLUSIVE


def fails_to_learn(gain: Interval, margin: float, heads_collapsed: int) -> str:
    """Rescue study, the secondary removals' control at w = 0.

    Fails to learn if G's interval lies below ``margin`` (0.02) and the head
    collapsed in every seed of the comparison (``heads_collapsed == gain.n``);
    does not learn (head not collapsed in every seed) if G's interval lies below
    the margin but some head did not collapse; learns if the interval lies above
    the margin; inconclusive otherwise.
    """
    if not math.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin!r}")
    if not 0 <= heads_collapsed <= gain.n:
        raise ValueError(
            f"heads_collapsed must be in [0, {gain.n}], got {heads_collapsed!r}"
        )
    if gain.high < margin:
        return FAILS_TO_LEARN if heads_collapsed == gain.n else NO_GAIN_HEAD_SPREAD
    if gain.low > margin:
        return LEARNS
    return INCONCLUSIVE


def rescue(control: str, failure: str, treatment: str) -> str:
    """Rescue study: does a treatment rescue a removal?

    ``control`` is the verdict of the removal's registered control and ``failure``
    the verdict that means it failed (:data:`BELOW_UNTRAINED` or
    :data:`FAILS_TO_LEARN`); ``treatment`` is the verdict of :func:`learns` on the
    treated runs, against the same line (0 or +0.02). Rescues if the control failed and the
    treatment learns; does not rescue if the control failed and the treatment does
    not learn; otherwise inconclusive, saying why when the control did not fail.
    """
    if control != failure:
        return f"inconclusive (no failure to rescue: the control {control})"
    if treatment == LEARNS:
        return RESCUES
    if treatment == DOES_NOT_LEARN:
        return DOES_NOT_RESCUE
    return INCONCLUSIVE


def accuracy_cost(diff: Interval, margin: float) -> str:
    """Rescue study: a treatment's cost in kNN accuracy on the intact method.

    ``diff`` is kNN(intact + treatment) - kNN(intact), paired by seed. Costs less
    than ``margin`` (in points: 0.02 is "2 points") if the interval's lower end is
    above -margin, more if its upper end is below -margin, inconclusive otherwise
    (the non-inferiority reading of :func:`noninferiority`).
    """
    points = f"{100 * margin:g} points"
    verdict = noninferiority(diff, margin)
    if verdict == SUPPORTED:
        return f"costs less than {points}"
    if verdict == NOT_SUPPORTED:
        return f"costs more than {points}"
    return INCONCLUSIVE


def _binomial_tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X >= k) (upper) or P(X <= k) for X ~ Binomial(n, p)."""
    terms = range(k, n + 1) if upper else range(0, k + 1)
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in terms)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval of a proportion k / n.

    Bisection on the binomial tails (no scipy).

    Examples:
        >>> low, high = clopper_pearson(0, 10)
        >>> round(low, 4), round(high, 4)
        (0.0, 0.3085)
    """
    if not (0 <= k <= n and n >= 1):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    tail = (1.0 - confidence) / 2.0

    def solve(upper: bool) -> float:
        low, high = 0.0, 1.0
        for _ in range(100):
            mid = 0.5 * (low + high)
            value = _binomial_tail(k, n, mid, upper)
            # P(X >= k) grows with p; P(X <= k) falls with p.
            if (value < tail) == upper:
                low = mid
            else:
                high = mid
        return 0.5 * (low + high)

    lower = 0.0 if k == 0 else solve(True)
    upper = 1.0 if k == n else solve(False)
    return lower, upper
