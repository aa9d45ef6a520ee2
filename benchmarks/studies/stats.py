"""Statistics of the pre-registered studies: paired differences, t-intervals, Holm.

Plain Python, no scipy: the Student-t distribution is evaluated with the finite
series of Abramowitz & Stegun 26.7.3-4, exact for the integer degrees of freedom
(n - 1 seeds) that the studies use, and inverted by bisection.

Conventions (the pre-registrations cite them):

- A comparison is a set of per-seed values, usually a difference paired by seed
  (:func:`paired`). Its interval is mean ± t_{1 - α/2, n - 1} · SE with
  SE = sd / √n (:func:`t_interval`).
- **Holm over a family, as intervals.** Each comparison tests "the mean equals its
  threshold θ" two-sidedly (:func:`p_value`); a three-way verdict (above θ /
  below θ / inconclusive) is decided exactly when that test rejects. Holm's step-down
  procedure tests the r-th smallest p-value at α / (m - r + 1) and stops at the first
  that fails; :func:`holm_confidences` returns, per comparison, the confidence level
  of that step (for the failed one and every one after it, the level of the step that
  failed). A verdict read from the interval at that level is then the verdict of
  Holm's procedure: the interval excludes θ if and only if Holm rejects
  (``tests/benchmarks/studies/test_stats.py`` checks this against :func:`holm_adjusted`).
  A verdict that needs two intervals (robustness: the original is hurt *and* D is
  above 0) enters the family with the larger of its p-values (an intersection-union
  test), and both intervals are read at its level.

- [0] Abramowitz & Stegun, Handbook of Mathematical Functions, 26.7.3-4 (1964)
- [1] Holm, A simple sequentially rejective multiple test procedure, Scand. J.
  Stat. 6 (1979)
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

# ---------------------------------------------------------------------------------------
# The Student-t distribution
# ---------------------------------------------------------------------------------------
MAX_DF = 10_000
"""Largest degrees of freedom :func:`t_cdf` accepts (the series has df / 2 terms)."""


def _check_df(df: int) -> None:
    if isinstance(df, bool) or not isinstance(df, int) or not 1 <= df <= MAX_DF:
        raise ValueError(f"df must be an integer in [1, {MAX_DF}], got {df!r}")


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` (integer) degrees of freedom.

    Abramowitz & Stegun 26.7.3 (odd df) and 26.7.4 (even df): A(t | df) =
    P(|T| <= |t|) is a finite sum of powers of cos θ, θ = arctan(|t| / √df).

    Examples:
        >>> round(t_cdf(0.0, 3), 12)
        0.5
        >>> round(t_cdf(1.0, 1), 12)  # Cauchy: 1/2 + arctan(1) / π
        0.75
    """
    _check_df(df)
    if math.isnan(t):
        raise ValueError("t must not be NaN")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, math.cos(theta)
        if (
            df > 1
        ):  # cos θ + (2/3) cos³ θ + ... + (2·4···(df-3))/(1·3···(df-2)) cos^(df-2) θ
            total = term
            for k in range(3, df - 1, 2):
                term *= c2 * (k - 1) / k
                total += term
        a = 2.0 / math.pi * (theta + math.sin(theta) * total)
    else:  # 1 + (1/2) cos² θ + ... + (1·3···(df-3))/(2·4···(df-2)) cos^(df-2) θ
        total, term = 1.0, 1.0
        for k in range(2, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        a = math.sin(theta) * total
    a = min(max(a, 0.0), 1.0)
    return 0.5 + 0.5 * a if t >= 0 else 0.5 - 0.5 * a


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` (integer) degrees of freedom.

    Bisection on :func:`t_cdf` to machine precision.

    Examples:
        >>> round(t_quantile(0.975, 2), 4)
        4.3027
        >>> round(t_quantile(0.975, 4), 4)
        2.7764
    """
    _check_df(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
        if high > 1e300:
            raise ValueError(f"p = {p!r} is too close to 1 for df = {df}")
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


# ---------------------------------------------------------------------------------------
# Comparisons and intervals
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A mean with its standard error and a two-sided interval.

    Attributes:
        mean: Mean of the per-seed values.
        se: Standard error, sd / √n (sample sd, n - 1 in the denominator).
        n: Number of values (seeds).
        low: Lower end of the interval.
        high: Upper end of the interval.
        confidence: Its two-sided confidence level (None for a ±k·SE interval).
    """

    mean: float
    se: float
    n: int
    low: float
    high: float
    confidence: Optional[float] = None

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Dict[int, float]:
    """a[s] - b[s] for every seed s: the per-seed difference of two settings.

    Raises:
        ValueError: If the two settings do not have the same seeds (a paired
            comparison never drops an unpaired seed silently).
    """
    if set(a) != set(b):
        raise ValueError(
            f"paired comparison needs the same seeds on both sides, got "
            f"{sorted(a)} and {sorted(b)}"
        )
    return {s: a[s] - b[s] for s in sorted(a)}


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error sd / √n) of at least two finite values."""
    values = list(values)
    if len(values) < 2:
        raise ValueError(
            f"need at least 2 values for a standard error, got {len(values)}"
        )
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"values must be finite, got {values}")
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """mean ± t_{(1 + confidence)/2, n - 1} · SE: the two-sided t-interval.

    Examples:
        >>> t_interval([1.0, 2.0, 3.0]).high  # 2 + 4.3027 * 1 / √3
        4.484...
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    mean, se = mean_se(values)
    half = t_quantile(0.5 + confidence / 2.0, len(values) - 1) * se
    return Interval(mean, se, len(values), mean - half, mean + half, confidence)


def interval_from_se(
    mean: float, se: float, n: int, confidence: float = 0.95
) -> Interval:
    """The t-interval of a comparison known only by its mean, SE and n."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n < 2 or not (math.isfinite(se) and se >= 0):
        raise ValueError(f"need n >= 2 and a finite se >= 0, got n={n}, se={se}")
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    return Interval(mean, se, n, mean - half, mean + half, confidence)


def p_value(mean: float, se: float, n: int, threshold: float = 0.0) -> float:
    """Two-sided p-value of the t-test of "the mean equals ``threshold``"."""
    if n < 2 or not (math.isfinite(se) and se >= 0):
        raise ValueError(f"need n >= 2 and a finite se >= 0, got n={n}, se={se}")
    if se == 0.0:
        return 1.0 if mean == threshold else 0.0
    t = abs(mean - threshold) / se
    return min(1.0, 2.0 * (1.0 - t_cdf(t, n - 1)))


# ---------------------------------------------------------------------------------------
# Holm's step-down procedure
# ---------------------------------------------------------------------------------------
def _check_family(p_values: Sequence[float], alpha: float) -> None:
    if not p_values:
        raise ValueError("the family must hold at least one p-value")
    if any(not 0.0 <= p <= 1.0 for p in p_values):
        raise ValueError(f"p-values must be in [0, 1], got {list(p_values)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def holm_adjusted(p_values: Sequence[float]) -> List[float]:
    """Holm-adjusted p-values, in the input order.

    The r-th smallest p-value becomes max over j <= r of min(1, (m - j + 1) p_(j)):
    a comparison is rejected at family-wise level α iff its adjusted p-value <= α.
    """
    _check_family(p_values, 0.5)
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_confidences(p_values: Sequence[float], alpha: float = 0.05) -> List[float]:
    """Per comparison, the confidence level at which Holm's procedure reads it.

    The r-th smallest p-value (r = 1..m) is tested at α / (m - r + 1) while every
    smaller one was rejected; from the first that is not rejected on, every
    comparison gets that step's level. Reading each comparison's interval at its
    level gives Holm's decisions (see the module docstring). Ties are ordered by
    position, which does not change any decision.
    """
    _check_family(p_values, alpha)
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = [0.0] * m
    stopped: Optional[float] = None
    for rank, i in enumerate(order):
        level_alpha = alpha / (m - rank)
        if stopped is None and p_values[i] > level_alpha:
            stopped = level_alpha
        levels[i] = 1.0 - (stopped if stopped is not None else level_alpha)
    return levels


# ---------------------------------------------------------------------------------------
# Verdicts (wording of the pre-registrations; the tests hold them to it)
# ---------------------------------------------------------------------------------------
SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
ER_HURT_MORE = "not supported (ER is hurt more)"
NOT_HURT = "inconclusive (the original is not hurt)"


def noninferiority(diff: Interval, margin: float) -> str:
    """Stability H1; mechanism H-cost: is ER - original no worse than -margin?

    Supported if the interval's lower end is above -margin; not supported if its
    upper end is below -margin; inconclusive otherwise.
    """
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be finite and >= 0, got {margin!r}")
    if diff.low > -margin:
        return SUPPORTED
    if diff.high < -margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def robustness(d: Interval, drop_original: Interval) -> str:
    """Stability H2/H3; mechanism H-batch: does a degradation hurt ER less?

    D = drop(original) - drop(ER), positive when ER is hurt less. As pre-registered:
    inconclusive when the original is not hurt (its drop's interval reaches 0 or
    below), whatever D's interval; otherwise supported if D's interval lies above 0,
    not supported (ER is hurt more) if it lies below 0, inconclusive otherwise. The
    "not hurt" case comes first: the claim is about robustness to a degradation,
    and without one there is nothing to be robust to.
    """
    if drop_original.low <= 0:
        return NOT_HURT
    if d.low > 0:
        return SUPPORTED
    if d.high < 0:
        return ER_HURT_MORE
    return INCONCLUSIVE


COLLAPSES = "collapses"
DOES_NOT_COLLAPSE = "does not collapse"
NO_COLLAPSE_TO_PREVENT = "inconclusive (no collapse without the entropy term)"


def collapse(gain: Interval, margin: float) -> str:
    """Mechanism H-control: does an arm end below its untrained network?

    ``gain`` is final kNN top-1 minus the kNN top-1 of the same network before
    training, paired by seed. Collapses if the interval's upper end is below
    -margin; does not collapse if its lower end is above -margin; inconclusive
    otherwise.
    """
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be finite and >= 0, got {margin!r}")
    if gain.high < -margin:
        return COLLAPSES
    if gain.low > -margin:
        return DOES_NOT_COLLAPSE
    return INCONCLUSIVE


def prevents_collapse(gain_er: Interval, collapse_margin: float, control: str) -> str:
    """Mechanism H-entropy: with the device removed, does the entropy term rescue?

    ``control`` is the verdict of :func:`collapse` on the same arm at entropy
    weight 0 (the positive control). If the control did not collapse there is no
    collapse to prevent: inconclusive (no collapse without the entropy term),
    whatever the ER arm did. Otherwise: supported if the ER arm ends above its
    untrained network (its gain's lower end above 0: it learned); not supported if
    it collapses too (upper end below -collapse_margin); inconclusive otherwise.
    """
    if not (math.isfinite(collapse_margin) and collapse_margin >= 0):
        raise ValueError(
            f"collapse_margin must be finite and >= 0, got {collapse_margin!r}"
        )
    if control not in (COLLAPSES, DOES_NOT_COLLAPSE, INCONCLUSIVE):
        raise ValueError(f"control must be a verdict of collapse(), got {control!r}")
    if control != COLLAPSES:
        return NO_COLLAPSE_TO_PREVENT
    if gain_er.low > 0:
        return SUPPORTED
    if gain_er.high < -collapse_margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE
