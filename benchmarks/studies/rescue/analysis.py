"""The registered comparisons of the rescue study: families, Holm, verdicts.

Every comparison is a set of per-seed values tested against one threshold; it
enters its Holm family with the two-sided p-value of "the mean equals the
threshold" (:func:`benchmarks.studies.rescue.verdicts.threshold_p`), whatever side
its mean lies on, and its verdict is read from its t-interval (n - 1 df) at its
Holm level (:func:`benchmarks.studies.stats.holm_confidences`). So a "does not
collapse" is counted as the rejection it is, with its own p. A comparison with
fewer than two seeds enters with p = 1 and is reported as missing; a family keeps
its registered size (missing members count as p = 1).

Roles: ``collapse`` (G0 against -c: primary removals, the issue's collapse
outcome, which gates nothing), the removal's control (``below``: G0 against 0,
DINO at EMA 0; ``fails``: G0 against +0.02 with the heads, every other removal),
``treatment`` (G of a treatment against the removal's line: 0 or +0.02) and
``cost`` (d = kNN(treated) - kNN(intact) against -0.02). Families
(``rescue_preregistration.md``): *primary* (per primary removal the collapse
reading, its control and five treatments: 14), *secondary: <removal>* (its control
and five treatments: 6 each), *cost* (five treatments per intact arm). A rescue
verdict (:func:`benchmarks.studies.rescue.verdicts.rescue`) joins the removal's
control (:data:`~benchmarks.studies.rescue.config.FAILURE_MODE`) and a treatment
of the same family, whose error rate covers both.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from benchmarks.studies import stats
from benchmarks.studies.rescue import verdicts
from benchmarks.studies.rescue.config import (
    BELOW,
    FAILS,
    FAILURE_MODE,
    PRIMARY,
    TREATMENTS,
    RescueConfig,
    treatment_of,
)
from benchmarks.studies.stats import Interval

Key = Tuple[str, str]
"""(arm, treatment)."""
COLLAPSE_ROLE, BELOW_ROLE, FAILS_ROLE = "collapse", "below", "fails"
TREATMENT, COST = "treatment", "cost"
CONTROLS = (COLLAPSE_ROLE, BELOW_ROLE, FAILS_ROLE)
CONTROL_OF = {BELOW: BELOW_ROLE, FAILS: FAILS_ROLE}
"""The role of each failure mode's control."""


@dataclass
class Comparison:
    """One registered comparison and, once its family is evaluated, its verdict.

    Attributes:
        family: ``primary``, ``secondary: <removal>`` or ``cost``.
        arm: The removal (or, for ``cost``, the intact arm).
        treatment: ``none`` for a control, else the treatment.
        role: ``collapse``, ``below``, ``fails``, ``treatment`` or ``cost``.
        values: Per seed: the gain G (control, treatment) or d (cost).
        threshold: What the mean is tested against.
        heads: (runs whose head collapsed, runs) of the comparison's runs.
        p: The p-value it entered its family with.
        level: Its Holm confidence level.
        interval: Its t-interval at that level (None when missing).
        verdict: Its verdict.
        beside: Numbers reported beside it, not tested.
    """

    family: str
    arm: str
    treatment: str
    role: str
    values: Dict[int, float]
    threshold: float
    heads: Tuple[int, int] = (0, 0)
    p: float = 1.0
    level: float = 0.0
    interval: Optional[Interval] = None
    verdict: str = ""
    beside: Dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)


def read_verdict(c: Comparison, interval: Interval, config: RescueConfig) -> str:
    """The verdict of one comparison from its interval, by its role and family."""
    if c.role == COST:
        return verdicts.accuracy_cost(interval, -c.threshold)
    if c.role == COLLAPSE_ROLE:
        return stats.collapse(interval, -c.threshold)
    if c.role == BELOW_ROLE:
        return verdicts.below_untrained(interval)
    if c.role == FAILS_ROLE:
        return verdicts.fails_to_learn(interval, c.threshold, c.heads[0])
    return verdicts.learns(interval, c.threshold)


def evaluate_family(
    comparisons: Sequence[Comparison], size: int, config: RescueConfig
) -> None:
    """Holm over one family (padded to its registered ``size``); fills verdicts.

    Raises:
        ValueError: If the family holds more comparisons than its size.
    """
    if len(comparisons) > size:
        raise ValueError(f"a family of {size} got {len(comparisons)} comparisons")
    for c in comparisons:
        values = [c.values[s] for s in sorted(c.values)]
        c.p = verdicts.threshold_p(values, c.threshold) if c.n >= 2 else 1.0
    padded = [c.p for c in comparisons] + [1.0] * (size - len(comparisons))
    levels = stats.holm_confidences(padded, config.engine.alpha)
    for c, level in zip(comparisons, levels, strict=False):
        c.level = level
        if c.n < 2:
            c.interval, c.verdict = None, verdicts.MISSING
            continue
        c.interval = stats.t_interval([c.values[s] for s in sorted(c.values)], level)
        c.verdict = read_verdict(c, c.interval, config)


def family_sizes(config: RescueConfig) -> Dict[str, int]:
    """The registered families and their sizes."""
    per_removal = len(TREATMENTS)  # the control and five treatments
    sizes = {}
    if config.primary:
        sizes["primary"] = len(config.primary) * (per_removal + 1)  # + collapse
    sizes.update({f"secondary: {r}": per_removal for r in config.secondary})
    if config.intact:
        sizes["cost"] = len(config.intact) * (len(TREATMENTS) - 1)
    return sizes


# ---------------------------------------------------------------------------------------
# From the run records
# ---------------------------------------------------------------------------------------
class Results:
    """Run records by (arm, treatment) and seed, with the untrained evaluations and
    the head-collapse readings (by run id)."""

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        untrained: Mapping[int, Mapping[str, float]],
        heads: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.untrained = {s: dict(u) for s, u in untrained.items()}
        self.heads = dict(heads)
        self.records: Dict[Key, Dict[int, Mapping[str, Any]]] = {}
        for r in records:
            if r.get("diverged_step") is not None:
                # A diverged run's outputs carry no information about the input.
                self.heads[r["run_id"]] = {"collapsed": True, "mode": "diverged"}
            spec = r["spec"]
            key = (spec["arm"], treatment_of(spec["weight"], spec.get("term")))
            self.records.setdefault(key, {})[spec["seed"]] = r

    def gain(self, key: Key, field_name: str = "knn") -> Dict[int, float]:
        """final - untrained (kNN, or ``probe``) per seed."""
        out = {}
        for seed, r in self.records.get(key, {}).items():
            final = r["final_knn"] if field_name == "knn" else r["final_probe"]
            if final is not None and seed in self.untrained:
                out[seed] = float(final) - self.untrained[seed][field_name]
        return out

    def knn(self, key: Key) -> Dict[int, float]:
        return {s: float(r["final_knn"]) for s, r in self.records.get(key, {}).items()}

    def head_counts(
        self, key: Key, seeds: Optional[Sequence[int]] = None
    ) -> Tuple[int, int]:
        """(runs whose head collapsed, runs with a reading) of (arm, treatment)."""
        runs = self.records.get(key, {})
        readings = [
            self.heads.get(r["run_id"])
            for s, r in runs.items()
            if seeds is None or s in seeds
        ]
        read = [h for h in readings if h is not None]
        return sum(bool(h["collapsed"]) for h in read), len(read)

    def modes(self, key: Key) -> List[str]:
        runs = self.records.get(key, {}).values()
        readings = [self.heads.get(r["run_id"]) for r in runs]
        return [h["mode"] for h in readings if h and h["collapsed"] and h["mode"]]


def _comparisons(results: Results, config: RescueConfig) -> List[Comparison]:
    c = config.engine.collapse_margin
    out: List[Comparison] = []
    for removal in config.removals:
        family = "primary" if removal in PRIMARY else f"secondary: {removal}"
        line = config.rescue_line(removal)
        for treatment in TREATMENTS:
            key = (removal, treatment)
            gain = results.gain(key)
            heads = results.head_counts(key, list(gain))
            if treatment != "none":
                out.append(
                    Comparison(family, removal, treatment, TREATMENT, gain, line, heads)
                )
                continue
            if removal in PRIMARY:
                out.append(
                    Comparison(
                        family, removal, treatment, COLLAPSE_ROLE, gain, -c, heads
                    )
                )
            role = CONTROL_OF[FAILURE_MODE[removal]]
            out.append(Comparison(family, removal, treatment, role, gain, line, heads))
    for arm in config.intact:
        reference = results.knn((arm, "none"))
        for treatment in TREATMENTS[1:]:
            treated = results.knn((arm, treatment))
            d = {
                s: treated[s] - reference[s]
                for s in sorted(set(treated) & set(reference))
            }
            out.append(Comparison("cost", arm, treatment, COST, d, -config.engine.noninferiority_margin))  # fmt: skip
    return out


def analyse(
    results: Results, config: RescueConfig, complete: bool = True
) -> List[Comparison]:
    """Every registered comparison, evaluated family by family, with the numbers
    reported beside (probe gain at the same level, head collapses).

    With ``complete=False`` (not every registered run has finished) the intervals
    are computed but no comparison gets a verdict: the registration decides on all
    runs, so an interim reading states none.
    """
    comparisons = _comparisons(results, config)
    for family, size in family_sizes(config).items():
        members = [x for x in comparisons if x.family == family]
        evaluate_family(members, size, config)
        if not complete:
            for x in members:
                x.verdict = verdicts.INTERIM
    for x in comparisons:
        if x.role == COST:
            continue
        probe = results.gain((x.arm, x.treatment), "probe")
        if len(probe) >= 2 and x.level > 0:
            interval = stats.t_interval(list(probe.values()), x.level)
            x.beside["probe gain"] = str(interval)
        k, n = x.heads
        if n:
            low, high = verdicts.clopper_pearson(k, n)
            modes = results.modes((x.arm, x.treatment))
            mode = f" ({', '.join(sorted(set(modes)))})" if modes else ""
            x.beside["head collapsed"] = f"{k}/{n} [{low:.2f}, {high:.2f}]{mode}"
    return comparisons


@dataclass
class Rescue:
    """One (removal, treatment) rescue verdict and the two verdicts it joins."""

    removal: str
    treatment: str
    verdict: str
    control: str
    treated: str


def rescues(comparisons: Sequence[Comparison]) -> List[Rescue]:
    """The rescue verdict of every removal and treatment."""
    controls = {(x.arm, x.role): x for x in comparisons if x.role in CONTROLS}
    out = []
    for x in comparisons:
        if x.role != TREATMENT:
            continue
        mode = FAILURE_MODE[x.arm]
        control = controls[(x.arm, CONTROL_OF[mode])]
        failure = verdicts.BELOW_UNTRAINED if mode == BELOW else verdicts.FAILS_TO_LEARN
        if verdicts.INTERIM in (control.verdict, x.verdict):
            verdict = verdicts.INTERIM
        elif verdicts.MISSING in (control.verdict, x.verdict):
            verdict = verdicts.MISSING
        else:
            verdict = verdicts.rescue(control.verdict, failure, x.verdict)
        out.append(Rescue(x.arm, x.treatment, verdict, control.verdict, x.verdict))
    return out


def verdict_lines(comparisons: Sequence[Comparison], config: RescueConfig) -> List[str]:
    """One line per comparison and one per rescue verdict (``verdicts.txt``)."""
    sizes = family_sizes(config)
    lines = []
    for x in comparisons:
        what = "d" if x.role == COST else "G"
        evidence = f"{what} {x.interval}" if x.interval is not None else "-"
        lines.append(
            f"{x.family} | {x.arm} | {x.treatment} | {x.role} vs {x.threshold:+g} | "
            f"{x.verdict} | {evidence} | n = {x.n}, p = {x.p:.2g}, Holm level "
            f"{x.level:.4f} (family of {sizes[x.family]})"
        )
    for r in rescues(comparisons):
        lines.append(
            f"rescue | {r.removal} | {r.treatment} | {r.verdict} | control: "
            f"{r.control}; treatment: {r.treated}"
        )
    return lines


SUMMARY_ORDER = (
    verdicts.RESCUES,
    verdicts.DOES_NOT_RESCUE,
    stats.INCONCLUSIVE,
    "no failure to rescue",
    verdicts.MISSING,
    verdicts.INTERIM,
)


def summary_line(comparisons: Sequence[Comparison]) -> str:
    """How many rescue verdicts of each kind, per part of the study (primary,
    secondary); "no failure to rescue" counts the rescues whose control did not fail."""
    counts: Dict[str, Dict[str, int]] = {}
    part = {
        x.arm: "primary" if x.family == "primary" else "secondary" for x in comparisons
    }
    for r in rescues(comparisons):
        short = "no failure to rescue" if "no failure" in r.verdict else r.verdict
        by = counts.setdefault(part[r.removal], {})
        by[short] = by.get(short, 0) + 1
    inner = "; ".join(
        f"{p}: " + ", ".join(f"{by[v]} {v}" for v in SUMMARY_ORDER if v in by)
        for p, by in counts.items()
    )
    return f"Rescue verdicts: {inner}."


def mean_sd(values: Mapping[int, float]) -> str:
    v = list(values.values())
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):+.3f} ± {sd:.3f}"
