"""The settings of a CIFAR-10 sweep, its presets, and the runs they describe.

Importable without torch (the command line's ``--help`` reads the defaults here).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from benchmarks.cifar.names import (
    BACKBONES,
    DATASETS,
    LIGHTLY_EMA,
    METHODS,
    MOCO_SPLITS,
    SPHERE_METHODS,
    TEACHER_METHODS,
    split_method,
)
from benchmarks.common.er_options import er_loss_kwargs
from benchmarks.common.runs import RunSpec as RunSpec


@dataclass
class SweepConfig:
    """Every setting of a sweep; :data:`PRESETS` gives the named starting points.

    The defaults are lightly's CIFAR-10 benchmark; every other value is a deliberate
    difference listed in :data:`benchmarks.cifar.differences.DIFFERENCES`.

    Attributes:
        methods: Method names (``simclr``, ``simclr_er``, ...).
        batch_sizes: Batch sizes to sweep (per device).
        epochs: Pretraining epochs per run.
        seeds: Seeds to repeat every setting with.
        emas: Constant EMA coefficients for methods with a teacher (lightly: 0.99).
        dataset: One of DATASETS.
        data_dir: Where the dataset is (or is downloaded to).
        log_dir: Where runs, tables and plots are written.
        backbone: ``resnet18`` (lightly's CIFAR variant) or ``small`` (a 3-layer CNN).
        image_size: Crop size; None: the dataset's own (32, 28, 16).
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        devices: Number of devices; more than 1 trains with DDP.
        precision: Lightning precision (lightly: ``32-true``); ``auto`` is
            ``16-mixed`` on a CUDA GPU and ``32-true`` elsewhere.
        num_workers: Data-loader workers.
        train_subset: Use only this many training images (None: all).
        test_subset: Evaluate kNN on only this many test images (None: all).
        knn_k: Neighbors of the kNN classifier.
        knn_t: Temperature of the kNN classifier.
        kappa: ER runs: kappa of the loss and meters (None: the rule).
        entropy_weight: ER runs: weight of the entropy term.
        estimator: Sphere entropy estimator of the ER loss and of all meters.
        progress_bar: Show Lightning's progress bar.
        jobs: Runs trained at once on the CPU, each in its own process with
            ``cpu_count // jobs`` threads; 1 trains them one after another here;
            :data:`AUTO_JOBS` (0) lets :func:`resolve_jobs` choose.
        allow_code_change: Resume runs made with other code than this checkout's
            (:func:`benchmarks.common.code.check_resume`).
    """

    methods: List[str] = field(default_factory=lambda: list(METHODS))
    batch_sizes: List[int] = field(default_factory=lambda: [128])
    epochs: int = 200
    seeds: List[int] = field(default_factory=lambda: [0])
    emas: List[float] = field(default_factory=lambda: [LIGHTLY_EMA])
    dataset: str = "cifar10"
    data_dir: Optional[Path] = None
    log_dir: Path = Path("benchmark_logs")
    backbone: str = "resnet18"
    image_size: Optional[int] = None
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    num_workers: int = 8
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    knn_k: int = 200
    knn_t: float = 0.1
    kappa: Optional[float] = None
    entropy_weight: float = 1.0
    estimator: str = "plugin"
    progress_bar: bool = True
    jobs: int = 1
    allow_code_change: bool = False

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting."""
        if not self.methods:
            raise ValueError("methods must name at least one method")
        for method in self.methods:
            split_method(method)
        if not self.batch_sizes or any(b < 2 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be >= 2, got {self.batch_sizes}")
        splits = MOCO_SPLITS
        if any(m.startswith("moco") for m in self.methods) and any(
            b % splits for b in self.batch_sizes
        ):
            raise ValueError(
                f"MoCo's split batch norm needs batch sizes divisible by {splits}, "
                f"got {self.batch_sizes}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if not self.emas or any(not 0.0 <= e < 1.0 for e in self.emas):
            raise ValueError(f"EMA coefficients must be in [0, 1), got {self.emas}")
        if self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}"
            )
        if self.data_dir is not None and self.data_dir.exists():
            if not self.data_dir.is_dir():
                raise ValueError(f"data dir {self.data_dir} is not a directory")
        elif self.data_dir is not None and self.dataset != "cifar10":
            raise ValueError(f"data dir {self.data_dir} does not exist")
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}"
            )
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image size must be >= 8, got {self.image_size}")
        if self.devices < 1 or self.num_workers < 0:
            raise ValueError("devices must be >= 1 and num_workers >= 0")
        if self.train_subset is not None and self.train_subset < 2:
            raise ValueError(f"train subset must be >= 2, got {self.train_subset}")
        if self.test_subset is not None and self.test_subset < 1:
            raise ValueError(f"test subset must be >= 1, got {self.test_subset}")
        if self.knn_k < 1:
            raise ValueError(f"knn k must be >= 1, got {self.knn_k}")
        if not (math.isfinite(self.knn_t) and self.knn_t > 0):
            raise ValueError(f"knn t must be positive, got {self.knn_t}")
        if self.kappa is not None and not (
            math.isfinite(self.kappa) and self.kappa > 0
        ):
            raise ValueError(f"kappa must be positive, got {self.kappa}")
        if not (math.isfinite(self.entropy_weight) and self.entropy_weight >= 0):
            raise ValueError(f"entropy weight must be >= 0, got {self.entropy_weight}")
        from lightly_er.utils.checks import check_estimator  # loads torch

        check_estimator(self.estimator)
        if self.jobs < 0:
            raise ValueError(
                f"jobs must be >= 0 (0: one run per CPU core), got {self.jobs}"
            )
        if self.jobs > 1 and (self.accelerator != "cpu" or self.devices != 1):
            raise ValueError(
                "jobs > 1 trains several runs at once on the CPU: it needs "
                f"accelerator 'cpu' and devices 1, got {self.accelerator!r} and "
                f"{self.devices}"
            )

    def er_kwargs(self, method: str) -> Dict[str, Any]:
        """The ER loss keywords this sweep gives the ER objective of method."""
        base, objective = split_method(method)
        return er_loss_kwargs(
            objective,
            sphere=base in SPHERE_METHODS,
            kappa=self.kappa,
            entropy_weight=self.entropy_weight,
            estimator=self.estimator,
        )


AUTO_JOBS = 0
"""``jobs`` that :func:`resolve_jobs` turns into one run per CPU core where the sweep
trains on the CPU, and one run at a time elsewhere."""

PRESETS: Dict[str, Dict[str, Any]] = {
    # The README's main job: every method once on scikit-learn's digits, in about a
    # minute on 2 CPU cores. A pipeline check, not a comparison: its loader and
    # scheduling settings are chosen for speed (no loader processes, which would
    # start again every epoch; one run per core, one thread each). Two epochs: half
    # of a run's time is lightly's augmentations, and two per-epoch evaluations
    # check the curves, the best/final columns and resume as well as three did.
    "smoke": dict(
        dataset="digits",
        backbone="small",
        batch_sizes=[64],
        epochs=2,
        seeds=[0],
        emas=[LIGHTLY_EMA],
        num_workers=0,
        knn_k=20,
        jobs=AUTO_JOBS,
    ),
    # lightly's published CIFAR-10 settings.
    "lightly": dict(
        dataset="cifar10",
        backbone="resnet18",
        batch_sizes=[128, 512],
        epochs=200,
        seeds=[0],
        emas=[LIGHTLY_EMA],
        num_workers=8,
        knn_k=200,
        knn_t=0.1,
    ),
}


def config_from_preset(preset: Optional[str], **overrides: Any) -> SweepConfig:
    """A SweepConfig from a preset (or the defaults) with overrides applied."""
    config = SweepConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(
                f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}"
            )
        config = replace(config, **PRESETS[preset])
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def expand_runs(config: SweepConfig) -> List[RunSpec]:
    """Every run of the sweep (:class:`benchmarks.common.runs.RunSpec`, budget in
    epochs); the EMA axis applies only to methods with a teacher."""
    specs = []
    for method in config.methods:
        teacher = split_method(method)[0] in TEACHER_METHODS
        emas: Sequence[Optional[float]] = config.emas if teacher else [None]
        for batch_size in config.batch_sizes:
            for ema in emas:
                for seed in config.seeds:
                    specs.append(
                        RunSpec(method, batch_size, ema, seed, epochs=config.epochs)
                    )
    return specs


def resolve_jobs(config: SweepConfig) -> SweepConfig:
    """config with :data:`AUTO_JOBS` resolved (any other ``jobs`` is kept).

    One run per CPU core (at most one per run) where the sweep trains on one device
    of the CPU: accelerator ``cpu``, or ``auto`` on a machine without a GPU (the
    accelerator then becomes ``cpu``, which ``auto`` would have chosen); one run at
    a time elsewhere.
    """
    if config.jobs != AUTO_JOBS:
        return config
    on_cpu = config.devices == 1 and (
        config.accelerator == "cpu"
        or (config.accelerator == "auto" and not on_cuda("auto") and not _on_mps())
    )
    if not on_cpu:
        return replace(config, jobs=1)
    jobs = max(1, min(os.cpu_count() or 1, len(expand_runs(config))))
    return replace(
        config, jobs=jobs, accelerator="cpu" if jobs > 1 else config.accelerator
    )


def _on_mps() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` becomes ``16-mixed`` where training runs on a CUDA GPU, else ``32-true``."""
    if precision != "auto":
        return precision
    return "16-mixed" if on_cuda(accelerator) else "32-true"


def on_cuda(accelerator: str) -> bool:
    import torch

    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
