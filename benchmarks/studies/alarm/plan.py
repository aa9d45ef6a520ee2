"""The alarm validation as data: candidates, watched heads, criteria, corpus plan.

Fixed by ``benchmarks/studies/alarm_preregistration.md``; the replay reads nothing
else. The rules are written out, not taken from ``DEFAULT_RULES``, so that shipping
new defaults cannot change what was frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Tuple

from benchmarks.studies.rescue.config import preset, run_specs
from lightly_er.monitoring.rules import AlarmRule

FAMILY_OF: Dict[str, str] = {
    "byol": "embedding",
    "simsiam": "embedding",
    "dino": "prototype",
    "swav": "prototype",
}
SUPPORT_OF: Dict[str, str] = {"embedding": "sphere", "prototype": "discrete"}
HEADS: Dict[str, Dict[str, str]] = {
    "byol": {"projection": "student", "prediction": "student",
             "target_projection": "teacher"},
    "simsiam": {"projection": "student", "prediction": "student"},
    "dino": {"student_logits": "student", "teacher_logits": "teacher"},
    "swav": {"prototype_scores": "student"},
}  # fmt: skip
"""The heads a family's rules read per method: corpus key -> role (a key a run
lacks, BYOL's predictor, is skipped). Backbones are not read."""


@dataclass(frozen=True)
class Candidate:
    """A candidate alarm: its rules, read at patience 3 on every 50-step snapshot."""

    name: str
    family: str
    rule: AlarmRule
    primary: bool = False


NMI = "normalized_mutual_information"
CANDIDATES: Tuple[Candidate, ...] = (
    Candidate("E0", "embedding", AlarmRule("dimension_score", 0.25, "sphere"), True),
    Candidate("E1", "embedding", AlarmRule("collapse_score", 0.5, "sphere")),
    Candidate("E2", "embedding", AlarmRule("normalized_entropy", 0.5, "sphere")),
    Candidate("P0", "prototype", AlarmRule(NMI, 0.05, "discrete"), True),
    Candidate("P1", "prototype", AlarmRule(NMI, 0.01, "discrete")),
)
PATIENCE = 3
EVERY_N_STEPS = 50
LEAD_STEPS = 100
"""Pass: the median lead time, ground truth first met minus alarm, at least this."""
SENSITIVITY_LOWER = 0.5
FALSE_ALARM_UPPER = 0.3
CONFIDENCE = 0.95
"""Clopper-Pearson (two-sided) level of the primary candidates; an alternative is
read at 1 - (1 - CONFIDENCE) / (alternatives in its family)."""
KNN_MARGIN = 0.05
"""The second outcome: final backbone kNN below the untrained network's minus this."""
QUALITY_SCORES: Tuple[str, ...] = (
    "effective_rank", "lidar", "collapse_score", "dimension_score", "entropy_gap"
)  # fmt: skip
REGRET_MAX = 0.02

COLLAPSE_ARMS: Tuple[str, ...] = (
    "dino-ema0", "dino-nocenter-ema0", "byol-nopred-ema0", "simsiam-nosg-nopred",
    "swav-nosinkhorn",
)  # fmt: skip
HEALTHY_ARMS: Tuple[str, ...] = ("byol", "simsiam", "dino", "swav")
SHIFT = "-wide"
"""The shifted setting: the arm with the backbone twice as wide."""


def _ids(arms: Tuple[str, ...], seeds: range) -> Tuple[str, ...]:
    return tuple(f"{a}_w0_b128_s1000_seed{s}" for a in arms for s in seeds)


NEW_RUNS: FrozenSet[str] = frozenset(
    _ids(COLLAPSE_ARMS, range(200, 210))
    + _ids(HEALTHY_ARMS, range(200, 205))
    + _ids(tuple(a + SHIFT for a in COLLAPSE_ARMS), range(210, 213))
    + _ids(tuple(a + SHIFT for a in HEALTHY_ARMS), range(210, 212))
    + _ids(COLLAPSE_ARMS, range(220, 230))  # the top-up block, only if needed
)
RESCUE_RUNS: FrozenSet[str] = frozenset(
    spec.run_id for name in ("rescue", "secondary") for spec in run_specs(preset(name))
)


def source_of(run_id: str) -> str:
    """``new``, ``rescue`` or ``""`` (not in the plan: not read)."""
    return "new" if run_id in NEW_RUNS else "rescue" if run_id in RESCUE_RUNS else ""
