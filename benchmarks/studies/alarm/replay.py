"""One run's replay: its ground truth, each candidate's first alarm, its end scores.

The ground truth is :func:`benchmarks.studies.rescue.collapse.read_head`; the
metrics are :class:`lightly_er.monitoring.EntropyMeter`'s and the alarms
:class:`lightly_er.monitoring.rules.AlarmTracker`'s, as the monitor computes them,
on the corpus's snapshots (eval mode, held-out batch), one check per snapshot.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmarks.studies.alarm import plan
from benchmarks.studies.mechanism.corpus import load_run, read_index
from benchmarks.studies.rescue.collapse import read_head
from lightly_er.monitoring import EntropyMeter, resolve_kappa
from lightly_er.monitoring.rules import AlarmTracker

Metrics = List[Dict[str, float]]


@dataclass
class RunResult:
    """What the verdicts read of one run (``alarms[candidate][role]``: the step of
    the first alarm of the role's heads, None if none)."""

    run_id: str
    method: str
    arm: str
    seed: int
    source: str
    diverged: bool
    collapsed: bool = False
    first_met: Optional[int] = None
    onset: Optional[int] = None
    mode: str = ""
    knn_below: Optional[bool] = None
    final_knn: float = math.nan
    alarms: Dict[str, Dict[str, Optional[int]]] = field(default_factory=dict)
    scores: Dict[str, float] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return plan.FAMILY_OF[self.method]


def _meter(key: str, loss: Mapping[str, Any], support: str) -> EntropyMeter:
    if support == "sphere":
        return EntropyMeter("sphere", kappa=resolve_kappa(loss.get("kappa")))
    name = {"teacher_logits": "teacher_temp", "student_logits": "student_temp"}
    temperature = loss.get(name.get(key, "temperature")) or 0.1
    return EntropyMeter("discrete", temperature=float(temperature), inputs="logits")


def head_metrics(
    arrays: Mapping[str, np.ndarray], key: str, loss: Mapping[str, Any], support: str
) -> Metrics:
    """The meter's metrics of one head at every snapshot (DINO's teacher after its
    center, at the teacher temperature, as the monitor measures it)."""
    meter = _meter(key, loss, support)
    out = []
    for t in range(len(arrays["step"])):
        x = torch.as_tensor(arrays[key][t].astype(np.float32))
        if key == "teacher_logits" and loss.get("centering") and "center" in arrays:
            x = x - torch.as_tensor(arrays["center"][t].astype(np.float32))
        out.append(meter.compute(x))
    return out


def first_alarms(
    heads: Mapping[str, Metrics], roles: Mapping[str, str], steps: Sequence[int],
    candidate: plan.Candidate,
) -> Dict[str, Optional[int]]:  # fmt: skip
    """Per role (and ``all``), the step of the first alarm of its heads."""
    tracker = AlarmTracker([candidate.rule], plan.PATIENCE)
    first: Dict[str, Optional[int]] = {"all": None, "student": None, "teacher": None}
    for t, step in enumerate(steps):
        for key, series in heads.items():
            support = candidate.rule.support
            if tracker.check(key, support, roles[key], series[t]) is not None:
                for role in ("all", roles[key]):
                    first[role] = step if first[role] is None else first[role]
    return first


def end_scores(arrays: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """The quality scores of the backbone at the last snapshot (LiDAR only where
    the corpus keeps two augmented views, ``backbone_views``: (2, N, d))."""
    meter = EntropyMeter("sphere", kappa=10.0)
    x = torch.as_tensor(arrays["backbone"][-1].astype(np.float32))
    scores = meter.compute(x)
    if "backbone_views" in arrays:
        v = torch.as_tensor(arrays["backbone_views"].astype(np.float32))
        scores["lidar"] = meter.compute(v[0], v[1])["lidar"]
    return {k: scores.get(k, math.nan) for k in plan.QUALITY_SCORES}


def replay_run(
    entry: Mapping[str, Any], arrays: Optional[Mapping[str, np.ndarray]]
) -> RunResult:
    """The replay of one run of the plan from its index entry and corpus arrays
    (None: the run diverged, and is listed, not scored)."""
    method, loss = entry["method"], entry["loss"]
    result = RunResult(entry["run_id"], method, entry["arm"], int(entry["seed"]),
                       plan.source_of(entry["run_id"]), arrays is None)  # fmt: skip
    result.final_knn = float(entry["final_knn"])
    untrained = float(entry["untrained_knn"])
    result.knn_below = result.final_knn < untrained - plan.KNN_MARGIN
    if arrays is None:
        return result
    steps = [int(s) for s in arrays["step"]]
    if any(b - a != plan.EVERY_N_STEPS for a, b in zip(steps, steps[1:])):  # noqa: B905
        raise ValueError(f"{result.run_id}: snapshots are not every 50 steps")
    truth = read_head(arrays, method, loss)
    result.collapsed, result.onset, result.mode = truth.collapsed, truth.onset, truth.mode  # fmt: skip
    if truth.collapsed:
        result.first_met = next(s for s, m in zip(steps, truth.met, strict=True) if m)
    support = plan.SUPPORT_OF[result.family]
    roles = {k: r for k, r in plan.HEADS[method].items() if k in arrays}
    metrics = {k: head_metrics(arrays, k, loss, support) for k in roles}
    for c in plan.CANDIDATES:
        if c.family == result.family:
            result.alarms[c.name] = first_alarms(metrics, roles, steps, c)
    result.scores = end_scores(arrays)
    return result


def replay_corpus(
    corpora: Sequence[Path], records: Sequence[Path] = ()
) -> Tuple[List[RunResult], List[str]]:
    """Every run of the plan in the corpora, and the run ids left out (not in the
    plan). A run's record (``diverged_step``), where given, says whether it
    diverged; else its index label. A run found twice is an error."""
    records_ = [json.loads(p.read_text()) for d in records for p in d.glob("*.json")]
    diverged = {r["run_id"]: r.get("diverged_step") is not None for r in records_}
    results: List[RunResult] = []
    skipped: List[str] = []
    for corpus in corpora:
        for entry in read_index(corpus)["runs"]:
            run_id = entry["run_id"]
            if not plan.source_of(run_id) or entry["method"] not in plan.FAMILY_OF:
                skipped.append(run_id)
                continue
            if any(r.run_id == run_id for r in results):
                raise ValueError(f"run {run_id} is in more than one corpus")
            gone = diverged.get(run_id, entry.get("label") == "diverged")
            arrays = None if gone else load_run(corpus / entry["file"])
            results.append(replay_run(entry, arrays))
    return results, skipped
