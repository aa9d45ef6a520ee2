"""The rescue study as data: removals, treatments, seeds, the run order.

Fixed by ``benchmarks/studies/rescue_preregistration.md``. A *removal* is an arm
of the mechanism study's engine whose anti-collapse device is taken away
(:data:`benchmarks.studies.mechanism.config.ARMS`); a *treatment* is what is put
in its place: nothing (the original at entropy weight 0), the entropy term (the ER
objective at weight 1) or one of lightly's comparator terms at weight 0
(:mod:`benchmarks.studies.mechanism.terms`). Every treatment also runs on the intact
method, for its cost in accuracy. The ``smoke`` preset is the same study on a tiny
budget (tests); only sizes differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.studies.mechanism.config import ARMS, RunSpec, StudyConfig, Task
from benchmarks.studies.mechanism.terms import TERMS

TREATMENTS: Tuple[str, ...] = ("none", "entropy", *TERMS)
"""What replaces the removed device, in the order of every table."""
TERM_LABELS: Dict[str, str] = {
    "none": "nothing (w = 0)",
    "entropy": "entropy term (ER, w = 1)",
    "koleo": "KoLeoLoss",
    "sigreg": "SIGReg",
    "vicreg": "VICReg var + cov",
    "uniformity": "uniformity",
}
PRIMARY: Tuple[str, ...] = ("dino-ema0", "byol-nopred-ema0")
"""The removals that collapse reliably here (issue 32, item 4): confirmatory."""
BELOW, FAILS = "below", "fails to learn"
FAILURE_MODE: Dict[str, str] = {
    "dino-ema0": BELOW,
    "byol-nopred-ema0": FAILS,
    "byol-nopred": FAILS,
    "dino-nocenter": FAILS,
    "swav-nosinkhorn": FAILS,
    "simsiam-nosg": FAILS,
    "dino-nosharpen": FAILS,
}
"""How each removal fails without a treatment: the registered control whose failure
a rescue needs. ``below``: its backbone ends below its untrained network (G below
0; a treatment rescues if G is above 0); ``fails to learn``: G below +0.02 with the
head collapsed in every seed (a treatment rescues if G is above +0.02)."""
SECONDARY_ALL: Tuple[str, ...] = (
    "byol-nopred",
    "dino-nocenter",
    "swav-nosinkhorn",
    "simsiam-nosg",
    "dino-nosharpen",
)
"""The removals whose pattern the mechanism study left untested (issue 32)."""
INTACT_OF: Dict[str, str] = {
    "dino-ema0": "dino",
    "byol-nopred-ema0": "byol",
    "byol-nopred": "byol",
    "dino-nocenter": "dino",
    "swav-nosinkhorn": "swav",
    "simsiam-nosg": "simsiam",
    "dino-nosharpen": "dino",
}
"""The intact arm (the method with its device) of each removal."""


def treatment_of(weight: Optional[float], term: Optional[str]) -> str:
    """The treatment of a run from its entropy weight and comparator term."""
    if term is not None:
        return term
    return "entropy" if weight == 1.0 else "none"


def spec_of(arm: str, treatment: str, seed: int, engine: StudyConfig) -> RunSpec:
    """The engine's run of ``arm`` under ``treatment`` at ``seed``.

    Raises:
        ValueError: For an unknown arm or treatment.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}")
    if treatment not in TREATMENTS:
        raise ValueError(f"treatment must be one of {TREATMENTS}, got {treatment!r}")
    weight = 1.0 if treatment == "entropy" else 0.0
    term = treatment if treatment in TERMS else None
    return RunSpec(arm, weight, engine.batch, engine.steps, seed, term)


@dataclass(frozen=True)
class RescueConfig:
    """The sizes of the study (the ``rescue`` preset is the registered one).

    Attributes:
        name: The preset's name.
        engine: The mechanism engine's sizes (steps, snapshots, data, kNN, probe,
            margins); ``engine.seeds`` is unused.
        primary_seeds: Seeds of the primary removals (fresh: not 0-4).
        secondary: The secondary removals run (the rest are cut).
        secondary_seeds: Seeds of the secondary removals.
        intact: The intact arms whose treatments measure the cost in accuracy.
        intact_seeds: Seeds of the intact arms.
        pilot_seeds: Seeds of the pilot (not study seeds).
        primary: The primary removals run (:data:`PRIMARY`; none in the
            ``secondary`` preset).
        timing_warmup: Side-by-side timing: steps of every configuration first.
        timing_rounds: Rounds of the timing, each every configuration in turn.
        timing_steps: Steps of one configuration in one round.
        embedding_threshold: Head collapse of an embedding: mean per-dimension
            std of the L2-normalized output below this / sqrt(d) (Chen & He).
        kl_epsilon: Head collapse of a prototype head: KL(teacher || student)
            below this (nats) ...
        entropy_epsilon: ... with the teacher's batch-mean distribution's entropy
            below this (one-prototype mode) or its mean per-image entropy above
            log K minus this (uniform mode), nats.
        fail_margin: "Fails to learn": G below this with the head collapsed; the
            rescue line of the removals that fail to learn.
    """

    name: str
    engine: StudyConfig
    primary_seeds: Tuple[int, ...]
    secondary: Tuple[str, ...]
    secondary_seeds: Tuple[int, ...]
    intact: Tuple[str, ...]
    intact_seeds: Tuple[int, ...]
    pilot_seeds: Tuple[int, ...] = (900, 901)
    primary: Tuple[str, ...] = PRIMARY
    timing_warmup: int = 5
    timing_rounds: int = 5
    timing_steps: int = 10
    embedding_threshold: float = 0.1
    kl_epsilon: float = 0.1
    entropy_epsilon: float = 0.1
    fail_margin: float = 0.02

    def __post_init__(self) -> None:
        study = set(self.primary_seeds) | set(self.secondary_seeds)
        study |= set(self.intact_seeds)
        if study & set(self.pilot_seeds):
            raise ValueError("the pilot's seeds must not be study seeds")
        unknown = set(self.secondary) - set(SECONDARY_ALL)
        unknown |= set(self.primary) - set(PRIMARY)
        if unknown:
            raise ValueError(f"unknown removals {sorted(unknown)}")

    @property
    def removals(self) -> Tuple[str, ...]:
        return self.primary + self.secondary

    def rescue_line(self, removal: str) -> float:
        """The G a treatment must be shown above to rescue ``removal`` (and its
        control below, to have failed)."""
        return 0.0 if FAILURE_MODE[removal] == BELOW else self.fail_margin

    def methods(self) -> Tuple[str, ...]:
        """The methods of the study's arms, in a fixed order."""
        arms = self.removals + self.intact
        return tuple(dict.fromkeys(ARMS[a].method for a in arms))

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


SEEDS_4 = (100, 101, 102, 103)


def preset(name: str) -> RescueConfig:
    """A preset: ``rescue`` (the registered study), ``secondary`` (the registered
    follow-up on the secondary removals, not part of the study's command) or
    ``smoke`` (tiny sizes, tests).

    Raises:
        ValueError: For an unknown preset.
    """
    engine = StudyConfig(name, 1000, evaluations=20, seeds=(), knn_every=100)
    if name == "rescue":
        return RescueConfig(
            "rescue",
            engine,
            primary_seeds=tuple(range(100, 110)),
            secondary=(),
            secondary_seeds=(),
            intact=("byol", "dino"),
            intact_seeds=SEEDS_4,
        )
    if name == "secondary":
        return RescueConfig(
            "secondary",
            engine,
            primary_seeds=(),
            secondary=("byol-nopred", "swav-nosinkhorn", "dino-nocenter"),
            secondary_seeds=SEEDS_4,
            intact=("swav",),
            intact_seeds=SEEDS_4,
            primary=(),
        )
    if name == "smoke":
        engine = StudyConfig(
            "smoke", 2, batch=8, small_batch=4, large_batch=8, evaluations=2,
            seeds=(), small_seeds=(), train_size=None, test_size=None,
            bank_size=100, held_out=16, probe_iterations=10, knn_every=2,
        )  # fmt: skip
        return RescueConfig(
            "smoke",
            engine,
            primary_seeds=(100, 101),
            secondary=("byol-nopred",),
            secondary_seeds=(100, 101),
            intact=("byol",),
            intact_seeds=(100, 101),
            timing_warmup=1,
            timing_rounds=2,
            timing_steps=1,
        )
    raise ValueError(f"unknown preset {name!r}; choose rescue, secondary or smoke")


# ---------------------------------------------------------------------------------------
# The run order
# ---------------------------------------------------------------------------------------
def _setup(config: RescueConfig, seeds: List[int], done: set[str]) -> List[Task]:
    """The view streams and untrained evaluations the seeds need, not yet planned."""
    methods = config.methods()
    tasks = [Task("stream", m, s) for s in seeds for m in methods]
    tasks += [Task("untrained", seed=s) for s in seeds]
    fresh = [t for t in tasks if t.key not in done]
    done.update(t.key for t in fresh)
    return fresh


def _runs(
    arms: Tuple[str, ...], seeds: Tuple[int, ...], config: RescueConfig
) -> List[Task]:
    """Seed-major: every arm and treatment of a seed before the next seed."""
    return [
        Task("run", spec=spec_of(arm, treatment, seed, config.engine))
        for seed in seeds
        for arm in arms
        for treatment in TREATMENTS
    ]


def plan(config: RescueConfig) -> List[Tuple[str, List[Task]]]:
    """The study's tasks in blocks, in the registered run order.

    1. primary removals, every treatment, seed by seed (with the view streams and
    untrained evaluations of their seeds first); 2. intact arms; 3. secondary
    removals. A stream is made once per (method, seed), before its first run.
    """
    done: set[str] = set()
    primary = _setup(config, list(config.primary_seeds), done)
    primary += _runs(config.primary, config.primary_seeds, config)
    intact = _setup(config, list(config.intact_seeds), done)
    intact += _runs(config.intact, config.intact_seeds, config)
    secondary = _setup(config, list(config.secondary_seeds), done)
    secondary += _runs(config.secondary, config.secondary_seeds, config)
    blocks = [
        ("primary removals", primary),
        ("intact arms", intact),
        ("secondary removals", secondary),
    ]
    return [(name, tasks) for name, tasks in blocks if tasks]


def all_tasks(config: RescueConfig) -> List[Task]:
    """The plan's tasks, in order."""
    return [t for _, tasks in plan(config) for t in tasks]


def run_specs(config: RescueConfig) -> List[RunSpec]:
    """Every run of the study, in order."""
    return [t.spec for t in all_tasks(config) if t.spec is not None]


def timing_configs(config: RescueConfig, method: str) -> List[Tuple[str, str]]:
    """(arm, treatment) of every configuration of ``method`` the timing compares.

    The intact arm at w = 0 first (the reference of every ratio), then every
    treatment of the intact arm and of each removal of the method.
    """
    reference = method  # the intact arm of every method is named after it
    arms = [reference] + [r for r in config.removals if ARMS[r].method == method]
    configs = [(reference, "none")]
    for arm in arms:
        configs += [(arm, t) for t in TREATMENTS if (arm, t) != (reference, "none")]
    return configs
