"""The stability study's verdicts recomputed from its published numbers (issue 22).

The run records of the stability study are not kept in git; benchmarks/README.md
published, for every comparison of protocols v1 and v2, the mean and the interval
mean ± 2 SE (n = 3 seeds), rounded to 3 decimals. This script holds those rows
verbatim (:data:`PUBLISHED`) and recomputes the verdicts two ways:

1. **The pre-registered rule as written** (``stability_preregistration.md``): the
   published ± 2 SE intervals, with "inconclusive ... also when the original is not
   hurt" taking precedence over "not supported (ER is hurt more)", as the text says;
   the code that produced the published verdicts let the latter override it.
2. **95 % t-intervals with n - 1 = 2 degrees of freedom** (mean ± 4.303 SE, SE =
   (high - low) / 4 from the published ends), without and with Holm's correction
   over the family of a protocol's 15 interval comparisons (H1: 3, H2: 6, H3: 6).
   H4's two verdicts are a rule on per-seed deviations, not a test: they are
   recomputed but are not in the family. Holm is applied as in
   :mod:`benchmarks.studies.stats`: each case's intervals are read at its Holm
   confidence level; an H2/H3 case enters with the larger of the p-values of its two
   conditions (the original is hurt; D differs from 0).

Rounding: the published ends are rounded to 3 decimals, so a recovered SE is good to
± 0.00025 and a mean to ± 0.0005; a verdict that changes within those bounds is
marked †. A published end printed as ``-0.000`` or ``+0.000`` keeps its sign (it
says on which side of 0 the unrounded end lies).

Run ``python benchmarks/studies/stability_correction.py`` (no data needed).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks.studies import stats
from benchmarks.studies.stats import Interval

N_SEEDS = 3
MARGIN = 0.02
"""H1's non-inferiority margin (2 points of kNN top-1)."""
ALPHA = 0.05
ROUND = 0.0005
"""Half a unit of the published third decimal."""

# The verdict tables of benchmarks/README.md (main at 4cdfe3f), row for row.
PUBLISHED: Dict[str, str] = {
    "v1": """
| H1 | BYOL | supported | ER - original: +0.056 [+0.047, +0.065] |
| H1 | DINO | inconclusive | ER - original: -0.008 [-0.033, +0.016] |
| H1 | SimCLR | supported | ER - original: -0.001 [-0.012, +0.010] |
| H2 | BYOL, EMA 0.99 → 0 | inconclusive (the original is not hurt) | drop of the original -0.006 [-0.007, -0.005]; drop(original) - drop(ER) -0.001 [-0.019, +0.018] |
| H2 | BYOL, EMA 0.99 → 0.5 | inconclusive (the original is not hurt) | drop of the original -0.003 [-0.016, +0.009]; drop(original) - drop(ER) +0.008 [-0.005, +0.020] |
| H2 | BYOL, EMA 0.99 → 0.9 | inconclusive (the original is not hurt) | drop of the original -0.005 [-0.019, +0.010]; drop(original) - drop(ER) -0.001 [-0.009, +0.007] |
| H2 | DINO, EMA 0.99 → 0 | supported | drop of the original +0.177 [+0.142, +0.211]; drop(original) - drop(ER) +0.132 [+0.077, +0.187] |
| H2 | DINO, EMA 0.99 → 0.5 | supported | drop of the original +0.207 [+0.179, +0.235]; drop(original) - drop(ER) +0.173 [+0.162, +0.184] |
| H2 | DINO, EMA 0.99 → 0.9 | inconclusive (the original is not hurt) | drop of the original +0.043 [-0.018, +0.104]; drop(original) - drop(ER) +0.027 [+0.014, +0.040] |
| H3 | BYOL, batch 128 → 16 | not supported (ER is hurt more) | drop of the original -0.016 [-0.043, +0.011]; drop(original) - drop(ER) -0.024 [-0.046, -0.003] |
| H3 | BYOL, batch 128 → 32 | inconclusive (the original is not hurt) | drop of the original -0.010 [-0.034, +0.015]; drop(original) - drop(ER) -0.012 [-0.031, +0.007] |
| H3 | DINO, batch 128 → 16 | not supported (ER is hurt more) | drop of the original -0.030 [-0.045, -0.015]; drop(original) - drop(ER) -0.029 [-0.054, -0.003] |
| H3 | DINO, batch 128 → 32 | not supported (ER is hurt more) | drop of the original -0.028 [-0.038, -0.018]; drop(original) - drop(ER) -0.027 [-0.034, -0.019] |
| H3 | SimCLR, batch 128 → 16 | inconclusive (the original is not hurt) | drop of the original -0.006 [-0.015, +0.002]; drop(original) - drop(ER) -0.005 [-0.026, +0.015] |
| H3 | SimCLR, batch 128 → 32 | inconclusive (the original is not hurt) | drop of the original -0.013 [-0.026, +0.000]; drop(original) - drop(ER) -0.008 [-0.025, +0.008] |
| H4 | BYOL (original) | not supported | max deviation per seed: 69.6%, 58.2%, 65.3% |
| H4 | DINO (original) | not supported | max deviation per seed: 43.6%, 28.5%, 37.1% |
""",
    "v2": """
| H1 | BYOL | supported | ER - original: +0.049 [+0.039, +0.058] |
| H1 | DINO | supported | ER - original: +0.007 [-0.008, +0.022] |
| H1 | SimCLR | supported | ER - original: -0.001 [-0.010, +0.007] |
| H2 | BYOL, EMA 0.99 → 0 | inconclusive (the original is not hurt) | drop of the original +0.014 [-0.000, +0.028]; drop(original) - drop(ER) +0.019 [-0.001, +0.040] |
| H2 | BYOL, EMA 0.99 → 0.5 | inconclusive (the original is not hurt) | drop of the original +0.008 [-0.005, +0.021]; drop(original) - drop(ER) +0.021 [-0.007, +0.050] |
| H2 | BYOL, EMA 0.99 → 0.9 | inconclusive (the original is not hurt) | drop of the original +0.003 [-0.003, +0.008]; drop(original) - drop(ER) +0.009 [-0.008, +0.027] |
| H2 | DINO, EMA 0.99 → 0 | inconclusive | drop of the original +0.110 [+0.042, +0.177]; drop(original) - drop(ER) +0.042 [-0.029, +0.113] |
| H2 | DINO, EMA 0.99 → 0.5 | supported | drop of the original +0.187 [+0.132, +0.241]; drop(original) - drop(ER) +0.146 [+0.110, +0.181] |
| H2 | DINO, EMA 0.99 → 0.9 | inconclusive | drop of the original +0.038 [+0.020, +0.056]; drop(original) - drop(ER) +0.033 [-0.031, +0.098] |
| H3 | BYOL, batch 128 → 16 | inconclusive (the original is not hurt) | drop of the original +0.003 [-0.009, +0.014]; drop(original) - drop(ER) -0.016 [-0.034, +0.002] |
| H3 | BYOL, batch 128 → 32 | inconclusive (the original is not hurt) | drop of the original +0.001 [-0.008, +0.009]; drop(original) - drop(ER) +0.001 [-0.027, +0.030] |
| H3 | DINO, batch 128 → 16 | inconclusive (the original is not hurt) | drop of the original -0.036 [-0.061, -0.011]; drop(original) - drop(ER) -0.012 [-0.026, +0.001] |
| H3 | DINO, batch 128 → 32 | inconclusive (the original is not hurt) | drop of the original -0.024 [-0.033, -0.014]; drop(original) - drop(ER) -0.018 [-0.042, +0.007] |
| H3 | SimCLR, batch 128 → 16 | not supported (ER is hurt more) | drop of the original -0.018 [-0.026, -0.010]; drop(original) - drop(ER) -0.015 [-0.022, -0.009] |
| H3 | SimCLR, batch 128 → 32 | inconclusive (the original is not hurt) | drop of the original -0.015 [-0.024, -0.006]; drop(original) - drop(ER) -0.005 [-0.020, +0.010] |
| H4 | BYOL (original) | not supported | max deviation per seed: 75.2%, 69.7%, 75.4% |
| H4 | DINO (original) | supported | max deviation per seed: 12.8%, 8.4%, 10.2% |
""",
}

_NUMBER = r"([+-]\d+\.\d{3})"
_TRIPLE = re.compile(rf"{_NUMBER} \[{_NUMBER}, {_NUMBER}\]")


@dataclass(frozen=True)
class Published:
    """One published comparison: mean and ± 2 SE ends, as printed.

    The strings keep the sign of a rounded zero.
    """

    mean: str
    low: str
    high: str

    def interval(self) -> Interval:
        """The published ± 2 SE interval (ends as printed, signed zeros kept)."""
        low, high = _signed(self.low), _signed(self.high)
        return Interval(float(self.mean), (high - low) / 4, N_SEEDS, low, high)

    @property
    def se(self) -> float:
        """SE recovered from the ends: (high - low) / 4."""
        return (float(self.high) - float(self.low)) / 4


def _signed(text: str) -> float:
    """A printed number; ``+0.000`` becomes the smallest positive float (the
    unrounded value was in (0, 0.0005)), ``-0.000`` stays -0.0 (at most 0)."""
    value = float(text)
    if value == 0.0 and text.startswith("+"):
        return math.ulp(0.0)
    return value


@dataclass(frozen=True)
class Case:
    """One row of a published verdict table."""

    hypothesis: str
    case: str
    published: str
    comparison: Optional[Published] = None  # H1: ER - original; H2/H3: D
    drop: Optional[Published] = None  # H2/H3: drop of the original
    deviations: Tuple[float, ...] = ()  # H4


def parse(table: str) -> List[Case]:
    """The rows of one protocol's published verdict table."""
    cases = []
    for line in table.strip().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        hypothesis, name, verdict, evidence = cells
        if hypothesis == "H4":
            deviations = tuple(
                float(x) / 100 for x in re.findall(r"(\d+\.\d)%", evidence)
            )
            cases.append(Case(hypothesis, name, verdict, deviations=deviations))
            continue
        triples = [Published(*m) for m in _TRIPLE.findall(evidence)]
        if hypothesis == "H1":
            (comparison,) = triples
            cases.append(Case(hypothesis, name, verdict, comparison))
        else:
            drop, comparison = triples
            cases.append(Case(hypothesis, name, verdict, comparison, drop))
    return cases


# ---------------------------------------------------------------------------------------
# Rule (i): as written, ± 2 SE
# ---------------------------------------------------------------------------------------
def verdict_as_written(case: Case) -> str:
    """The pre-registered rule on the published ± 2 SE intervals."""
    if case.hypothesis == "H4":
        return stats.stable_entropy(case.deviations)
    assert case.comparison is not None
    if case.hypothesis == "H1":
        return stats.noninferiority(case.comparison.interval(), MARGIN)
    assert case.drop is not None
    return stats.robustness(case.comparison.interval(), case.drop.interval())


# ---------------------------------------------------------------------------------------
# Rule (ii): 95 % t-intervals, Holm over the protocol's 15 interval comparisons
# ---------------------------------------------------------------------------------------
def _t(mean: float, se: float, confidence: float) -> Interval:
    return stats.interval_from_se(mean, max(se, 0.0), N_SEEDS, confidence)


def case_p_value(case: Case, shift: Tuple[float, float] = (0.0, 0.0)) -> float:
    """The p-value a case enters Holm's family with.

    H1: two-sided t-test of ER - original = -margin. H2/H3: the larger of the
    p-value of "the original's drop is 0" (1 if its mean is not positive) and that of
    "D = 0": the case is decided only if both are rejected. ``shift`` moves every
    mean and SE by (d_mean, d_se), for the rounding check.
    """
    dm, ds = shift
    assert case.comparison is not None
    c = case.comparison
    if case.hypothesis == "H1":
        return stats.p_value(float(c.mean) + dm, c.se + ds, N_SEEDS, -MARGIN)
    assert case.drop is not None
    drop_mean = float(case.drop.mean) + dm
    p_drop = (
        stats.p_value(drop_mean, case.drop.se + ds, N_SEEDS) if drop_mean > 0 else 1.0
    )
    return max(p_drop, stats.p_value(float(c.mean) + dm, c.se + ds, N_SEEDS))


def verdict_t(
    case: Case, confidence: float, shift: Tuple[float, float] = (0.0, 0.0)
) -> str:
    """The pre-registered rule on t-intervals (df = 2) at ``confidence``."""
    dm, ds = shift
    assert case.comparison is not None
    c = case.comparison
    d = _t(float(c.mean) + dm, c.se + ds, confidence)
    if case.hypothesis == "H1":
        return stats.noninferiority(d, MARGIN)
    assert case.drop is not None
    drop = _t(float(case.drop.mean) + dm, case.drop.se + ds, confidence)
    return stats.robustness(d, drop)


_CORNERS = [(dm, ds) for dm in (-ROUND, ROUND) for ds in (-ROUND / 2, ROUND / 2)]


def _rounding_sensitive(case: Case, confidence: float) -> bool:
    central = verdict_t(case, confidence)
    return any(verdict_t(case, confidence, shift) != central for shift in _CORNERS)


@dataclass(frozen=True)
class Row:
    """One corrected row."""

    hypothesis: str
    case: str
    published: str
    as_written: str
    t95: Optional[Interval]
    drop_t95: Optional[Interval]
    verdict_t95: str
    holm_confidence: Optional[float]
    verdict_holm: str
    sensitive_t95: bool = False
    sensitive_holm: bool = False


def correct(
    cases: Sequence[Case], alpha: float = ALPHA, per_hypothesis: bool = False
) -> List[Row]:
    """Every case's verdict by rule (i) and by rule (ii) without and with Holm.

    The Holm family is every case with an interval (H1-H3) of ``cases``, or with
    ``per_hypothesis`` the cases of one hypothesis (a sensitivity check).
    """
    tested = [c for c in cases if c.hypothesis != "H4"]
    families = (
        [[c for c in tested if c.hypothesis == h] for h in ("H1", "H2", "H3")]
        if per_hypothesis
        else [tested]
    )
    levels: Dict[int, float] = {}
    for family in families:
        confidences = stats.holm_confidences([case_p_value(c) for c in family], alpha)
        levels.update(zip((id(c) for c in family), confidences, strict=True))
    rows = []
    for case in cases:
        written = verdict_as_written(case)
        if case.hypothesis == "H4":
            rows.append(
                Row(case.hypothesis, case.case, case.published, written, None, None,
                    written, None, written)
            )  # fmt: skip
            continue
        assert case.comparison is not None
        level = levels[id(case)]
        rows.append(
            Row(
                case.hypothesis,
                case.case,
                case.published,
                written,
                _t(float(case.comparison.mean), case.comparison.se, 1 - alpha),
                _t(float(case.drop.mean), case.drop.se, 1 - alpha)
                if case.drop is not None
                else None,
                verdict_t(case, 1 - alpha),
                level,
                verdict_t(case, level),
                _rounding_sensitive(case, 1 - alpha),
                _rounding_sensitive(case, level),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------
def _mark(old: str, new: str) -> str:
    return f"**{new}**" if new != old else new


def table(rows: Sequence[Row]) -> str:
    """One protocol's corrected verdicts as Markdown (bold: differs from published)."""
    lines = [
        "| Hypothesis | Case | Published | (i) as written, ± 2 SE | "
        "95 % t-interval (df 2) | Drop of the original, 95 % t | (ii) 95 % t | "
        "Holm level | (ii) 95 % t, Holm |",
        "|---|---|---|---|---|---|---|---:|---|",
    ]
    for r in rows:
        t95 = str(r.t95) if r.t95 is not None else "-"
        drop = str(r.drop_t95) if r.drop_t95 is not None else "-"
        level = f"{r.holm_confidence:.4f}" if r.holm_confidence is not None else "-"
        dagger_t = " †" if r.sensitive_t95 else ""
        dagger_h = " †" if r.sensitive_holm else ""
        lines.append(
            f"| {r.hypothesis} | {r.case} | {r.published} | "
            f"{_mark(r.published, r.as_written)} | {t95} | {drop} | "
            f"{_mark(r.published, r.verdict_t95)}{dagger_t} | {level} | "
            f"{_mark(r.published, r.verdict_holm)}{dagger_h} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    for protocol, text in PUBLISHED.items():
        rows = correct(parse(text))
        family = sum(r.hypothesis != "H4" for r in rows)
        changed = sum(r.as_written != r.published for r in rows)
        print(f"### Protocol {protocol}\n")
        print(
            f"{len(rows)} verdicts; Holm family: the {family} interval comparisons "
            f"(H4's {len(rows) - family} are a rule on deviations, not tests); "
            f"α = {ALPHA}. Rule (i) changes {changed} published verdict(s).\n"
        )
        print(table(rows))
        per_hypothesis = correct(parse(text), per_hypothesis=True)
        differ = [
            f"{a.hypothesis} {a.case}: {b.verdict_holm}"
            for a, b in zip(rows, per_hypothesis, strict=True)
            if a.verdict_holm != b.verdict_holm
        ]
        print(
            "Holm per hypothesis instead (families of 3, 6 and 6): "
            + ("; ".join(differ) if differ else "no verdict differs")
            + ".\n"
        )


if __name__ == "__main__":
    main()
