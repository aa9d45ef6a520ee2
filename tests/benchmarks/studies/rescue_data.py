"""Crafted numbers for the rescue study's tests, and their expected verdicts.

Two seeds per comparison, values mean - e and mean + e (so the standard error is
exactly e): with e = 1e-4 every interval is narrow enough for a verdict even at
n = 2 and the family's strictest Holm level; e = 0.01 with the mean on the
threshold gives an inconclusive one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from benchmarks.studies.rescue.config import RescueConfig, spec_of

SEEDS = (100, 101)
UNTRAINED = {100: {"knn": 0.70, "probe": 0.75}, 101: {"knn": 0.71, "probe": 0.76}}
TIGHT, LOOSE = 1e-4, 1e-2

NO_FAILURE = "inconclusive (no failure to rescue: the control {})"
SPREAD = "does not learn (head not collapsed in every seed)"
# (arm, treatment) -> (mean G, e, expected verdict of the treatment or of the
# removal's control, expected rescue verdict)
GAINS: Dict[Tuple[str, str], Tuple[float, float, str, Optional[str]]] = {
    ("dino-ema0", "none"): (-0.10, TIGHT, "ends below its untrained network", None),
    ("dino-ema0", "entropy"): (0.03, TIGHT, "learns", "rescues"),
    ("dino-ema0", "koleo"): (-0.09, TIGHT, "does not learn", "does not rescue"),
    ("dino-ema0", "sigreg"): (0.0, LOOSE, "inconclusive", "inconclusive"),
    ("dino-ema0", "vicreg"): (0.01, TIGHT, "learns", "rescues"),
    ("dino-ema0", "uniformity"): (-0.01, TIGHT, "does not learn", "does not rescue"),
    ("byol-nopred-ema0", "none"): (-0.02, TIGHT, "fails to learn", None),
    ("byol-nopred-ema0", "entropy"): (0.05, TIGHT, "learns", "rescues"),
    ("byol-nopred-ema0", "koleo"): (0.05, TIGHT, "learns", "rescues"),
    ("byol-nopred-ema0", "sigreg"): (0.02, LOOSE, "inconclusive", "inconclusive"),
    ("byol-nopred-ema0", "vicreg"): (0.0, TIGHT, "does not learn", "does not rescue"),
    ("byol-nopred-ema0", "uniformity"): (0.05, TIGHT, "learns", "rescues"),
    ("byol-nopred", "none"): (-0.01, TIGHT, SPREAD, None),
    ("byol-nopred", "entropy"): (0.05, TIGHT, "learns", NO_FAILURE.format(SPREAD)),
    ("byol-nopred", "koleo"): (0.0, TIGHT, "does not learn", NO_FAILURE.format(SPREAD)),
    ("byol-nopred", "sigreg"): (0.02, LOOSE, "inconclusive", NO_FAILURE.format(SPREAD)),
    ("byol-nopred", "vicreg"): (0.04, TIGHT, "learns", NO_FAILURE.format(SPREAD)),
    ("byol-nopred", "uniformity"): (0.01, TIGHT, "does not learn", NO_FAILURE.format(SPREAD)),
}  # fmt: skip
COLLAPSE_VERDICTS = {"dino-ema0": "collapses", "byol-nopred-ema0": "does not collapse"}
"""The primary removals' collapse control (G0 against -0.05)."""
INTACT_GAIN = 0.04
"""G of the intact arm (byol, w = 0)."""
COSTS: Dict[str, Tuple[float, float, str]] = {
    "entropy": (0.01, TIGHT, "costs less than 2 points"),
    "koleo": (-0.05, TIGHT, "costs more than 2 points"),
    "sigreg": (-0.02, LOOSE, "inconclusive"),
    "vicreg": (0.0, TIGHT, "costs less than 2 points"),
    "uniformity": (-0.03, TIGHT, "costs more than 2 points"),
}
"""d = kNN(byol + treatment) - kNN(byol) per treatment: (mean, e, verdict)."""
COLLAPSED_HEADS: Dict[Tuple[str, str], Tuple[int, ...]] = {
    ("byol-nopred-ema0", "none"): SEEDS,
    ("byol-nopred", "none"): (100,),
}
"""(arm, treatment) -> the seeds whose heads collapsed (none elsewhere)."""


def per_seed(mean: float, e: float) -> Dict[int, float]:
    return {SEEDS[0]: mean - e, SEEDS[1]: mean + e}


def final_knn(config: RescueConfig) -> Dict[str, float]:
    """run_id -> the crafted final kNN of every run of the smoke preset."""
    out = {}
    for (arm, treatment), (mean, e, _, _) in GAINS.items():
        for seed, g in per_seed(mean, e).items():
            run_id = spec_of(arm, treatment, seed, config.engine).run_id
            out[run_id] = UNTRAINED[seed]["knn"] + g
    intact = per_seed(INTACT_GAIN, TIGHT)
    for seed, g in intact.items():
        base = UNTRAINED[seed]["knn"] + g
        out[spec_of("byol", "none", seed, config.engine).run_id] = base
        for treatment, (mean, e, _) in COSTS.items():
            run_id = spec_of("byol", treatment, seed, config.engine).run_id
            out[run_id] = base + per_seed(mean, e)[seed]
    return out


def records(config: RescueConfig) -> List[Dict[str, Any]]:
    """Minimal run records (the fields the analysis reads) with the crafted kNN."""
    knn = final_knn(config)
    out = []
    for arm, treatment, seed, run_id in _runs(config):
        spec = spec_of(arm, treatment, seed, config.engine)
        out.append({
            "run_id": run_id, "spec": spec.to_dict(), "method": spec.method,
            "final_knn": knn[run_id], "final_probe": UNTRAINED[seed]["probe"] + 0.01,
        })  # fmt: skip
    return out


def heads(config: RescueConfig) -> Dict[str, Dict[str, Any]]:
    """run_id -> a head reading (collapsed where :data:`COLLAPSED_HEADS` says)."""
    out = {}
    for arm, treatment, seed, run_id in _runs(config):
        collapsed = seed in COLLAPSED_HEADS.get((arm, treatment), ())
        out[run_id] = {"collapsed": collapsed, "onset": 50 if collapsed else None,
                       "mode": ""}  # fmt: skip
    return out


def _runs(config: RescueConfig) -> List[Tuple[str, str, int, str]]:
    arms = [(a, t) for a, t in GAINS] + [("byol", "none")]
    arms += [("byol", t) for t in COSTS]
    return [
        (a, t, s, spec_of(a, t, s, config.engine).run_id)
        for a, t in arms
        for s in SEEDS
    ]
