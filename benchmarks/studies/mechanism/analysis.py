"""The pre-registered hypotheses: comparisons, Holm families, verdicts.

Each hypothesis is one Holm family of the registered size (headline 9, H-cost 4,
H-replace 3, H-unif 1, H-batch 9). A comparison is a set of per-seed values
paired by seed; it enters its family with the p-value the pre-registration gives
it, and its interval(s) are read at its Holm confidence level
(:func:`benchmarks.studies.stats.holm_confidences`), so that the verdicts are
Holm's decisions. A comparison with fewer than two seeds (a study stopped early)
enters with p = 1 and is reported as missing; the family keeps its size.

The verdict functions are those of :mod:`benchmarks.studies.stats`, whose wording
the tests hold to the pre-registration.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from benchmarks.studies import stats
from benchmarks.studies.mechanism.config import (
    BATCH_MEMBERS,
    HEADLINE_ARMS,
    INTACT_OF,
    StudyConfig,
)
from benchmarks.studies.mechanism.rows import (
    ER_BETTER,
    FAMILY_SIZES,
    MISSING,
    NO_DIFFERENCE,
    UNIFORMITY_BETTER,
    PerSeed,
    Row,
    _family,
    _p,
    common,
    summary_line,
    table_rows,
    verdict_lines,
)
from benchmarks.studies.stats import Interval


# ---------------------------------------------------------------------------------------
# H-control and H-entropy
# ---------------------------------------------------------------------------------------
def headline_p(g0: Sequence[float], g1: Sequence[float], c: float) -> float:
    """max(p_control, p_entropy), as registered.

    p_control: the two-sided p-value of G0 = -c if mean G0 < -c, else 1;
    p_entropy: that of G1 = 0 if mean G1 > 0, of G1 = -c if mean G1 < -c, else 1.
    """
    m0, m1 = statistics.fmean(g0), statistics.fmean(g1)
    p_control = _p(g0, -c) if m0 < -c else 1.0
    if m1 > 0:
        p_entropy = _p(g1, 0.0)
    elif m1 < -c:
        p_entropy = _p(g1, -c)
    else:
        p_entropy = 1.0
    return max(p_control, p_entropy)


def headline_rows(
    cases: Mapping[str, Tuple[PerSeed, PerSeed]],
    c: float,
    alpha: float = 0.05,
    size: int = 9,
) -> List[Row]:
    """H-control and H-entropy per device case from its gains (G0, G1) per seed."""
    prepared = []
    for case, (g0, g1) in cases.items():
        seeds = common(g0, g1)
        a = [g0[s] for s in seeds]
        b = [g1[s] for s in seeds]
        p = headline_p(a, b, c) if len(seeds) >= 2 else 1.0
        prepared.append((case, a, b, p))
    levels = _family([p for *_, p in prepared], alpha, size)
    rows = []
    for (case, a, b, p), level in zip(prepared, levels, strict=True):
        if len(a) < 2:
            verdicts = {"H-control": MISSING, "H-entropy": MISSING}
            rows.append(
                Row("H-control/H-entropy", case, verdicts, {}, len(a), p, level, size)
            )
            continue
        i0 = stats.t_interval(a, level)
        i1 = stats.t_interval(b, level)
        control = stats.collapse(i0, c)
        entropy = stats.prevents_collapse(i1, c, control)
        diff = [y - x for x, y in zip(a, b, strict=True)]
        rows.append(
            Row(
                "H-control/H-entropy",
                case,
                {"H-control": control, "H-entropy": entropy},
                {"G0": i0, "G1": i1},
                len(a),
                p,
                level,
                size,
                {"G1 - G0": f"{statistics.fmean(diff):+.3f}"},
            )
        )
    return rows


# ---------------------------------------------------------------------------------------
# H-cost, H-replace (non-inferiority) and H-unif
# ---------------------------------------------------------------------------------------
def noninferiority_rows(
    hypothesis: str,
    cases: Mapping[str, PerSeed],
    margin: float,
    alpha: float = 0.05,
    size: Optional[int] = None,
) -> List[Row]:
    """d = ER - original per seed; supported above -margin (``stats.noninferiority``).

    p: the two-sided p-value of d = -margin.
    """
    size = size if size is not None else len(cases)
    prepared = []
    for case, d in cases.items():
        values = [d[s] for s in sorted(d)]
        p = _p(values, -margin) if len(values) >= 2 else 1.0
        prepared.append((case, values, p))
    levels = _family([p for *_, p in prepared], alpha, size)
    rows = []
    for (case, values, p), level in zip(prepared, levels, strict=True):
        if len(values) < 2:
            rows.append(
                Row(
                    hypothesis,
                    case,
                    {hypothesis: MISSING},
                    {},
                    len(values),
                    p,
                    level,
                    size,
                )
            )
            continue
        interval = stats.t_interval(values, level)
        verdict = stats.noninferiority(interval, margin)
        rows.append(
            Row(
                hypothesis,
                case,
                {hypothesis: verdict},
                {"d": interval},
                len(values),
                p,
                level,
                size,
            )
        )
    return rows


def unif_verdict(d: Interval) -> str:
    """H-unif: ER better if d's interval lies above 0, uniformity better if below."""
    if d.low > 0:
        return ER_BETTER
    if d.high < 0:
        return UNIFORMITY_BETTER
    return NO_DIFFERENCE


def unif_row(d: PerSeed, alpha: float = 0.05) -> Row:
    """H-unif (a family of one): d = kNN(BYOL-ER) - kNN(BYOL + uniformity)."""
    values = [d[s] for s in sorted(d)]
    level = 1.0 - alpha
    if len(values) < 2:
        return Row(
            "H-unif",
            "BYOL-ER - BYOL + uniformity",
            {"H-unif": MISSING},
            {},
            len(values),
            1.0,
            level,
            1,
        )
    interval = stats.t_interval(values, level)
    return Row(
        "H-unif",
        "BYOL-ER - BYOL + uniformity",
        {"H-unif": unif_verdict(interval)},
        {"d": interval},
        len(values),
        _p(values, 0.0),
        level,
        1,
    )


# ---------------------------------------------------------------------------------------
# H-batch
# ---------------------------------------------------------------------------------------
def batch_p(drop_original: Sequence[float], d: Sequence[float]) -> float:
    """max(p of drop(original) = 0 if its mean is positive else 1, p of D = 0)."""
    p_drop = _p(drop_original, 0.0) if statistics.fmean(drop_original) > 0 else 1.0
    return max(p_drop, _p(d, 0.0))


def batch_rows(
    cases: Mapping[str, Tuple[PerSeed, PerSeed]],
    alpha: float = 0.05,
    size: int = 9,
) -> List[Row]:
    """H-batch per (method, drop) from drop(original) and drop(ER) per seed.

    D = drop(original) - drop(ER); the verdict is ``stats.robustness`` (the
    original not hurt comes first).
    """
    prepared = []
    for case, (drop_o, drop_e) in cases.items():
        seeds = common(drop_o, drop_e)
        a = [drop_o[s] for s in seeds]
        d = [drop_o[s] - drop_e[s] for s in seeds]
        p = batch_p(a, d) if len(seeds) >= 2 else 1.0
        prepared.append((case, a, d, p))
    levels = _family([p for *_, p in prepared], alpha, size)
    rows = []
    for (case, a, d, p), level in zip(prepared, levels, strict=True):
        if len(a) < 2:
            rows.append(
                Row("H-batch", case, {"H-batch": MISSING}, {}, len(a), p, level, size)
            )
            continue
        drop = stats.t_interval(a, level)
        big_d = stats.t_interval(d, level)
        verdict = stats.robustness(big_d, drop)
        rows.append(
            Row(
                "H-batch",
                case,
                {"H-batch": verdict},
                {"drop(original)": drop, "D": big_d},
                len(a),
                p,
                level,
                size,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------
# From the run records
# ---------------------------------------------------------------------------------------
Key = Tuple[str, Optional[float], int, int]
"""(arm, weight, batch, steps)."""


class Results:
    """The run records by (arm, weight, batch, steps) and seed."""

    def __init__(
        self, records: Sequence[Mapping[str, Any]], untrained: Mapping[int, float]
    ) -> None:
        self.untrained = dict(untrained)
        self.records: Dict[Key, Dict[int, Mapping[str, Any]]] = {}
        for r in records:
            spec = r["spec"]
            key = (spec["arm"], spec["weight"], spec["batch"], spec["steps"])
            self.records.setdefault(key, {})[spec["seed"]] = r

    def values(self, key: Key, field_name: str = "final_knn") -> Dict[int, float]:
        return {
            s: float(r[field_name])
            for s, r in self.records.get(key, {}).items()
            if r.get(field_name) is not None
        }

    def gain(self, key: Key) -> Dict[int, float]:
        return {
            s: v - self.untrained[s]
            for s, v in self.values(key).items()
            if s in self.untrained
        }


def _diff(a: PerSeed, b: PerSeed) -> Dict[int, float]:
    return {s: a[s] - b[s] for s in common(a, b)}


def _mean(values: PerSeed) -> float:
    return statistics.fmean(values.values()) if values else math.nan


def hypotheses(results: Results, config: StudyConfig) -> List[Row]:
    """Every registered comparison's row, family by family."""
    S, B = config.steps, config.batch
    alpha = config.alpha

    def key(arm: str, w: Optional[float], batch: int = B, steps: int = S) -> Key:
        return (arm, w, batch, steps)

    def original(arm: str) -> Key:
        return key(arm, None) if arm == "simclr" else key(arm, 0.0)

    cases = {
        arm: (results.gain(key(arm, 0.0)), results.gain(key(arm, 1.0)))
        for arm in HEADLINE_ARMS
    }
    rows = headline_rows(
        cases, config.collapse_margin, alpha, FAMILY_SIZES["H-control/H-entropy"]
    )
    for row in rows:
        arm = row.case
        w1 = results.values(key(arm, 1.0))
        intact = results.values(original(INTACT_OF[arm]))
        seeds = common(w1, intact)
        if seeds:
            ratio = statistics.fmean(w1[s] for s in seeds) / statistics.fmean(
                intact[s] for s in seeds
            )
            row.beside["kNN(w = 1) / kNN(intact original)"] = f"{ratio:.3f}"

    cost_cases = {
        arm: _diff(results.values(key(arm, 1.0)), results.values(key(arm, 0.0)))
        for arm in ("byol", "simsiam", "dino", "swav")
    }
    rows += noninferiority_rows(
        "H-cost",
        cost_cases,
        config.noninferiority_margin,
        alpha,
        FAMILY_SIZES["H-cost"],
    )

    replace_cases = {
        "DINO-ER (dino-nocenter, w = 1) - DINO": _diff(
            results.values(key("dino-nocenter", 1.0)), results.values(key("dino", 0.0))
        ),
        "SwAV-ER (swav-nosinkhorn, w = 1) - SwAV": _diff(
            results.values(key("swav-nosinkhorn", 1.0)),
            results.values(key("swav", 0.0)),
        ),
        "SimCLR-ER (simclr-er, w = 1) - SimCLR": _diff(
            results.values(key("simclr-er", 1.0)), results.values(key("simclr", None))
        ),
    }
    rows += noninferiority_rows(
        "H-replace",
        replace_cases,
        config.noninferiority_margin,
        alpha,
        FAMILY_SIZES["H-replace"],
    )

    byol0 = results.values(key("byol", 0.0))
    byol1 = results.values(key("byol", 1.0))
    unif = results.values(key("byol-unif", None))
    d = {s: v for s, v in _diff(byol1, unif).items() if s in config.small_seeds}
    row = unif_row(d, alpha)
    for name, side in (("BYOL-ER - BYOL", byol1), ("BYOL + uniformity - BYOL", unif)):
        paired = [v for s, v in _diff(side, byol0).items() if s in config.small_seeds]
        if len(paired) >= 2:
            row.beside[name] = str(stats.t_interval(paired, 1.0 - alpha))
    rows.append(row)

    batch_cases = {}
    settings = {
        "128 → 32, fixed steps": ((B, S), (config.small_batch, S)),
        "512 → 32, fixed samples": (
            (config.large_batch, config.large_steps),
            (config.small_batch, config.small_steps_fixed_samples),
        ),
        "512 → 128, fixed samples": ((config.large_batch, config.large_steps), (B, S)),
    }
    pairs = {
        "BYOL": (("byol", 0.0), ("byol", 1.0)),
        "DINO": (("dino", 0.0), ("dino", 1.0)),
        "SimCLR": (("simclr", None), ("simclr-er", 1.0)),
    }
    assert {m for pair in pairs.values() for m in pair} == set(BATCH_MEMBERS)
    Setting = Tuple[int, int]

    def drop(
        member: Tuple[str, Optional[float]], reference: Setting, smaller: Setting
    ) -> Dict[int, float]:
        """kNN(reference) - kNN(smaller batch), paired by seed (seeds 0-2)."""
        ref = results.values(key(member[0], member[1], *reference))
        small = results.values(key(member[0], member[1], *smaller))
        return {s: v for s, v in _diff(ref, small).items() if s in config.small_seeds}

    for method, (orig, er) in pairs.items():
        for name, (reference, smaller) in settings.items():
            batch_cases[f"{method}, {name}"] = (
                drop(orig, reference, smaller),
                drop(er, reference, smaller),
            )
    rows += batch_rows(batch_cases, alpha, FAMILY_SIZES["H-batch"])
    return rows


def describe(
    results: Results, sort_key: Callable[[Key], Any] = lambda k: k
) -> Tuple[List[str], List[List[str]]]:
    """The arms: final, best kNN, probe, gain (mean ± sd over seeds) and labels."""
    columns = [
        "Arm",
        "w",
        "Batch",
        "Steps",
        "n",
        "kNN final",
        "kNN best",
        "Probe final",
        "Gain G",
        "collapsed / no gain / learned",
    ]
    cells = []

    def ms(values: PerSeed) -> str:
        v = list(values.values())
        if not v:
            return "-"
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.fmean(v):.3f} ± {sd:.3f}"

    for key in sorted(
        results.records, key=lambda k: (k[0], -1 if k[1] is None else k[1], k[2], k[3])
    ):
        runs = results.records[key]
        labels = [r["label"] for r in runs.values()]
        arm, w, batch, steps = key
        cells.append(
            [arm, "-" if w is None else f"{w:g}", str(batch), str(steps), str(len(runs)),
             ms(results.values(key)), ms(results.values(key, "best_knn")),
             ms(results.values(key, "final_probe")), ms(results.gain(key)),
             f"{labels.count('collapsed')} / {labels.count('no gain')} / {labels.count('learned')}"]
        )  # fmt: skip
    return columns, cells


__all__ = [
    "ER_BETTER",
    "FAMILY_SIZES",
    "Interval",
    "MISSING",
    "NO_DIFFERENCE",
    "PerSeed",
    "Results",
    "Row",
    "UNIFORMITY_BETTER",
    "batch_p",
    "batch_rows",
    "common",
    "describe",
    "headline_p",
    "headline_rows",
    "hypotheses",
    "noninferiority_rows",
    "summary_line",
    "table_rows",
    "unif_row",
    "unif_verdict",
    "verdict_lines",
]
