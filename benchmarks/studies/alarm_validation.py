"""Validates the monitor's alarm rules on collapse corpora, held-out methods included.

Reads any collapse corpus in the format of the mechanism study's pre-registration
(``benchmarks/studies/mechanism_preregistration.md``, "Collapse corpus: format",
version 1: ``index.json`` and one ``<run_id>.npz`` per finished run; a run listed
before its file exists is left for the next invocation), measures every head of
every snapshot with the functions :class:`lightly_er.monitoring.EntropyMeter` calls
for the candidate scores, and per family of heads

- **embeddings** (what the monitor watches on the sphere: ``backbone``,
  ``projection``, ``prediction`` and the teachers' ``target_*``/``teacher_backbone``;
  not DINO's bottleneck, which the monitor sees through the head's scores) and
- **prototypes** (``student_logits``, ``teacher_logits`` at the teacher temperature
  after the center where the loss centers, ``prototype_scores``)

reports, in one Markdown report:

1. the corpus: runs per method and label;
2. the AUROC of each candidate score, collapsed against healthy, per snapshot (a
   snapshot's value: the lowest over the family's heads) and per run (its lowest
   value), on all methods and on the held-out ones;
3. the shipped :data:`lightly_er.monitoring.DEFAULT_RULES` replayed on every method:
   false alarms (``learned`` runs on which it fires), alarms on ``no gain`` runs,
   collapses caught and lead times (``first_below_step`` minus the alarm's step;
   positive: before the kNN fell below the untrained network);
4. the same for rules fitted on some methods (:data:`SPLIT`, declared before
   fitting) and tested on the others: the family's default metric, the threshold
   :data:`benchmarks.studies.alarm_stats.MARGIN` times the lowest healthy value of
   the fit methods (the corpora have no collapsed run of those methods to place a
   threshold against);
5. the same fit and split for the embedding rule on backbones only
   (:data:`BACKBONE_KEYS`, a candidate);
6. every candidate score fitted on the declared split and on the reversed one
   (:data:`REVERSED`).

The alarm is the monitor's: checks every ``--every-n-steps`` steps, ``--patience``
consecutive flagged checks per module
(:class:`lightly_er.monitoring.rules.AlarmTracker`, the code the callback runs), each
check reading the latest snapshot at or before it. Where the corpus keeps the
monitor's own history of the training run (``monitor/<run_id>/entropy_monitor.csv``,
written by ``alarm_corpus.py``), the rule is also replayed on what the monitor
measured on the training batches. The statistics are in ``alarm_stats.py``.

    python benchmarks/studies/alarm_validation.py /work/runs/mechanism/corpus \
        /work/corpus_mon/corpus --out runs/alarm_validation \
        --report benchmarks/studies/alarm_validation.md

Rerun on a grown corpus, it measures only the new runs (``--out``'s cache).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch

from benchmarks.common.tables import markdown_table
from benchmarks.studies.alarm_stats import (
    MARGIN,
    auroc,
    healthy_threshold,
    held_out_split,
    lead_time,
    lowest,
    snapshot_labels,
)
from lightly_er import functional
from lightly_er.monitoring import DEFAULT_RULES, AlarmRule, EntropyMeter
from lightly_er.monitoring.rules import (
    DEFAULT_EVERY_N_STEPS,
    DEFAULT_PATIENCE,
    AlarmTracker,
)
from lightly_er.utils.io import write_atomic

FORMAT, VERSION = "lightly-er collapse corpus", 1
FAMILIES: Tuple[str, ...] = ("sphere", "discrete")
FAMILY_NAMES = {"sphere": "embeddings", "discrete": "prototypes"}
LABELS: Tuple[str, ...] = ("collapsed", "learned", "no gain")
CANDIDATES: Dict[str, Tuple[str, ...]] = {
    "sphere": ("dimension_score", "collapse_score"),
    "discrete": ("normalized_mutual_information", "normalized_entropy"),
}
"""The metrics a family's rule may read, in order of preference on ties."""

SPLIT: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "sphere": (("byol", "simsiam", "simclr"), ("dino", "swav")),
    "discrete": (("swav",), ("dino",)),
}
"""Declared before fitting: (fit methods, held-out methods) per family. DINO, the
one method with collapsed runs in the corpora, is held out in both."""

REVERSED: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "sphere": (("dino", "swav"), ("byol", "simsiam", "simclr")),
    "discrete": (("dino",), ("swav",)),
}
"""The split the other way round, declared on 2026-12-02 before the 1,000-step alarm
corpus's diagnostics were read (after its first SwAV collapse was seen in a kNN
label): every candidate score of :data:`CANDIDATES` is fitted on both splits."""

BACKBONE_KEYS = ("backbone", "target_backbone", "teacher_backbone")
BACKBONE_MODULES = ("backbone", "backbone_momentum", "teacher_backbone")
"""The candidate declared on 2026-12-02 before the 1,000-step alarm corpus was read:
the embedding rule on backbones only (the representation a user keeps), fitted and
held out as :data:`SPLIT` declares. Healthy projection and prediction heads of BYOL
and SimSiam read low dimension scores, which a backbone rule does not see."""

# key -> (support, role, the module the monitor would call it)
SPHERE_KEYS = {
    "backbone": ("student", "backbone"),
    "projection": ("student", "projection_head"),
    "prediction": ("student", "prediction_head"),
    "target_backbone": ("teacher", "backbone_momentum"),
    "target_projection": ("teacher", "projection_head_momentum"),
    "teacher_backbone": ("teacher", "teacher_backbone"),
}
DISCRETE_KEYS = {
    "student_logits": ("student", "head"),
    "teacher_logits": ("teacher", "teacher_head"),
    "prototype_scores": ("student", "prototypes"),
}
NEEDED = ("step", "knn_top1", "center")
ALL_KEYS = (*SPHERE_KEYS, *DISCRETE_KEYS)
RESOLUTION = EntropyMeter("sphere").resolution
"""The meter's default collapse resolution, which the monitor uses."""

MONITOR_MODULES = {
    "sphere": {
        "backbone",
        "projection_head",
        "prediction_head",
        "backbone_momentum",
        "projection_head_momentum",
        "teacher_backbone",
    },
    "discrete": {"head", "teacher_head", "prototypes"},
}


@dataclass
class Run:
    """One run of the corpus and its diagnostics per family, metric and snapshot."""

    entry: Dict[str, Any]
    steps: List[int]
    knn: List[float]
    # family -> metric -> [value per snapshot] (the lowest over the family's heads)
    values: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    # family -> metric -> head -> [value per snapshot]
    heads: Dict[str, Dict[str, Dict[str, List[float]]]] = field(default_factory=dict)
    # family -> metric -> [(step, module, value)] from the monitor's own history
    monitor: Dict[str, Dict[str, List[Tuple[int, str, float]]]] = field(
        default_factory=dict
    )

    @property
    def run_id(self) -> str:
        return str(self.entry["run_id"])

    @property
    def method(self) -> str:
        return str(self.entry["method"])

    @property
    def label(self) -> str:
        return str(self.entry["label"])

    @property
    def first_below(self) -> Optional[int]:
        value = self.entry.get("first_below_step")
        return None if value is None else int(value)


def lowest_over_heads(
    heads: Mapping[str, Mapping[str, Mapping[str, List[float]]]],
) -> Dict[str, Dict[str, List[float]]]:
    """family -> metric -> the lowest value over the family's heads per snapshot."""
    return {
        family: {
            metric: [lowest(values) for values in zip(*by_head.values())]  # noqa: B905
            for metric, by_head in by_metric.items()
        }
        for family, by_metric in heads.items()
    }


def restrict(
    run: Run, family: str, keys: Sequence[str], modules: Sequence[str] = ()
) -> Run:
    """A copy of the run whose family reads only the heads in keys and, in the
    monitor's history, only the modules in modules."""
    heads = {
        metric: {k: v for k, v in by_head.items() if k in keys}
        for metric, by_head in run.heads.get(family, {}).items()
    }
    heads = {metric: by_head for metric, by_head in heads.items() if by_head}
    out = Run(run.entry, run.steps, run.knn)
    out.heads = {family: heads} if heads else {}
    out.values = lowest_over_heads(out.heads)
    history = {
        metric: [row for row in rows if row[1] in modules]
        for metric, rows in run.monitor.get(family, {}).items()
    }
    history = {metric: rows for metric, rows in history.items() if rows}
    out.monitor = {family: history} if history else {}
    return out


# -- reading ---------------------------------------------------------------------------
def read_corpus(
    directory: Path,
    images: Optional[int] = None,
    log: Any = None,
    cache: Optional[Path] = None,
) -> List[Run]:
    """Every finished run of the corpus, measured snapshot by snapshot.

    The index is read once; a run whose file is not there yet (a corpus still being
    written) is left for the next invocation. With ``cache``, each run's
    measurements are kept in ``cache/<run_id>.json`` (keyed by the file's size and
    ``images``), so a rerun on a grown corpus measures only the new runs.

    Raises:
        ValueError: If the directory holds no corpus of this format and version.
    """
    path = directory / "index.json"
    if not path.is_file():
        raise ValueError(f"{directory} holds no index.json (not a collapse corpus)")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(
            f"{path}: expected format {FORMAT!r} version {VERSION}, got "
            f"{index.get('format')!r} version {index.get('version')!r}"
        )
    runs = []
    for entry in index["runs"]:
        file = directory / entry["file"]
        if not file.is_file():
            continue
        key = {"file_size": file.stat().st_size, "images": images}
        cached = cache / f"{entry['run_id']}.json" if cache is not None else None
        stored = json.loads(cached.read_text()) if cached and cached.is_file() else {}
        if stored.get("key") == key:
            steps, knn, heads = stored["steps"], stored["knn"], stored["heads"]
        else:
            with np.load(file) as npz:
                arrays = {k: npz[k] for k in npz.files if k in NEEDED + ALL_KEYS}
            steps, knn = arrays["step"].tolist(), arrays["knn_top1"].tolist()
            heads = measure(arrays, entry, images)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                record = {"key": key, "steps": steps, "knn": knn, "heads": heads}
                write_atomic(cached, json.dumps(record) + "\n")
        run = Run(entry, steps, knn)
        run.heads = heads
        run.values = lowest_over_heads(heads)
        history = (entry.get("monitor") or {}).get("history")
        if history and (directory / history).is_file():
            run.monitor = monitor_history(directory / history)
        runs.append(run)
        if log is not None:
            log(f"read {run.run_id} ({run.label})")
    return runs


def measure(
    arrays: Mapping[str, np.ndarray], entry: Mapping[str, Any], images: Optional[int]
) -> Dict[str, Dict[str, Dict[str, List[float]]]]:
    """family -> metric -> head -> its value at every snapshot."""
    loss = entry.get("loss") or {}
    out: Dict[str, Dict[str, Dict[str, List[float]]]] = {}

    def keep(family: str, key: str, series: Dict[str, List[float]]) -> None:
        for metric in CANDIDATES[family]:
            out.setdefault(family, {}).setdefault(metric, {})[key] = series[metric]

    for key in SPHERE_KEYS:
        # DINO's bottleneck is inside the head: the monitor sees the head's scores.
        if key in arrays and not (key == "projection" and entry["method"] == "dino"):
            keep("sphere", key, _series("sphere", arrays[key], images))
    for key in DISCRETE_KEYS:
        if key not in arrays:
            continue
        x = arrays[key]
        if key == "teacher_logits":
            temperature = loss.get("teacher_temp") or 0.04
            if loss.get("centering") and "center" in arrays:
                x = x.astype(np.float32) - arrays["center"][:, None, :]
        elif key == "student_logits":
            temperature = loss.get("student_temp") or 0.1
        else:
            temperature = loss.get("temperature") or 0.1
        keep("discrete", key, _series("discrete", x, images, float(temperature)))
    return out


def _series(
    family: str, x: np.ndarray, images: Optional[int], temperature: float = 0.1
) -> Dict[str, List[float]]:
    """The family's candidate metrics at every snapshot of x (T, N, D).

    The functions and settings :class:`EntropyMeter` uses for these metrics
    (``tests/benchmarks/studies/test_alarm_validation.py`` holds them equal), without
    the meter's other metrics, which this study does not read. A snapshot with a
    value that is not finite reads NaN (the family's value is then the other heads').
    """
    series: Dict[str, List[float]] = {metric: [] for metric in CANDIDATES[family]}
    for snapshot in x:
        rows = torch.from_numpy(np.asarray(snapshot[:images], dtype=np.float32))
        if not torch.isfinite(rows).all():  # a diverged head: no reading, not an error
            for metric in series:
                series[metric].append(math.nan)
            continue
        for metric, value in candidate_metrics(family, rows, temperature).items():
            series[metric].append(value)
    return series


def candidate_metrics(
    family: str, x: torch.Tensor, temperature: float
) -> Dict[str, float]:
    """dimension and collapse score (embeddings) or NMI and H / log K (prototypes)."""
    if family == "sphere":
        z = torch.nn.functional.normalize(x, dim=1)
        return {
            "dimension_score": float(functional.dimension_score(z, RESOLUTION)),
            "collapse_score": float(functional.collapse_score(z, RESOLUTION)),
        }
    p = torch.softmax(x / temperature, dim=1)
    log_k = math.log(x.shape[1])
    entropy = functional.discrete_entropy(p, validate=False)
    information = (
        entropy - functional.conditional_entropy(p, validate=False)
    ).clamp_min(0.0)
    return {
        "normalized_mutual_information": float((information / log_k).clamp(0.0, 1.0)),
        "normalized_entropy": float((entropy / log_k).clamp(0.0, 1.0)),
    }


def monitor_history(path: Path) -> Dict[str, Dict[str, List[Tuple[int, str, float]]]]:
    """The monitor's CSV as family -> metric -> [(step, module, value)]."""
    out: Dict[str, Dict[str, List[Tuple[int, str, float]]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for family, modules in MONITOR_MODULES.items():
                if row["module"] in modules and row["metric"] in CANDIDATES[family]:
                    out.setdefault(family, {}).setdefault(row["metric"], []).append(
                        (int(row["step"]), row["module"], float(row["value"]))
                    )
    return out


def _slug(corpus: Path) -> str:
    return "_".join(corpus.resolve().parts[1:])


# -- statistics ------------------------------------------------------------------------
def snapshot_classes(
    runs: Iterable[Run], family: str, metric: str
) -> Tuple[List[float], List[float]]:
    """(collapsed snapshots' values, healthy snapshots' values); see alarm_stats."""
    positives: List[float] = []
    negatives: List[float] = []
    for run in runs:
        values = run.values.get(family, {}).get(metric)
        if values is None:
            continue
        labels = snapshot_labels(run.steps, run.label, run.first_below)
        for collapsed, value in zip(labels, values):  # noqa: B905
            if math.isnan(value):  # no head of the family read a number
                continue
            if collapsed is True:
                positives.append(value)
            elif collapsed is False:
                negatives.append(value)
    return positives, negatives


def run_auroc(runs: Sequence[Run], family: str, metric: str) -> float:
    """Collapsed against learned runs, each scored by its lowest value."""
    by_run = {
        r.run_id: lowest(r.values[family][metric])
        for r in runs
        if metric in r.values.get(family, {})
    }
    by_run = {k: v for k, v in by_run.items() if not math.isnan(v)}
    return auroc(
        [
            v
            for r in runs
            if r.label == "collapsed"
            for v in [by_run.get(r.run_id)]
            if v is not None
        ],
        [
            v
            for r in runs
            if r.label == "learned"
            for v in [by_run.get(r.run_id)]
            if v is not None
        ],
    )


@dataclass(frozen=True)
class Fit:
    """A family's fitted rule: the declared metric at MARGIN x the lowest healthy value."""

    family: str
    metric: str
    threshold: float
    fit_methods: Tuple[str, ...]
    lowest_healthy: float
    fit_auroc: float


def fit(
    runs: Sequence[Run],
    family: str,
    methods: Sequence[str],
    metric: Optional[str] = None,
) -> Optional[Fit]:
    """The declared fitting procedure on the runs of the given methods.

    The metric is the shipped default rule's for the family unless given (declared,
    not chosen on the data); the threshold :data:`alarm_stats.MARGIN` times the
    lowest healthy snapshot value of the fit methods. None if they have no healthy
    snapshot.
    """
    if metric is None:
        metric = next(r.metric for r in DEFAULT_RULES if r.support == family)
    chosen = [r for r in runs if r.method in methods and family in r.values]
    positives, negatives = snapshot_classes(chosen, family, metric)
    if not negatives:
        return None
    return Fit(
        family,
        metric,
        healthy_threshold(negatives),
        tuple(methods),
        min(negatives),
        auroc(positives, negatives),
    )


def lowest_peak_ratio(run: Run, family: str, metric: str) -> Optional[float]:
    """The lowest value / running peak of the metric over the run's heads, or None.

    The candidate of a rule relative to each module's own history: at every
    snapshot each head's value is divided by the highest value that head has shown
    so far (step 0 included).
    """
    ratios = []
    for series in run.heads.get(family, {}).get(metric, {}).values():
        peak = -math.inf
        for value in series:
            if math.isnan(value):
                continue
            peak = max(peak, value)
            if peak > 0:
                ratios.append(value / peak)
    return min(ratios) if ratios else None


def _peak_ratios(
    runs: Sequence[Run],
    family: str,
    metric: str,
    label: str,
    methods: Optional[Sequence[str]],
) -> List[float]:
    """lowest_peak_ratio of every run with this label (and of these methods)."""
    return [
        v
        for r in runs
        if r.label == label and (methods is None or r.method in methods)
        for v in [lowest_peak_ratio(r, family, metric)]
        if v is not None
    ]


def peak_ratio_rows(
    runs: Sequence[Run], split: Mapping[str, Tuple[Sequence[str], Sequence[str]]]
) -> List[Tuple[str, ...]]:
    """Per family and candidate metric: the lowest peak ratio of the fit methods'
    learned runs, the fraction MARGIN x that, the collapsed runs' ratios, and how
    many collapsed and held-out learned runs fall below the fraction."""
    rows: List[Tuple[str, ...]] = []
    for family, (fit_methods, held_out) in split.items():
        for metric in CANDIDATES[family]:
            healthy = _peak_ratios(runs, family, metric, "learned", fit_methods)
            collapsed = _peak_ratios(runs, family, metric, "collapsed", None)
            held_healthy = _peak_ratios(runs, family, metric, "learned", held_out)
            if not healthy:
                continue
            fraction = MARGIN * min(healthy)
            rows.append(
                (
                    FAMILY_NAMES[family],
                    metric,
                    ", ".join(fit_methods),
                    f"{min(healthy):.2f} ({len(healthy)} runs)",
                    f"{fraction:.2f}",
                    ", ".join(f"{v:.2f}" for v in sorted(collapsed)) or "-",
                    f"{sum(v < fraction for v in collapsed)}/{len(collapsed)}",
                    f"{sum(v < fraction for v in held_healthy)}/{len(held_healthy)}",
                )
            )
    return rows


# -- the monitor's alarm, replayed -----------------------------------------------------
def alarm_step(run: Run, rule: AlarmRule, every: int, patience: int) -> Optional[int]:
    """The step of the monitor's first alarm on the run's snapshots, or None.

    Checks at 0, every, 2 every, ... up to the last snapshot, each reading every
    head's latest snapshot at or before it; a streak per head, as the monitor keeps
    one per module.
    """
    heads = run.heads.get(rule.support, {}).get(rule.metric)
    if not heads:
        return None
    tracker = AlarmTracker([rule], patience)
    for check in range(0, run.steps[-1] + 1, every):
        t = max(i for i, s in enumerate(run.steps) if s <= check)
        for head, values in heads.items():
            role = "teacher" if head.startswith(("target_", "teacher_")) else "student"
            if tracker.check(head, rule.support, role, {rule.metric: values[t]}):
                return check
    return None


def monitor_alarm_step(run: Run, rule: AlarmRule, patience: int) -> Optional[int]:
    """The first alarm of the rule on the monitor's own history of the run, or None."""
    rows = run.monitor.get(rule.support, {}).get(rule.metric)
    if not rows:
        return None
    tracker = AlarmTracker([rule], patience)
    for step, module, value in sorted(rows):
        role = (
            "teacher"
            if module
            in {
                "backbone_momentum",
                "projection_head_momentum",
                "teacher_backbone",
                "teacher_head",
            }
            else "student"
        )
        if tracker.check(module, rule.support, role, {rule.metric: value}):
            return step
    return None


@dataclass
class Outcome:
    """A rule on a group of runs."""

    methods: str
    held_out: bool
    runs: Dict[str, int]
    snapshot_auroc: float
    run_auroc: float
    false_alarms: int
    learned: int
    alarms_no_gain: int
    caught: int
    collapsed: int
    lead_times: List[Optional[int]]
    monitor_false_alarms: Optional[int] = None
    monitor_learned: Optional[int] = None
    monitor_caught: Optional[int] = None
    monitor_collapsed: Optional[int] = None
    monitor_lead_times: List[Optional[int]] = field(default_factory=list)


def evaluate(
    runs: Sequence[Run],
    rule: AlarmRule,
    every: int,
    patience: int,
    held_out: bool,
    methods: str,
) -> Outcome:
    family = rule.support
    group = [r for r in runs if family in r.values]
    positives, negatives = snapshot_classes(group, family, rule.metric)
    counts = {
        label: sum(r.label == label for r in group)
        for label in ("collapsed", "learned", "no gain")
    }
    steps = {r.run_id: alarm_step(r, rule, every, patience) for r in group}
    leads = [
        lead_time(r.first_below, steps[r.run_id])
        for r in group
        if r.label == "collapsed"
    ]
    outcome = Outcome(
        methods,
        held_out,
        counts,
        auroc(positives, negatives),
        run_auroc(group, family, rule.metric),
        sum(steps[r.run_id] is not None for r in group if r.label == "learned"),
        counts["learned"],
        sum(steps[r.run_id] is not None for r in group if r.label == "no gain"),
        sum(steps[r.run_id] is not None for r in group if r.label == "collapsed"),
        counts["collapsed"],
        leads,
    )
    with_history = [r for r in group if r.monitor]
    if with_history:
        mon = {r.run_id: monitor_alarm_step(r, rule, patience) for r in with_history}
        outcome.monitor_false_alarms = sum(
            mon[r.run_id] is not None for r in with_history if r.label == "learned"
        )
        outcome.monitor_learned = sum(r.label == "learned" for r in with_history)
        outcome.monitor_caught = sum(
            mon[r.run_id] is not None for r in with_history if r.label == "collapsed"
        )
        outcome.monitor_collapsed = sum(r.label == "collapsed" for r in with_history)
        outcome.monitor_lead_times = [
            lead_time(r.first_below, mon[r.run_id])
            for r in with_history
            if r.label == "collapsed"
        ]
    return outcome


def alarms_fired(
    runs: Sequence[Run], rules: Sequence[AlarmRule], every: int, patience: int
) -> List[Dict[str, Any]]:
    """Every alarm a rule raises on a run (snapshots; and the monitor's history)."""
    fired = []
    for run in runs:
        for rule in rules:
            if rule.support not in run.values:
                continue
            step = alarm_step(run, rule, every, patience)
            monitor = monitor_alarm_step(run, rule, patience) if run.monitor else None
            if step is None and monitor is None:
                continue
            fired.append(
                {
                    "run_id": run.run_id,
                    "label": run.label,
                    "family": FAMILY_NAMES[rule.support],
                    "metric": rule.metric,
                    "step": step,
                    "monitor_step": monitor,
                    "first_below_step": run.first_below,
                    "lead": lead_time(run.first_below, step),
                    "monitor_lead": lead_time(run.first_below, monitor),
                }
            )
    return fired


def split_groups(
    fit_methods: Sequence[str], held: Sequence[str]
) -> List[Tuple[str, bool]]:
    """(method, held out?) for the fit methods, then the held-out ones."""
    return [(m, False) for m in fit_methods] + [(m, True) for m in held]


def candidate_fits(
    runs: Sequence[Run],
    present: Mapping[str, Sequence[str]],
    every: int,
    patience: int,
) -> Tuple[List[str], List[Tuple[str, ...]], List[Dict[str, Any]]]:
    """Every candidate score fitted on both splits (:data:`SPLIT`, :data:`REVERSED`).

    Returns the fits as report lines, the outcome rows and their records.
    """
    lines: List[str] = []
    rows: List[Tuple[str, ...]] = []
    records: List[Dict[str, Any]] = []
    for name, split in (("declared", SPLIT), ("reversed", REVERSED)):
        for family in FAMILIES:
            fit_methods, held = held_out_split(present[family], *split[family])
            if not fit_methods or not held:
                continue
            for metric in CANDIDATES[family]:
                found = fit(runs, family, fit_methods, metric)
                if found is None:
                    continue
                rule = AlarmRule(metric, float(f"{found.threshold:.4g}"), family)
                new_rows, new_records = evaluate_rules(
                    runs,
                    {family: rule},
                    {family: split_groups(fit_methods, held)},
                    every,
                    patience,
                )
                lines.append(
                    f"- {name} split, {FAMILY_NAMES[family]}: {metric} < "
                    f"{rule.threshold:.4g} = {MARGIN} x the lowest healthy value "
                    f"({found.lowest_healthy:.4g}) of {', '.join(fit_methods)}"
                )
                rows += new_rows
                records += [dict(r, split=name) for r in new_records]
    return lines, rows, records


# -- report ----------------------------------------------------------------------------
def _leads(leads: Sequence[Optional[int]]) -> str:
    if not leads:
        return "-"
    return ", ".join("missed" if lead is None else f"{lead:+d}" for lead in leads)


def _number(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def outcome_rows(
    family: str, rule: AlarmRule, outcomes: Sequence[Outcome]
) -> List[Tuple[str, ...]]:
    rows: List[Tuple[str, ...]] = []
    for o in outcomes:
        monitor = (
            "-"
            if o.monitor_false_alarms is None
            else f"{o.monitor_false_alarms}/{o.monitor_learned}; "
            f"{o.monitor_caught}/{o.monitor_collapsed}; "
            f"{_leads(o.monitor_lead_times)}"
        )
        rows.append(
            (
                FAMILY_NAMES[family],
                f"{rule.metric} < {rule.threshold:.3g}",
                o.methods + ("" if o.held_out else " (fit)"),
                f"{o.runs['collapsed']}/{o.runs['learned']}/{o.runs['no gain']}",
                _number(o.snapshot_auroc),
                _number(o.run_auroc),
                f"{o.false_alarms}/{o.learned}",
                f"{o.alarms_no_gain}/{o.runs['no gain']}",
                f"{o.caught}/{o.collapsed}",
                _leads(o.lead_times),
                monitor,
            )
        )
    return rows


COLUMNS = (
    "Family",
    "Rule",
    "Methods",
    "Runs (collapsed/learned/no gain)",
    "AUROC (snapshots)",
    "AUROC (runs)",
    "False alarms (learned)",
    "Alarms (no gain)",
    "Collapses caught",
    "Lead time (steps)",
    "Monitor in training (runs with its history): false alarms; caught; lead",
)


def corpus_counts(runs: Sequence[Run]) -> List[Tuple[str, ...]]:
    """Rows (method, collapsed, learned, no gain, runs) of the corpus, and a total."""
    rows: List[Tuple[str, ...]] = []
    for method in sorted({r.method for r in runs}) + ["all"]:
        group = [r for r in runs if method in ("all", r.method)]
        counts = [sum(r.label == label for r in group) for label in LABELS]
        rows.append((method, *map(str, counts), str(len(group))))
    return rows


def auroc_rows(
    runs: Sequence[Run], held: Mapping[str, Sequence[str]]
) -> List[Tuple[str, ...]]:
    """AUROC of every candidate score, on all runs and on the held-out methods."""
    rows: List[Tuple[str, ...]] = []
    for family in FAMILIES:
        for metric in CANDIDATES[family]:
            groups = {"all methods": [r for r in runs if family in r.values]}
            groups["held out: " + ", ".join(held[family])] = [
                r for r in groups["all methods"] if r.method in held[family]
            ]
            for name, group in groups.items():
                positives, negatives = snapshot_classes(group, family, metric)
                rows.append(
                    (
                        FAMILY_NAMES[family],
                        metric,
                        name,
                        f"{len(positives)}/{len(negatives)}",
                        _number(auroc(positives, negatives)),
                        _number(run_auroc(group, family, metric)),
                    )
                )
    return rows


def evaluate_rules(
    runs: Sequence[Run],
    rules: Mapping[str, AlarmRule],
    groups: Mapping[str, Sequence[Tuple[str, bool]]],
    every: int,
    patience: int,
    combined: str = "held out",
) -> Tuple[List[Tuple[str, ...]], List[Dict[str, Any]]]:
    """Outcome rows and records of each family's rule on its method groups."""
    rows: List[Tuple[str, ...]] = []
    records: List[Dict[str, Any]] = []
    for family, rule in rules.items():
        outcomes = [
            evaluate([r for r in runs if r.method == m], rule, every, patience, h, m)
            for m, h in groups[family]
        ]
        held = [m for m, h in groups[family] if h]
        if len(held) > 1:
            group = [r for r in runs if r.method in held]
            outcomes.append(evaluate(group, rule, every, patience, True, combined))
        rows += outcome_rows(family, rule, outcomes)
        records += [dict(asdict(o), rule=asdict(rule)) for o in outcomes]
    return rows, records


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "corpus", type=Path, nargs="+", help="corpus folders (each with index.json)"
    )
    parser.add_argument(
        "--note",
        default="",
        help="appended to the machine in the report, e.g. ' (beside a study)'",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="cache and JSON results here"
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="write the Markdown report here"
    )
    parser.add_argument("--every-n-steps", type=int, default=DEFAULT_EVERY_N_STEPS)
    parser.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    parser.add_argument(
        "--images",
        type=int,
        default=128,
        help="the first held-out images (default 128: the corpora's training batch "
        "size, which the monitor measures)",
    )
    args = parser.parse_args(argv)
    # One thread: the measurements are small, and the machine is shared.
    torch.set_num_threads(1)
    runs = [
        run
        for corpus in args.corpus
        for run in read_corpus(
            corpus,
            args.images,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            cache=None if args.out is None else args.out / "cache" / _slug(corpus),
        )
    ]
    methods = sorted({r.method for r in runs})
    present = {
        family: [
            m
            for m in methods
            if any(r.method == m and family in r.values for r in runs)
        ]
        for family in FAMILIES
    }
    shipped = {
        f: next(r for r in DEFAULT_RULES if r.support == f)
        for f in FAMILIES
        if present[f]
    }
    shipped_rows, shipped_records = evaluate_rules(
        runs,
        shipped,
        {f: [(m, True) for m in present[f]] for f in shipped},
        args.every_n_steps,
        args.patience,
        combined="all methods",
    )
    fitted: Dict[str, AlarmRule] = {}
    groups: Dict[str, List[Tuple[str, bool]]] = {}
    fits: List[Fit] = []
    held_names: Dict[str, List[str]] = {}
    for family in FAMILIES:
        fit_methods, held = held_out_split(present[family], *SPLIT[family])
        held_names[family] = held
        found = fit(runs, family, fit_methods) if fit_methods else None
        if found is None or not held:
            continue
        fits.append(found)
        fitted[family] = AlarmRule(found.metric, round(found.threshold, 4), family)
        groups[family] = split_groups(fit_methods, held)
    fitted_rows, fitted_records = evaluate_rules(
        runs, fitted, groups, args.every_n_steps, args.patience
    )
    backbones = [restrict(r, "sphere", BACKBONE_KEYS, BACKBONE_MODULES) for r in runs]
    backbones = [r for r in backbones if "sphere" in r.values]
    fit_methods, held = held_out_split(present["sphere"], *SPLIT["sphere"])
    backbone_fit = fit(backbones, "sphere", fit_methods) if fit_methods else None
    backbone_rows: List[Tuple[str, ...]] = []
    backbone_records: List[Dict[str, Any]] = []
    if backbone_fit is not None and held:
        backbone_rows, backbone_records = evaluate_rules(
            backbones,
            {
                "sphere": AlarmRule(
                    backbone_fit.metric, round(backbone_fit.threshold, 4), "sphere"
                )
            },
            {"sphere": split_groups(fit_methods, held)},
            args.every_n_steps,
            args.patience,
        )
    candidate_lines, candidate_rows, candidate_records = candidate_fits(
        runs, present, args.every_n_steps, args.patience
    )
    fired = alarms_fired(
        runs, list(shipped.values()), args.every_n_steps, args.patience
    )
    collapsed = [r for r in runs if r.label == "collapsed"]
    command = "python benchmarks/studies/alarm_validation.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    text = "\n".join(
        [
            "# Alarm validation",
            "",
            f"`{command}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, this "
            f"project's 2-core CPU machine, no GPU{args.note}. "
            f"Checks every {args.every_n_steps} steps, patience {args.patience}, the "
            f"first {args.images} held-out images of each snapshot.",
            "",
            "## Corpus",
            "",
            ", ".join(f"`{c}`" for c in args.corpus) + ": the finished runs, by label "
            "(collapsed: final kNN below the untrained network by more than 0.05; "
            "learned: at least 0.02 above; no gain: between).",
            "",
            markdown_table(
                ("Method", "Collapsed", "Learned", "No gain", "Runs"),
                corpus_counts(runs),
                "lrrrr",
            ),
            "## AUROC of each score (collapsed against healthy)",
            "",
            "Snapshots: every snapshot of a collapsed run from its first_below_step on "
            "against every snapshot of a learned run and every step-0 snapshot (the "
            "lowest value over the family's heads). Runs: collapsed against learned "
            "runs, each by its lowest value. Counts: collapsed/healthy snapshots.",
            "",
            markdown_table(
                (
                    "Family",
                    "Score",
                    "Methods",
                    "Snapshots (c/h)",
                    "AUROC (snapshots)",
                    "AUROC (runs)",
                ),
                auroc_rows(runs, held_names),
                "lllrrr",
            ),
            "## The shipped rules (DEFAULT_RULES) on every method",
            "",
            "Replayed on the snapshots and, where the corpus keeps it, on the "
            "monitor's own history of the training run (the last column).",
            "",
            markdown_table(COLUMNS, shipped_rows, "lllrrrrrrll"),
            "## Fitted on some methods, tested on the others",
            "",
            *(
                f"- {FAMILY_NAMES[f.family]}: {f.metric} < {f.threshold:.4g} = "
                f"{MARGIN} x the lowest healthy value ({f.lowest_healthy:.4g}) of "
                f"{', '.join(f.fit_methods)} (AUROC there: {_number(f.fit_auroc)})"
                for f in fits
            ),
            "",
            markdown_table(COLUMNS, fitted_rows, "lllrrrrrrll")
            if fitted_rows
            else "Nothing to fit (no healthy snapshot of a fit method, or nothing held out).\n",
            "## The embedding rule on backbones only (a candidate)",
            "",
            "Declared before the 1,000-step alarm corpus was read (`BACKBONE_KEYS`): "
            "the same fit and split, reading only `backbone`, `target_backbone` and "
            "`teacher_backbone` (in the monitor's history: `backbone`, "
            "`backbone_momentum`, `teacher_backbone`).",
            "",
            *(
                [
                    f"- {backbone_fit.metric} < {backbone_fit.threshold:.4g} = "
                    f"{MARGIN} x the lowest healthy backbone value "
                    f"({backbone_fit.lowest_healthy:.4g}) of "
                    f"{', '.join(backbone_fit.fit_methods)}",
                    "",
                    markdown_table(COLUMNS, backbone_rows, "lllrrrrrrll"),
                ]
                if backbone_rows and backbone_fit is not None
                else ["Nothing to fit.", ""]
            ),
            "## Every candidate score, fitted on both splits",
            "",
            "The same fitting procedure for each score of the family, on the declared "
            "split and on the reversed one (`REVERSED`). Choosing among these on the "
            "held-out runs would be a choice on the test set: read them as "
            f"{len(candidate_lines)} comparisons, not as one validated rule.",
            "",
            *candidate_lines,
            "",
            markdown_table(COLUMNS, candidate_rows, "lllrrrrrrll")
            if candidate_rows
            else "Nothing to fit.\n",
            "## A rule relative to each module's own peak (a candidate)",
            "",
            "Value / the highest value the same head has shown so far, the lowest "
            "over the run's snapshots and heads; the fraction is fitted by the same "
            f"procedure ({MARGIN} x the lowest ratio of the fit methods' learned runs).",
            "",
            markdown_table(
                (
                    "Family",
                    "Score",
                    "Fit methods",
                    "Lowest ratio, learned",
                    "Fraction",
                    "Collapsed runs' lowest ratios",
                    "Caught",
                    "False alarms (held-out learned)",
                ),
                peak_ratio_rows(runs, SPLIT),
                "lllrrlrr",
            ),
            "## What this corpus cannot show",
            "",
            f"- {len(collapsed)} collapsed run(s), of "
            f"{', '.join(sorted({r.method for r in collapsed})) or 'no method'}: an "
            "AUROC or a lead time from so few positives has no useful precision, and "
            "nothing is known about collapses of the other methods.",
            "- The snapshots are a fixed held-out batch in eval mode at the corpus's "
            "snapshot steps; the monitor measures training batches (two augmented "
            "views, training mode) every 50 steps. The last column replays the "
            "monitor's own history where the corpus keeps it.",
            "- A lead time is counted in checks between snapshots: a snapshot is read "
            "by every check up to the next one, so the resolution is the snapshot "
            "spacing (100 steps in the mechanism corpus).",
            "- `no gain` runs are neither class: their alarms are listed, not scored.",
            "",
            "## Alarms of the shipped rules",
            "",
            "(run, label, family: the step of the alarm replayed on the snapshots and "
            "in the monitor's history; the step the kNN fell below; lead times, "
            "positive when the alarm came first)",
            "",
            *(
                f"- {a['run_id']} ({a['label']}), {a['family']}: step {a['step']}, "
                f"monitor {a['monitor_step']}, below at {a['first_below_step']}, lead "
                f"{a['lead']}, monitor lead {a['monitor_lead']}"
                for a in fired
            ),
        ]
    )
    print(text)
    if args.report is not None:
        write_atomic(args.report, text + "\n")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {
            "fits": [asdict(f) for f in fits],
            "shipped": shipped_records,
            "fitted": fitted_records,
            "backbone_fit": None if backbone_fit is None else asdict(backbone_fit),
            "backbones": backbone_records,
            "candidates": candidate_records,
            "alarms": fired,
        }
        write_atomic(
            args.out / "alarm_validation.json", json.dumps(record, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
