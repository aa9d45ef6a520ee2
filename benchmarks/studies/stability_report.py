"""The stability study's statistics, verdicts, tables and plots.

The criteria are those fixed in ``benchmarks/studies/stability_preregistration.md``
(and ``_v2.md``) before any run: :func:`verdicts` applies them to the run records,
:func:`write_report` writes one table per hypothesis, the plots and the verdicts.

Corrected in issue 22: the verdicts are :mod:`benchmarks.studies.stats`'s functions
(the rule as written: "inconclusive (the original is not hurt)" takes precedence
over "not supported (ER is hurt more)", which the first code let override it), on
t-intervals with n - 1 degrees of freedom (the pre-registration's "mean ± 2 SE" is
an 82 % interval at n = 3) with Holm's correction over the 15 interval comparisons.

Hypotheses (the paper's claims, Rodriguez-Galvez et al., ICML 2023):

- H1: at the default batch size and EMA, ER is competitive with the original.
- H2: a smaller EMA coefficient hurts ER less than the original (BYOL, DINO).
- H3: a smaller batch hurts ER less than the original (BYOL, DINO, SimCLR).
- H4: BYOL and DINO keep a stable entropy during training.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.common.records import RunResult
from benchmarks.common.tables import markdown_table
from benchmarks.studies import stats

TEACHER_METHODS: Tuple[str, ...] = ("byol", "dino")
BATCH_METHODS: Tuple[str, ...] = ("byol", "dino", "simclr")
DEFAULT_BATCH = 128
DEFAULT_EMA = 0.99
EMAS: Tuple[float, ...] = (0.0, 0.5, 0.9, 0.99)
BATCHES: Tuple[int, ...] = (16, 32, 128)
MARGIN = 0.02
"""H1's non-inferiority margin in kNN top-1 (2 points)."""
STABLE_DEVIATION = 0.2
"""H4: the largest relative deviation of the entropy from its median that is stable."""


# ---------------------------------------------------------------------------------------
# Statistics and verdicts
# ---------------------------------------------------------------------------------------
ALPHA = 0.05
"""Family-wise error rate of the Holm family of a protocol's interval comparisons."""
FAMILY_SIZE = 15
"""H1's 3, H2's 6 and H3's 6 interval comparisons (H4 is a rule, not a test)."""


@dataclass
class Cell:
    """One setting of one method and objective: per-seed values."""

    values: Dict[int, float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        values = list(self.values.values())
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def __str__(self) -> str:
        # One seed has no spread to show: no "± 0.000".
        if len(self.values) == 1:
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class Comparison:
    """A paired (by seed) difference and its two-sided t-interval (n - 1 df).

    ``confidence`` is the interval's level: 0.95 alone, the comparison's Holm
    level in :func:`verdicts` (:mod:`benchmarks.studies.stats`).
    """

    differences: Dict[int, float]
    confidence: float = 1.0 - ALPHA

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences.values())

    @property
    def se(self) -> float:
        values = list(self.differences.values())
        if len(values) < 2:
            return math.inf
        return statistics.stdev(values) / math.sqrt(len(values))

    def interval(self) -> stats.Interval:
        """The t-interval at :attr:`confidence` (needs 2 seeds or more)."""
        return stats.t_interval(list(self.differences.values()), self.confidence)

    @property
    def low(self) -> float:
        return self.interval().low

    @property
    def high(self) -> float:
        return self.interval().high

    def p_value(self, threshold: float = 0.0) -> float:
        """Two-sided p-value of the t-test of "the mean difference is ``threshold``"."""
        return stats.p_value(self.mean, self.se, self.n, threshold)

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _metric(result: RunResult, metric: str) -> float:
    return result.knn_top1 if metric == "best" else result.knn_top1_final


def cell(
    results: Sequence[RunResult],
    method: str,
    batch: int,
    ema: Optional[float],
    metric: str = "final",
) -> Optional[Cell]:
    """The per-seed kNN top-1 (best or final) of one setting, or None if absent."""
    values = {
        r.seed: _metric(r, metric)
        for r in results
        if r.method == method and r.batch_size == batch and r.ema == ema
    }
    return Cell(values) if values else None


def _paired(a: Cell, b: Cell) -> Comparison:
    seeds = sorted(set(a.values) & set(b.values))
    return Comparison({s: a.values[s] - b.values[s] for s in seeds})


def teacher_ema(base: str) -> Optional[float]:
    return DEFAULT_EMA if base in TEACHER_METHODS else None


def setting_of(axis: str, value: Any, base: str) -> Tuple[int, Optional[float]]:
    """(batch, ema) of a point on the EMA axis (batch 128) or the batch axis."""
    if axis == "ema":
        return DEFAULT_BATCH, float(value)
    return int(value), teacher_ema(base)


def h1(
    results: Sequence[RunResult],
    base: str,
    metric: str = "final",
    confidence: float = 1.0 - ALPHA,
) -> Tuple[str, Optional[Comparison]]:
    """H1 for one method: ER - original at the default setting; non-inferiority.

    Supported if the t-interval at ``confidence`` lies above -MARGIN, not
    supported if below, inconclusive otherwise (:func:`stats.noninferiority`).
    """
    ema = teacher_ema(base)
    original = cell(results, base, DEFAULT_BATCH, ema, metric)
    er = cell(results, f"{base}_er", DEFAULT_BATCH, ema, metric)
    if original is None or er is None:
        return "missing", None
    diff = _paired(er, original)
    diff.confidence = confidence
    if diff.n < 2:
        return "inconclusive (fewer than 2 seeds)", diff
    return stats.noninferiority(diff.interval(), MARGIN), diff


def robustness(
    results: Sequence[RunResult],
    base: str,
    default: Tuple[int, Optional[float]],
    other: Tuple[int, Optional[float]],
    metric: str = "final",
    confidence: float = 1.0 - ALPHA,
) -> Tuple[str, Optional[Comparison], Optional[Comparison]]:
    """H2/H3 for one method and one smaller setting.

    drop(objective) = kNN(default) - kNN(other), paired by seed; D =
    drop(original) - drop(ER) (positive: ER is hurt less). As pre-registered:
    inconclusive (the original is not hurt) when the original's drop interval
    reaches 0 or below, whatever D; otherwise supported if D's interval lies above
    0, not supported (ER is hurt more) if below, inconclusive otherwise
    (:func:`stats.robustness`; both intervals at ``confidence``).

    Returns (verdict, D, drop of the original).
    """
    cells = {}
    for method in (base, f"{base}_er"):
        for key, (batch, ema) in (("default", default), ("other", other)):
            cells[(method, key)] = cell(results, method, batch, ema, metric)
    if any(c is None for c in cells.values()):
        return "missing", None, None
    drop_original = _paired(cells[(base, "default")], cells[(base, "other")])  # type: ignore[arg-type]
    drop_er = _paired(cells[(f"{base}_er", "default")], cells[(f"{base}_er", "other")])  # type: ignore[arg-type]
    seeds = sorted(set(drop_original.differences) & set(drop_er.differences))
    d = Comparison(
        {s: drop_original.differences[s] - drop_er.differences[s] for s in seeds},
        confidence,
    )
    drop_original.confidence = confidence
    if d.n < 2:
        return "inconclusive (fewer than 2 seeds)", d, drop_original
    return stats.robustness(d.interval(), drop_original.interval()), d, drop_original


def h1_p_value(diff: Comparison) -> float:
    """H1's p-value in the Holm family: the t-test of ER - original = -MARGIN."""
    return diff.p_value(-MARGIN)


def robustness_p_value(d: Comparison, drop_original: Comparison) -> float:
    """max(p of drop(original) = 0 if its mean is positive else 1, p of D = 0).

    The verdict needs both conditions (an intersection-union test).
    """
    p_drop = drop_original.p_value() if drop_original.mean > 0 else 1.0
    return max(p_drop, d.p_value())


def h4(
    results: Sequence[RunResult], base: str, objective: str = "original"
) -> Tuple[str, List[float]]:
    """H4 for one method: is the ER entropy of its output stable over training?

    Per seed at the default setting, the largest relative deviation of the ER
    entropy from its median over epochs 2..E. Supported if it is at most 20% in
    every seed; not supported if it exceeds 20% in a majority of seeds;
    inconclusive otherwise (:func:`stats.stable_entropy`). Returns (verdict,
    deviation per seed).
    """
    method = base if objective == "original" else f"{base}_er"
    runs = [
        r
        for r in results
        if r.method == method and r.batch_size == DEFAULT_BATCH and r.ema == DEFAULT_EMA
    ]
    if not runs:
        return "missing", []
    deviations = [entropy_deviation(r.er_entropy_per_epoch) for r in runs]
    if len(runs) < 2:
        return "inconclusive (fewer than 2 seeds)", deviations
    return stats.stable_entropy(deviations, STABLE_DEVIATION), deviations


def entropy_deviation(values: Sequence[float]) -> float:
    """max |h - median| / |median| over epochs 2..E (all epochs if fewer than 3)."""
    tail = [v for v in (values[1:] if len(values) > 2 else values) if math.isfinite(v)]
    if not tail:
        return math.nan
    median = statistics.median(tail)
    if median == 0:
        return math.inf if any(v != 0 for v in tail) else 0.0
    return max(abs(v - median) for v in tail) / abs(median)


def _cases() -> List[Tuple[str, str, str, Any]]:
    """(hypothesis, case, base, settings) of the interval comparisons, in order."""
    cases: List[Tuple[str, str, str, Any]] = [
        ("H1", display_name(base), base, None) for base in BATCH_METHODS
    ]
    for base in TEACHER_METHODS:
        for ema in EMAS:
            if ema != DEFAULT_EMA:
                name = f"{display_name(base)}, EMA 0.99 → {ema:g}"
                setting = ((DEFAULT_BATCH, DEFAULT_EMA), (DEFAULT_BATCH, ema))
                cases.append(("H2", name, base, setting))
    for base in BATCH_METHODS:
        for batch in BATCHES:
            if batch != DEFAULT_BATCH:
                fixed = teacher_ema(base)
                name = f"{display_name(base)}, batch 128 → {batch}"
                cases.append(
                    ("H3", name, base, ((DEFAULT_BATCH, fixed), (batch, fixed)))
                )
    return cases


def verdicts(results: Sequence[RunResult]) -> List[Tuple[str, str, str, str]]:
    """(hypothesis, case, verdict, evidence) for every pre-registered test.

    The rule as pre-registered, on two-sided t-intervals with n - 1 degrees of
    freedom, with Holm's correction over the family of the 15 interval
    comparisons (H1-H3; a missing one enters with p = 1): each case's intervals
    are read at its Holm confidence level (:func:`stats.holm_confidences`). H4's
    two verdicts are a rule on per-seed deviations, not tests.
    """
    cases = _cases()
    p_values = []
    for hypothesis, _, base, setting in cases:
        if hypothesis == "H1":
            _, diff = h1(results, base)
            ok = diff is not None and diff.n >= 2
            p_values.append(h1_p_value(diff) if ok and diff is not None else 1.0)
        else:
            _, d, drop = robustness(results, base, *setting)
            ok = d is not None and drop is not None and d.n >= 2
            p_values.append(
                robustness_p_value(d, drop)
                if ok and d is not None and drop is not None
                else 1.0
            )
    levels = stats.holm_confidences(p_values, ALPHA)
    rows: List[Tuple[str, str, str, str]] = []
    for (hypothesis, name, base, setting), level in zip(cases, levels, strict=True):
        at = f" (Holm level {level:.4f})"
        if hypothesis == "H1":
            verdict, diff = h1(results, base, confidence=level)
            evidence = f"ER - original: {diff}{at}" if diff and diff.n >= 2 else "-"
        else:
            default, other = setting
            verdict, d, drop = robustness(
                results, base, default, other, confidence=level
            )
            evidence = _robust_text(d, drop) + at if d and d.n >= 2 else "-"
        rows.append((hypothesis, name, verdict, evidence))
    for base in TEACHER_METHODS:
        verdict, deviations = h4(results, base)
        text = ", ".join(f"{d:.1%}" for d in deviations) or "-"
        rows.append(
            (
                "H4",
                f"{display_name(base)} (original)",
                verdict,
                f"max deviation per seed: {text}",
            )
        )
    return rows


def _robust_text(d: Optional[Comparison], drop: Optional[Comparison]) -> str:
    if d is None or drop is None:
        return "-"
    return f"drop of the original {drop}; drop(original) - drop(ER) {d}"


def display_name(base: str) -> str:
    return {"byol": "BYOL", "dino": "DINO", "simclr": "SimCLR", "moco": "MoCo"}[base]


# ---------------------------------------------------------------------------------------
# Tables, plots, report
# ---------------------------------------------------------------------------------------
def setting_table(
    results: Sequence[RunResult],
    axis: str,
    bases: Sequence[str],
) -> str:
    """kNN top-1 best and final (mean ± std over seeds) along one axis, as Markdown."""
    values: Sequence[Any] = EMAS if axis == "ema" else BATCHES
    label = "EMA" if axis == "ema" else "Batch"
    rows = []
    for base in bases:
        for method in (base, f"{base}_er"):
            for value in values:
                batch, ema = setting_of(axis, value, base)
                best = cell(results, method, batch, ema, "best")
                final = cell(results, method, batch, ema, "final")
                if best is None or final is None:
                    continue
                objective = "ER" if method.endswith("_er") else "original"
                rows.append(
                    (
                        display_name(base),
                        objective,
                        f"{value:g}",
                        best,
                        final,
                        len(best.values),
                    )
                )
    columns = ("Method", "Objective", label, "kNN top-1 best", "kNN top-1 final")
    return markdown_table((*columns, "Seeds"), rows, "llrrrr")


def verdict_table(rows: Sequence[Tuple[str, str, str, str]]) -> str:
    columns = ("Hypothesis", "Case", "Verdict")
    evidence = (
        f"Evidence (mean [t-interval, n - 1 df, at the Holm level over the "
        f"{FAMILY_SIZE} comparisons H1-H3, α = {ALPHA}], kNN top-1 final)"
    )
    return markdown_table((*columns, evidence), rows)


def flattening_table(results: Sequence[RunResult]) -> str:
    """kNN top-1 at the default setting after epochs E-10, E-5 and E (mean over seeds).

    Shows whether the curves have flattened by the last epoch: the gain over the last
    five epochs is the pilot rule's measure.
    """
    rows = []
    for base in BATCH_METHODS:
        for method in (base, f"{base}_er"):
            runs = [
                r
                for r in results
                if r.method == method
                and r.batch_size == DEFAULT_BATCH
                and r.ema == teacher_ema(base)
                and len(r.knn_top1_per_epoch) > 10
            ]
            if not runs:
                continue
            at = [
                statistics.fmean(r.knn_top1_per_epoch[-1 - back] for r in runs)
                for back in (10, 5, 0)
            ]
            objective = "ER" if method.endswith("_er") else "original"
            epochs = len(runs[0].knn_top1_per_epoch)
            curve = (
                f"{epochs - 10}: {at[0]:.3f} → {epochs - 5}: {at[1]:.3f} → "
                f"{epochs}: {at[2]:.3f}"
            )
            rows.append(
                (
                    display_name(base),
                    objective,
                    curve,
                    f"{at[2] - at[1]:+.3f}",
                    len(runs),
                )
            )
    columns = ("Method", "Objective", "kNN top-1 after epoch E-10 → E-5 → E")
    return markdown_table(
        (*columns, "Gain over the last 5 epochs", "Seeds"), rows, "lllrr"
    )


def entropy_table(results: Sequence[RunResult]) -> str:
    """H4's numbers: first, median and last ER entropy and the collapse score."""
    rows = []
    for base in TEACHER_METHODS:
        for method in (base, f"{base}_er"):
            for batch, ema in (
                (DEFAULT_BATCH, DEFAULT_EMA),
                (DEFAULT_BATCH, 0.0),
                (16, DEFAULT_EMA),
            ):
                runs = [
                    r
                    for r in results
                    if r.method == method and r.batch_size == batch and r.ema == ema
                ]
                if not runs:
                    continue
                first = statistics.fmean(r.er_entropy_per_epoch[0] for r in runs)
                median = statistics.fmean(
                    statistics.median(r.er_entropy_per_epoch) for r in runs
                )
                last = statistics.fmean(r.er_entropy_per_epoch[-1] for r in runs)
                collapse = statistics.fmean(
                    r.collapse_score_per_epoch[-1] for r in runs
                )
                unit = "nats" if runs[0].er_entropy_kind == "gap" else "of log K"
                objective = "ER" if method.endswith("_er") else "original"
                rows.append(
                    (
                        display_name(base),
                        objective,
                        f"batch {batch}, EMA {ema:g}",
                        f"{first:.3f} → {median:.3f} → {last:.3f} {unit}",
                        f"{collapse:.3f}",
                        len(runs),
                    )
                )
    columns = ("Method", "Objective", "Setting", "ER entropy epoch 1 → median → last")
    return markdown_table(
        (*columns, "Backbone collapse score last", "Seeds"), rows, "llllrr"
    )


__all__ = [
    "ALPHA",
    "FAMILY_SIZE",
    "Cell",
    "Comparison",
    "entropy_deviation",
    "h1",
    "h4",
    "robustness",
    "verdicts",
]
