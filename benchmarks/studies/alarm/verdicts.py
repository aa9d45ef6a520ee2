"""The frozen criteria applied to replayed runs: alarm verdicts and quality scores."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from scipy.stats import spearmanr

from benchmarks.studies.alarm import plan
from benchmarks.studies.alarm.replay import RunResult
from benchmarks.studies.rescue.verdicts import clopper_pearson

PASS = "pass"


@dataclass
class Row:
    """One candidate on one set of runs, against both outcomes."""

    candidate: str
    role: str
    confidence: float
    collapsed: int
    detected: int
    sensitivity_lower: float
    leads: List[int]
    median_lead: Optional[float]
    healthy: int
    false_alarms: int
    false_alarm_upper: float
    below: str  # alarms / runs whose backbone kNN ended below (second outcome)
    not_below: str
    verdict: str


def evaluate(
    results: Sequence[RunResult],
    candidate: plan.Candidate,
    role: str = "all",
    confidence: float = plan.CONFIDENCE,
) -> Row:
    """The candidate's row on the runs of its family (diverged runs left out; for
    a role, the runs with a head of that role). Only ``all`` rows are verdicts."""
    runs = [r for r in results if r.family == candidate.family and not r.diverged]
    runs = [r for r in runs if role == "all" or role in plan.HEADS[r.method].values()]
    alarm = {r.run_id: r.alarms[candidate.name][role] for r in runs}
    positives = [r for r in runs if r.collapsed]
    negatives = [r for r in runs if not r.collapsed]
    leads = []
    for r in positives:
        step = alarm[r.run_id]
        if step is not None and r.first_met is not None:
            leads.append(r.first_met - step)
    false = sum(alarm[r.run_id] is not None for r in negatives)
    low = clopper_pearson(len(leads), len(positives), confidence)[0] if positives else 0
    high = clopper_pearson(false, len(negatives), confidence)[1] if negatives else 1
    median = float(statistics.median(leads)) if leads else None

    def share(below: bool) -> str:
        group = [r for r in runs if r.knn_below is below]
        return f"{sum(alarm[r.run_id] is not None for r in group)}/{len(group)}"

    if not positives or not negatives:
        verdict = "not testable: no run " + (
            "with head collapse" if not positives else "without head collapse"
        )
    else:
        failed = [
            name
            for name, ok in (
                ("sensitivity", low >= plan.SENSITIVITY_LOWER),
                ("lead time", median is not None and median >= plan.LEAD_STEPS),
                ("false alarms", high <= plan.FALSE_ALARM_UPPER),
            )
            if not ok
        ]
        verdict = PASS if not failed else "fail: " + ", ".join(failed)
    verdict = verdict if role == "all" else f"({verdict}; not a verdict)"
    return Row(candidate.name, role, confidence, len(positives), len(leads), low,
               sorted(leads), median, len(negatives), false, high, share(True),
               share(False), verdict)  # fmt: skip


def family_rows(results: Sequence[RunResult], family: str) -> List[Row]:
    """Every candidate of the family on every role, each at its registered level."""
    candidates = [c for c in plan.CANDIDATES if c.family == family]
    alternatives = sum(not c.primary for c in candidates)
    rows = []
    for c in candidates:
        alpha = 1.0 - plan.CONFIDENCE
        level = plan.CONFIDENCE if c.primary else 1.0 - alpha / alternatives
        rows += [
            evaluate(results, c, role, level) for role in ("all", "student", "teacher")
        ]
    return rows


def shipped(rows: Sequence[Row], family: str) -> str:
    """What the family ships: the primary if it passes, else the first alternative
    that passes at its level, else the primary marked not validated."""
    verdicts = {r.candidate: r.verdict for r in rows if r.role == "all"}
    candidates = [c for c in plan.CANDIDATES if c.family == family]
    candidates.sort(key=lambda c: not c.primary)
    for c in candidates:
        if verdicts.get(c.name) == PASS:
            return f"{c.name} ({c.rule.metric} < {c.rule.threshold:g}): validated"
    c = candidates[0]
    return f"{c.name} ({c.rule.metric} < {c.rule.threshold:g}): not validated"


def quality(results: Sequence[RunResult], method: str) -> Dict[str, Any]:
    """The score chosen on the method's even seeds, tested on its odd seeds."""
    runs = [r for r in results if r.method == method and not r.diverged]
    choose = [r for r in runs if r.seed % 2 == 0]
    held = [r for r in runs if r.seed % 2 == 1]
    table: Dict[str, Dict[str, float]] = {}
    for score in plan.QUALITY_SCORES:
        row = {}
        for name, group in (("choose", choose), ("held", held)):
            ok = [r for r in group if not math.isnan(r.scores.get(score, math.nan))]
            rho, p = math.nan, math.nan
            if len(ok) >= 3 and len({r.scores[score] for r in ok}) > 1:
                x, y = [r.scores[score] for r in ok], [r.final_knn for r in ok]
                rho, p = spearmanr(x, y, alternative="greater")
            row[f"rho_{name}"], row[f"n_{name}"] = float(rho), float(len(ok))
            if name == "held" and ok:
                best = max(ok, key=lambda r: r.scores[score])
                row["regret"] = max(r.final_knn for r in ok) - best.final_knn
                row["p"] = float(p)
        table[score] = row
    ranked = [s for s in table if not math.isnan(table[s]["rho_choose"])]
    chosen = max(ranked, key=lambda s: table[s]["rho_choose"], default=None)
    verdict = "none works"
    if chosen is not None:
        held_row = table[chosen]
        if (
            held_row.get("p", 1.0) < 0.05
            and held_row.get("regret", 1.0) <= plan.REGRET_MAX
        ):
            verdict = f"recommend {chosen}"
    return {"method": method, "chosen": chosen, "verdict": verdict, "scores": table}
