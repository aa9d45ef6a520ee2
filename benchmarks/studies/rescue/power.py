"""The power of the rescue study's tests, from the effects seen before it.

``python benchmarks/studies/rescue.py --power`` prints the table pasted into the
pre-registration. Each registered test is a two-sided one-sample t-test of "the
mean equals the threshold" with n - 1 df, read at its Holm level; its power is the
probability that the interval lands on the true side of the threshold:
P(T' > t_{1 - a/2, n - 1}) with T' noncentral t, df = n - 1, noncentrality
sqrt(n) |μ - θ| / σ. Holm's level for a comparison lies between α/m (its first
step, Bonferroni) and α (its last); the table gives the power at both, so the
first is a lower bound. The effects μ and SDs σ are the mechanism study's
(``results/mechanism_2026-12-02/records``, seeds 0-4, run on earlier code of the
losses), the alarm corpus's for BYOL without predictor at EMA 0 (issue 19's
closing notes; another evaluation: 2,000 test images, constant learning rate) and
the pilot's (seeds 900-901), each named in :data:`INPUTS`; each is
also given at 2 x its σ (an SD from 2-6 seeds is itself uncertain: the upper 80%
confidence bound of σ is 1.6 σ from 5 seeds, 4 σ from 2).

The noncentral t is integrated numerically (Simpson's rule over the chi
distribution of the denominator), plain Python; a test checks it against scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from benchmarks.common.tables import markdown_table
from benchmarks.studies.stats import t_quantile

ALPHA = 0.05
GRID = 4000
"""Simpson intervals over the chi distribution's support."""


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def noncentral_t_sf(c: float, df: int, noncentrality: float) -> float:
    """P(T' > c) for a noncentral t with ``df`` degrees of freedom.

    T' = (Z + λ) / S with S = sqrt(V / df), V chi-square(df): P(T' > c) =
    E_S[Φ(λ - c S)], integrated over the density of S.

    Examples:
        >>> round(noncentral_t_sf(0.0, 5, 0.0), 6)
        0.5
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    nu = float(df)
    log_norm = math.log(2.0) + (nu / 2) * math.log(nu / 2) - math.lgamma(nu / 2)
    top = 1.0 + 40.0 / math.sqrt(nu)
    h = top / GRID
    total = 0.0
    for i in range(GRID + 1):
        s = i * h
        if s == 0.0:  # the density at 0: 0 for df >= 2, sqrt(2 / π) for df = 1
            density = math.exp(log_norm) if df == 1 else 0.0
        else:
            density = math.exp(log_norm + (nu - 1) * math.log(s) - nu * s * s / 2)
        weight = 1 if i in (0, GRID) else (4 if i % 2 else 2)
        total += weight * density * _phi(noncentrality - c * s)
    return total * h / 3


def power(effect: float, sd: float, n: int, level_alpha: float) -> float:
    """Power of the two-sided t-test at ``level_alpha`` to land on the true side.

    Args:
        effect: μ - θ, the true distance of the mean from the threshold.
        sd: σ, the per-seed standard deviation.
        n: Seeds.
        level_alpha: The test's α (α/m for the first Holm step).
    """
    if n < 2 or sd <= 0:
        raise ValueError(f"need n >= 2 and sd > 0, got n={n}, sd={sd}")
    c = t_quantile(1.0 - level_alpha / 2.0, n - 1)
    return noncentral_t_sf(c, n - 1, math.sqrt(n) * abs(effect) / sd)


def detectable(n: int, level_alpha: float, target: float = 0.8) -> float:
    """The |μ - θ| / σ with power ``target`` (bisection)."""
    low, high = 0.0, 50.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if power(mid, 1.0, n, level_alpha) < target:
            low = mid
        else:
            high = mid
    return high


@dataclass(frozen=True)
class Input:
    """One registered test and the effect seen before the study."""

    test: str
    family: int
    n: int
    mean: float
    threshold: float
    sd: float
    source: str


MECH = "mechanism, seeds 0-4"
PILOT = "pilot, seeds 900-901"
INPUTS: Tuple[Input, ...] = (
    Input("dino-ema0 collapse: G0 vs -c", 14, 10, -0.0791, -0.05, 0.0173, f"{MECH}"),
    Input("dino-ema0 collapse: G0 vs -c", 14, 10, -0.0672, -0.05, 0.0330, f"{MECH} + pilot seed 900"),
    Input("dino-ema0 control: G0 vs 0", 14, 10, -0.0791, 0.0, 0.0173, f"{MECH}"),
    Input("dino-ema0 control: G0 vs 0", 14, 10, -0.0672, 0.0, 0.0330, f"{MECH} + pilot seed 900"),
    Input("dino-ema0 + entropy: G vs 0", 14, 10, 0.0328, 0.0, 0.0231, f"{MECH} (w = 1)"),
    Input("byol-nopred-ema0 collapse: G0 vs -c", 14, 10, -0.0212, -0.05, 0.0030, f"{PILOT} (does not collapse)"),
    Input("byol-nopred-ema0 collapse: G0 vs -c", 14, 10, -0.0683, -0.05, 0.0142, "alarm corpus, seeds 0-2 (other evaluation)"),
    Input("byol-nopred-ema0 control: G0 vs +0.02", 14, 10, -0.0212, 0.02, 0.0030, f"{PILOT} (heads 2/2 collapsed)"),
    Input("byol-nopred-ema0 + entropy: G vs +0.02", 14, 10, 0.0642, 0.02, 0.0123, "proxy: mechanism byol-nopred w = 1 (EMA 0.99)"),
    Input("cost, byol + entropy: d vs -0.02", 10, 4, 0.0175, -0.02, 0.0039, "mechanism H-cost byol"),
    Input("cost, dino + entropy: d vs -0.02", 10, 4, 0.0006, -0.02, 0.0018, "mechanism H-cost dino"),
    Input("[follow-up] byol-nopred control: G0 vs +0.02", 6, 4, -0.0016, 0.02, 0.0103, f"{MECH} (w = 0)"),
    Input("[follow-up] byol-nopred + entropy: G vs +0.02", 6, 4, 0.0642, 0.02, 0.0123, f"{MECH} (w = 1)"),
    Input("[follow-up] swav-nosinkhorn control: G0 vs +0.02", 6, 4, -0.0207, 0.02, 0.0196, f"{MECH} (w = 0)"),
    Input("[follow-up] swav-nosinkhorn + entropy: G vs +0.02", 6, 4, 0.0282, 0.02, 0.0156, f"{MECH} (w = 1)"),
    Input("[follow-up] dino-nocenter control: G0 vs +0.02", 6, 4, 0.0066, 0.02, 0.0148, f"{MECH} (w = 0)"),
    Input("[follow-up] dino-nocenter + entropy: G vs +0.02", 6, 4, 0.0444, 0.02, 0.0120, f"{MECH} (w = 1)"),
    Input("[follow-up] cost, swav + entropy: d vs -0.02", 5, 4, 0.0019, -0.02, 0.0038, "mechanism H-cost swav"),
)  # fmt: skip
"""The tests with an effect seen before; the comparator terms have none."""


def table(inputs: Sequence[Input] = INPUTS) -> List[List[str]]:
    rows = []
    for x in inputs:
        effect = x.mean - x.threshold
        cells = [x.test, str(x.n), str(x.family), f"{x.mean:+.4f}", f"{x.sd:.4f}"]
        for sd in (x.sd, 2 * x.sd):
            first = power(effect, sd, x.n, ALPHA / x.family)
            last = power(effect, sd, x.n, ALPHA)
            cells.append(f"{first:.2f} – {last:.2f}")
        rows.append(cells + [x.source])
    return rows


def detectable_rows() -> List[List[str]]:
    """The smallest |μ - θ| / σ with 80% power, per family and n."""
    return [
        [f"family of {m}, n = {n}", f"{detectable(n, ALPHA / m):.2f}", f"{detectable(n, ALPHA):.2f}"]
        for m, n in ((14, 10), (10, 4), (6, 4), (5, 4))
    ]  # fmt: skip


def report() -> str:
    """The power tables as Markdown."""
    first = markdown_table(
        ["Test", "n", "Family", "Mean seen", "SD seen", "Power at σ (α/m – α)",
         "Power at 2 σ (α/m – α)", "Source"],
        table(), "lrrrrrrl",
    )  # fmt: skip
    second = markdown_table(
        ["Comparison", "abs(μ - θ) / σ for 80% at α/m", "at α"],
        detectable_rows(),
        "lrr",
    )
    return first + "\n" + second


def main() -> None:
    print(report())


if __name__ == "__main__":
    main()
