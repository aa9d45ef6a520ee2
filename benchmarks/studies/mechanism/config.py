"""The study's design as data: presets, arms, runs and their order.

Everything here is fixed by ``benchmarks/studies/mechanism_preregistration.md``:
the arms and their interventions (:data:`ARMS`), which arm serves which hypothesis,
the seeds, the batch axis and the run order (:func:`plan`). The ``smoke`` preset is
the same study on a tiny budget (tests, a quick look); only sizes differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.common import runs

METHODS: Tuple[str, ...] = ("byol", "simsiam", "dino", "swav", "simclr")
"""The study's methods (lightly's CIFAR-10 modules of benchmarks/cifar/methods.py)."""


@dataclass(frozen=True)
class Arm:
    """One intervention on one method.

    Attributes:
        id: The arm's name in run ids and tables (``dino-nocenter``).
        method: The method it changes.
        weights: The entropy weights it runs at; ``(None,)`` for an arm without
            an entropy weight (lightly's SimCLR, the uniformity control).
        ema: Constant teacher EMA coefficient (None: the method has no teacher).
        description: The intervention, exactly.
    """

    id: str
    method: str
    weights: Tuple[Optional[float], ...]
    ema: Optional[float]
    description: str


W01: Tuple[Optional[float], ...] = (0.0, 1.0)
ARMS: Dict[str, Arm] = {
    arm.id: arm
    for arm in (
        Arm("byol", "byol", W01, 0.99, "intact (w = 0: lightly's BYOL)"),
        Arm("byol-nopred", "byol", W01, 0.99, "no predictor"),
        Arm("byol-ema0", "byol", W01, 0.0, "EMA 0"),
        Arm("byol-nopred-ema0", "byol", W01, 0.0, "no predictor, EMA 0 (rescue study)"),
        Arm(
            "byol-unif",
            "byol",
            (None,),
            0.99,
            "BYOL (w = 0) plus (1/κ)·U(p; κ/2), κ = 10",
        ),
        Arm("simsiam", "simsiam", W01, None, "intact (w = 0: lightly's SimSiam)"),
        Arm("simsiam-nosg", "simsiam", W01, None, "no stop-gradient"),
        Arm(
            "simsiam-nosg-nopred",
            "simsiam",
            W01,
            None,
            "no predictor, no stop-gradient (alarm study)",
        ),
        Arm("dino", "dino", W01, 0.99, "centering on (w = 0: lightly's DINO)"),
        Arm("dino-nocenter", "dino", W01, 0.99, "centering off (w = 1: DINO-ER)"),
        Arm("dino-ema0", "dino", W01, 0.0, "centering on, EMA 0"),
        Arm("dino-nocenter-ema0", "dino", W01, 0.0, "centering off, EMA 0"),
        Arm(
            "dino-nosharpen",
            "dino",
            W01,
            0.99,
            "centering on, teacher temperature 0.1 (= student's)",
        ),
        Arm("swav", "swav", W01, None, "Sinkhorn on (w = 0: lightly's SwAV)"),
        Arm(
            "swav-nosinkhorn",
            "swav",
            W01,
            None,
            "Sinkhorn off: softmax(scores / 0.05) (w = 1: SwAV-ER)",
        ),
        Arm("simclr", "simclr", (None,), None, "lightly's NT-Xent (τ = 0.5)"),
        Arm(
            "simclr-er",
            "simclr",
            W01,
            None,
            "ERNTXentLoss (τ = 0.5, κ = 2); w = 0: positive term only",
        ),
    )
}

WIDE = "-wide"
"""The suffix of an arm on the wide backbone (the alarm study's shifted setting)."""
WIDE_OF: Tuple[str, ...] = (
    "dino-ema0", "dino-nocenter-ema0", "byol-nopred-ema0", "simsiam-nosg-nopred",
    "swav-nosinkhorn", "byol", "simsiam", "dino", "swav",
)  # fmt: skip
"""The arms that have a ``-wide`` twin: the same arm with ``s2``'s convolutions
twice as wide (64, 128, 256 channels; 256 features into the heads)."""
ARMS.update(
    (a + WIDE, dataclasses.replace(ARMS[a], id=a + WIDE,
                                   description=ARMS[a].description + "; s2 x2 wide"))
    for a in WIDE_OF
)  # fmt: skip


def is_wide(arm: str) -> bool:
    """Whether the arm runs on the wide backbone (its id ends with ``-wide``)."""
    return arm.endswith(WIDE)


HEADLINE_ARMS: Tuple[str, ...] = (
    "byol-nopred",
    "byol-ema0",
    "simsiam-nosg",
    "dino-nocenter",
    "dino-ema0",
    "dino-nocenter-ema0",
    "dino-nosharpen",
    "swav-nosinkhorn",
    "simclr-er",
)
"""The nine device cases of H-control and H-entropy (one Holm family)."""

INTACT_ARMS: Tuple[str, ...] = ("byol", "simsiam", "dino", "swav", "simclr")
"""The arms with the device intact (H-cost, H-replace)."""

INTACT_OF: Dict[str, str] = {
    "byol-nopred": "byol",
    "byol-ema0": "byol",
    "simsiam-nosg": "simsiam",
    "dino-nocenter": "dino",
    "dino-ema0": "dino",
    "dino-nocenter-ema0": "dino",
    "dino-nosharpen": "dino",
    "swav-nosinkhorn": "swav",
    "simclr-er": "simclr",
}
"""The intact arm (its original, w = 0; lightly's SimCLR) of each device case."""

BATCH_MEMBERS: Tuple[Tuple[str, Optional[float]], ...] = (
    ("byol", 0.0),
    ("byol", 1.0),
    ("dino", 0.0),
    ("dino", 1.0),
    ("simclr", None),
    ("simclr-er", 1.0),
)
"""The (arm, weight) pairs of the batch axis (H-batch)."""


@dataclass(frozen=True)
class StudyConfig:
    """The sizes of the study (the ``mechanism`` preset is the registered one).

    Attributes:
        name: The preset's name.
        steps: S, the batch-128 budget in optimizer steps (fixed by the pilot).
        batch: The reference batch size (128).
        small_batch: The batch axis's small batch (32).
        large_batch: The batch axis's large batch (512).
        evaluations: Evaluations after step 0 (10: every tenth of a run's steps).
        seeds: Seeds of the headline and intact arms (0-4).
        small_seeds: Seeds of the uniformity control and the batch axis (0-2).
        pilot_seed: The pilot's seed (7), not a study seed.
        train_size: Training images required (60,000; None: whatever is there).
        test_size: Test images required (10,000; None: whatever is there).
        bank_size: kNN bank and probe training images (10,000).
        bank_seed: Seed of the bank's draw from the training images (0).
        held_out: The corpus's held-out batch: the last ``held_out`` test images.
        knn_k: kNN neighbors (20).
        knn_t: kNN temperature (0.1).
        probe_iterations: L-BFGS iterations of the linear probe (100).
        probe_l2: L2 penalty of the probe's weights (1e-4).
        collapse_margin: c, "collapsed" below untrained - c (0.05).
        learn_margin: "learned" at least untrained + this (0.02).
        noninferiority_margin: δ of H-cost and H-replace (0.02).
        alpha: Family-wise error rate of each Holm family (0.05).
        knn_every: kNN only at the snapshots whose step is a multiple of this (and
            at the last); NaN at the others. None (the mechanism study): at every
            snapshot.
    """

    name: str
    steps: int
    batch: int = 128
    small_batch: int = 32
    large_batch: int = 512
    evaluations: int = 10
    seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    small_seeds: Tuple[int, ...] = (0, 1, 2)
    pilot_seed: int = 7
    train_size: Optional[int] = 60_000
    test_size: Optional[int] = 10_000
    bank_size: int = 10_000
    bank_seed: int = 0
    held_out: int = 512
    knn_k: int = 20
    knn_t: float = 0.1
    probe_iterations: int = 100
    probe_l2: float = 1e-4
    collapse_margin: float = 0.05
    learn_margin: float = 0.02
    noninferiority_margin: float = 0.02
    alpha: float = 0.05
    knn_every: Optional[int] = None

    def __post_init__(self) -> None:
        if self.steps < self.evaluations or self.evaluations < 1:
            raise ValueError(
                f"steps must be >= evaluations >= 1, got steps={self.steps}, "
                f"evaluations={self.evaluations}"
            )
        if self.batch * self.steps % self.small_batch:
            raise ValueError("small_batch must divide batch * steps")
        if self.knn_every is not None and self.knn_every < 1:
            raise ValueError(f"knn_every must be >= 1, got {self.knn_every}")

    @property
    def large_steps(self) -> int:
        """Steps of a large-batch run at fixed samples: S / 4, rounded up."""
        ratio = self.large_batch // self.batch
        return -(-self.steps // ratio)

    @property
    def small_steps_fixed_samples(self) -> int:
        """Steps of a small-batch run at fixed samples: 4 S."""
        return self.steps * self.batch // self.small_batch

    def to_dict(self) -> Dict[str, Any]:
        settings = dataclasses.asdict(self)
        if self.knn_every is None:  # as the mechanism study's study.json has it
            del settings["knn_every"]
        return settings


MECHANISM_STEPS: Optional[int] = 1000
"""S of the registered study: the pilot's outcome (2026-12-02, P(1,000) = 3.20 h)."""


def preset(name: str, steps: Optional[int] = None) -> StudyConfig:
    """The ``mechanism`` preset (the registered study) or ``smoke`` (tiny sizes).

    Raises:
        ValueError: For an unknown preset, or ``mechanism`` before its S is known.
    """
    if name == "mechanism":
        s = steps if steps is not None else MECHANISM_STEPS
        if s is None:
            raise ValueError(
                "the step budget S of --preset mechanism is fixed by the pilot; run "
                "--pilot first (or give --steps)"
            )
        return StudyConfig("mechanism", s)
    if name == "smoke":
        return StudyConfig(
            "smoke",
            steps if steps is not None else 4,
            batch=16,
            small_batch=4,
            large_batch=64,
            evaluations=2,
            seeds=(0, 1),
            small_seeds=(0, 1),
            train_size=None,
            test_size=None,
            bank_size=200,
            held_out=32,
            probe_iterations=20,
        )
    raise ValueError(f"unknown preset {name!r}; choose mechanism or smoke")


@dataclass(frozen=True, init=False)
class RunSpec(runs.RunSpec):
    """One training run of the study: an arm at a weight, batch, step budget and seed.

    The benchmarks' run (:class:`benchmarks.common.runs.RunSpec`) built from the
    study's arm: its method and EMA are the arm's, its name the arm's id, its budget
    in steps; so its :attr:`run_id` is ``<arm>_w<0|1>_b<batch>_s<steps>_seed<seed>``
    (no ``_w`` without a weight), the names of the records on disk.

    Args:
        arm: The arm's id (a key of :data:`ARMS`).
        weight: The entropy weight (None for an arm without one).
        batch: The batch size.
        steps: The optimizer steps.
        seed: The seed.
        term: A comparator term added to the arm's loss
            (:mod:`benchmarks.studies.mechanism.terms`; the rescue study's arms), or
            None (every arm of the mechanism study).
    """

    steps: int = 0  # always a step budget (set by __init__)
    term: Optional[str] = None

    def __init__(
        self,
        arm: str,
        weight: Optional[float],
        batch: int,
        steps: int,
        seed: int,
        term: Optional[str] = None,
    ) -> None:
        super().__init__(
            method=ARMS[arm].method,
            batch_size=batch,
            ema=ARMS[arm].ema,
            seed=seed,
            steps=steps,
            weight=weight,
            name=arm,
        )
        object.__setattr__(self, "term", term)

    @property
    def arm(self) -> str:
        assert self.name is not None  # set by __init__
        return self.name

    @property
    def batch(self) -> int:
        return self.batch_size

    @property
    def run_id(self) -> str:
        """``<arm>_w<0|1>_b<batch>_s<steps>_seed<seed>`` (no ``_w`` without a weight;
        ``_w0+<term>`` with a comparator term)."""
        base = super().run_id
        if self.term is None:
            return base
        head, _, tail = base.partition(f"_b{self.batch}_")
        return f"{head}+{self.term}_b{self.batch}_{tail}"

    def to_dict(self) -> Dict[str, Any]:
        """The run as the study's records write it (``spec``)."""
        return {
            "arm": self.arm,
            "weight": self.weight,
            "batch": self.batch,
            "steps": self.steps,
            "seed": self.seed,
            # The mechanism study's records have no term: only a rescue arm names one.
            **({} if self.term is None else {"term": self.term}),
        }

    def __reduce__(self) -> Tuple[Any, ...]:
        # Rebuilt from the study's arguments (a spawned worker unpickles it).
        args = (self.arm, self.weight, self.batch, self.steps, self.seed, self.term)
        return (type(self), args)


def eval_steps(steps: int, evaluations: int) -> List[int]:
    """Steps 0, steps/10, ..., steps (every tenth of a run's own steps, rounded)."""
    return sorted(
        {
            (k * steps * 2 + evaluations) // (2 * evaluations)
            for k in range(evaluations + 1)
        }
    )


def stream_samples(config: StudyConfig) -> int:
    """Samples a view stream holds: the most any run of a (method, seed) reads."""
    return max(
        config.batch * config.steps,
        config.large_batch * config.large_steps,
    )


@dataclass(frozen=True)
class Task:
    """One unit of work: a view stream, an untrained evaluation or a run.

    ``wide``: an untrained evaluation of the wide backbone (:func:`is_wide`).
    """

    kind: str  # "stream", "untrained", "run"
    method: str = ""
    seed: int = 0
    spec: Optional[RunSpec] = None
    wide: bool = False

    @property
    def key(self) -> str:
        if self.kind == "stream":
            return f"stream {self.method} seed {self.seed}"
        if self.kind == "untrained":
            return f"untrained seed {self.seed}" + (" wide" if self.wide else "")
        assert self.spec is not None
        return self.spec.run_id

    @property
    def depends(self) -> Tuple[str, ...]:
        if self.kind != "run":
            return ()
        assert self.spec is not None
        return (
            Task("stream", self.spec.method, self.spec.seed).key,
            Task("untrained", seed=self.spec.seed, wide=is_wide(self.spec.arm)).key,
        )


def _runs(arms: Tuple[str, ...], seed: int, config: StudyConfig) -> List[Task]:
    tasks = []
    for arm in arms:  # w = 0 and w = 1 of an arm and seed adjacent
        for weight in ARMS[arm].weights:
            spec = RunSpec(arm, weight, config.batch, config.steps, seed)
            tasks.append(Task("run", spec=spec))
    return tasks


def batch_axis_specs(seed: int, config: StudyConfig) -> List[RunSpec]:
    """The three non-reference settings of each batch-axis member for one seed."""
    settings = (
        (config.small_batch, config.steps),  # fixed steps
        (config.small_batch, config.small_steps_fixed_samples),  # fixed samples
        (config.large_batch, config.large_steps),  # fixed samples
    )
    methods = list(dict.fromkeys(ARMS[arm].method for arm, _ in BATCH_MEMBERS))
    return [  # the members of a method at one setting adjacent (w = 0, w = 1)
        RunSpec(arm, weight, batch, steps, seed)
        for method in methods
        for batch, steps in settings
        for arm, weight in BATCH_MEMBERS
        if ARMS[arm].method == method
    ]


def plan(config: StudyConfig) -> List[Tuple[str, List[Task]]]:
    """The study's tasks in blocks, in the registered run order.

    1. view streams and untrained evaluations of the small seeds (0-2);
    2. headline arms, seeds 0-2; 3. intact arms and the uniformity control, 0-2;
    4. batch axis, 0-2; 5. view streams, untrained evaluations and headline arms of
    the other seeds (3-4); 6. intact arms of seeds 3-4.
    """
    first = [s for s in config.seeds if s in config.small_seeds]
    rest = [s for s in config.seeds if s not in config.small_seeds]
    extra = [s for s in config.small_seeds if s not in config.seeds]

    def setup(seeds: List[int]) -> List[Task]:
        tasks = [Task("stream", m, s) for s in seeds for m in METHODS]
        return tasks + [Task("untrained", seed=s) for s in seeds]

    blocks: List[Tuple[str, List[Task]]] = [
        ("view streams and untrained evaluations", setup(first + extra)),
        ("headline arms", [t for s in first for t in _runs(HEADLINE_ARMS, s, config)]),
        (
            "intact arms and uniformity control",
            [
                t
                for s in sorted(set(first) | set(extra))
                for t in (
                    (_runs(INTACT_ARMS, s, config) if s in config.seeds else [])
                    + (
                        _runs(("byol-unif",), s, config)
                        if s in config.small_seeds
                        else []
                    )
                )
            ],
        ),
        (
            "batch axis",
            [
                Task("run", spec=spec)
                for s in config.small_seeds
                for spec in batch_axis_specs(s, config)
            ],
        ),
        (
            "view streams, untrained evaluations and headline arms of the other seeds",
            setup(rest) + [t for s in rest for t in _runs(HEADLINE_ARMS, s, config)],
        ),
        (
            "intact arms of the other seeds",
            [t for s in rest for t in _runs(INTACT_ARMS, s, config)],
        ),
    ]
    return [(name, tasks) for name, tasks in blocks if tasks]


def all_tasks(config: StudyConfig) -> List[Task]:
    """The plan's tasks, in order."""
    return [t for _, tasks in plan(config) for t in tasks]


def run_specs(config: StudyConfig) -> List[RunSpec]:
    """Every run of the study, in order."""
    return [t.spec for t in all_tasks(config) if t.spec is not None]
