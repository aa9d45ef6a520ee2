"""A resumable sweep of pretraining runs: methods x batch sizes x EMA x seeds.

Each run pretrains one method (original or ER objective) with PyTorch Lightning. After
every epoch it records lightly's kNN top-1 on the backbone features and, on a fixed
held-out batch of evaluation images, the ER entropy of the output the objective sees
(at the run's kappa), and the collapse score and RankMe of the backbone features. A
finished run writes ``runs/<run id>.json``; a restarted sweep skips every run that has
one, and resumes an unfinished run from its ``last.ckpt``. Tables and plots are
rewritten from all records at the end.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import time
import warnings
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from lightly.models import ResNetGenerator
from lightly.models.batchnorm import get_norm_layer
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader

from benchmarks.cifar.data import (
    DATASETS,
    ImageArrayDataset,
    ImageArrays,
    eval_transform,
    load_dataset,
    train_transform,
)
from benchmarks.cifar.methods import (
    LIGHTLY_EMA,
    METHODS,
    MoCo,
    SSLMethod,
    parse_method,
)
from benchmarks.cifar.plots import plot_curves, plot_sweep
from benchmarks.common.records import (
    RunResult,
    load_results,
    run_id,
    write_tables,
)
from lightly_er.functional import _check_estimator, collapse_score, effective_rank
from lightly_er.monitoring.meter import EntropyMeter
from lightly_er.utils.dist import global_rank

BACKBONES: Tuple[str, ...] = ("resnet18", "small")
HELDOUT_SIZE = 256
"""Evaluation images on which the per-epoch entropy metrics are measured."""


@dataclass
class SweepConfig:
    """Every setting of a sweep; :data:`PRESETS` gives the named starting points.

    The defaults are lightly's CIFAR-10 benchmark; every other value is a deliberate
    difference listed in :data:`tests.benchmarks.lightly_cifar10.DIFFERENCES`.

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
        knn_k: Neighbours of the kNN classifier.
        knn_t: Temperature of the kNN classifier.
        kappa: ER runs: kappa of the loss and meters (None: the rule).
        entropy_weight: ER runs: weight of the entropy term.
        estimator: Sphere entropy estimator of the ER loss and of all meters.
        progress_bar: Show Lightning's progress bar.
        jobs: Runs trained at once on the CPU, each in its own process with
            ``cpu_count // jobs`` threads; 1 trains them one after another here.
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

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting."""
        if not self.methods:
            raise ValueError("methods must name at least one method")
        for method in self.methods:
            parse_method(method)
        if not self.batch_sizes or any(b < 2 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be >= 2, got {self.batch_sizes}")
        splits = MoCo.num_splits
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
        _check_estimator(self.estimator)
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if self.jobs > 1 and (self.accelerator != "cpu" or self.devices != 1):
            raise ValueError(
                "jobs > 1 trains several runs at once on the CPU: it needs "
                f"accelerator 'cpu' and devices 1, got {self.accelerator!r} and "
                f"{self.devices}"
            )

    def er_kwargs(self, method: str) -> Dict[str, Any]:
        """The ER loss keywords this sweep gives the ER objective of method."""
        _, objective = parse_method(method)
        if objective != "er":
            return {}
        kwargs: Dict[str, Any] = {"entropy_weight": self.entropy_weight}
        base = method.removesuffix("_er")
        if base in ("simclr", "moco", "byol", "simsiam"):
            kwargs["estimator"] = self.estimator
            if self.kappa is not None:
                kwargs["kappa"] = self.kappa
        return kwargs


PRESETS: Dict[str, Dict[str, Any]] = {
    # The README's main job: every method once on scikit-learn's digits, in about
    # 3 minutes on 2 CPU cores. A pipeline check, not a comparison.
    "smoke": dict(
        dataset="digits",
        backbone="small",
        batch_sizes=[64],
        epochs=3,
        seeds=[0],
        emas=[LIGHTLY_EMA],
        num_workers=2,
        knn_k=20,
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


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep."""

    method: str
    batch_size: int
    ema: Optional[float]
    seed: int

    def run_id(self, epochs: int) -> str:
        return run_id(self.method, self.batch_size, self.ema, epochs, self.seed)


def expand_runs(config: SweepConfig) -> List[RunSpec]:
    """Every run of the sweep; the EMA axis applies only to methods with a teacher."""
    specs = []
    for method in config.methods:
        cls, _ = parse_method(method)
        emas: Sequence[Optional[float]] = config.emas if cls.has_teacher else [None]
        for batch_size in config.batch_sizes:
            for ema in emas:
                for seed in config.seeds:
                    specs.append(RunSpec(method, batch_size, ema, seed))
    return specs


class SmallBackbone(nn.Sequential):
    """A 3-layer CNN with 128 output features, for CPU runs.

    ``num_splits > 0`` uses lightly's split batch norm, as MoCo's ResNet does.
    """

    def __init__(self, num_splits: int = 0) -> None:
        layers: List[nn.Module] = []
        channels = [3, 32, 64, 128]
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:], strict=False)):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                get_norm_layer(c_out, num_splits),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(*layers)


def build_backbone(name: str, num_splits: int = 0) -> Tuple[nn.Module, int]:
    """(backbone, feature_dim) for ``resnet18`` (CIFAR variant) or ``small``."""
    if name == "resnet18":
        resnet = ResNetGenerator("resnet-18", num_splits=num_splits)
        return nn.Sequential(
            *list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1)
        ), 512
    if name == "small":
        return SmallBackbone(num_splits), 128
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")


class EpochHistory(Callback):
    """After every epoch: kNN top-1 and the entropy metrics of a held-out batch.

    On the fixed held-out images (evaluation transform, model in eval mode) it
    measures the ER entropy of the method's objective output with ``meter`` (the
    gap H - H_min in nats on the sphere, H / log K on a discrete support), that
    output's collapse score, and the collapse score and RankMe of the backbone
    features. Its state travels in Lightning checkpoints, so a resumed run keeps its
    history. It reads the accuracy in ``on_validation_end``: Lightning calls the
    callbacks' ``on_validation_epoch_end`` before the module's, where lightly's
    ``BenchmarkModule`` logs ``kNN_accuracy``.
    """

    KEYS: Tuple[str, ...] = (
        "knn_top1",
        "er_entropy",
        "output_collapse_score",
        "collapse_score",
        "rankme",
    )

    def __init__(self, heldout: Tensor, meter: EntropyMeter) -> None:
        self.heldout = heldout
        self.meter = meter
        self.values: Dict[str, List[float]] = {key: [] for key in self.KEYS}

    def on_validation_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        if trainer.sanity_checking:
            return
        accuracy = trainer.callback_metrics.get("kNN_accuracy")
        if accuracy is None:
            return
        assert isinstance(pl_module, SSLMethod)
        self.values["knn_top1"].append(float(accuracy) / 100.0)
        for key, value in self.measure(pl_module).items():
            self.values[key].append(value)

    @torch.no_grad()
    def measure(self, module: SSLMethod) -> Dict[str, float]:
        """The entropy metrics of the held-out batch (module in eval mode)."""
        training = module.training
        module.eval()
        try:
            x = self.heldout.to(module.device)
            features = module.features(x).float()
            output = module.objective_output(x).float()
        finally:
            module.train(training)
        metrics = self.meter.compute(output)
        if metrics is None:
            nan = float("nan")
            er, out_collapse = nan, nan
        else:
            key = (
                "entropy_gap"
                if self.meter.support == "sphere"
                else "normalized_entropy"
            )
            er, out_collapse = metrics[key], metrics["collapse_score"]
        return {
            "er_entropy": er,
            "output_collapse_score": out_collapse,
            "collapse_score": float(collapse_score(features)),
            "rankme": float(effective_rank(features)),
        }

    def state_dict(self) -> Dict[str, Any]:
        return {key: list(values) for key, values in self.values.items()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.values = {key: list(state_dict.get(key, [])) for key in self.KEYS}


def _subset(
    images: np.ndarray, labels: np.ndarray, size: Optional[int], seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """A random subset of ``size`` images (all of them for None), fixed by the seed."""
    if size is None or size >= len(images):
        return images, labels
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(images), generator=generator)[:size].numpy()
    return images[keep], labels[keep]


def image_size_of(config: SweepConfig, data: ImageArrays) -> int:
    """The crop size of a sweep: ``config.image_size`` or the dataset's."""
    return config.image_size if config.image_size is not None else data.image_size


def make_loaders(
    data: ImageArrays, method: str, batch_size: int, config: SweepConfig, seed: int
) -> Tuple[DataLoader[Any], DataLoader[Any], DataLoader[Any]]:
    """The (SSL training, kNN train, kNN test) loaders of one run.

    The training subset follows ``seed``; the test subset is the same for every run.
    """
    train_images, train_labels = _subset(
        data.train_images, data.train_labels, config.train_subset, seed
    )
    test_images, test_labels = _subset(
        data.test_images, data.test_labels, config.test_subset, 0
    )
    if batch_size > len(train_images):
        raise ValueError(
            f"batch size {batch_size} exceeds the {len(train_images)} training images"
        )
    if config.knn_k > len(train_images):
        raise ValueError(
            f"knn k {config.knn_k} exceeds the {len(train_images)} training images of "
            "the kNN bank"
        )
    size = image_size_of(config, data)
    common: Dict[str, Any] = dict(num_workers=config.num_workers)
    ssl = DataLoader(
        ImageArrayDataset(train_images, train_labels, train_transform(method, size)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        **common,
    )
    # The kNN images are deterministic: transformed once, served from memory.
    evaluation = eval_transform(size)
    knn_train = DataLoader(
        ImageArrayDataset(train_images, train_labels, evaluation, precompute=True),
        batch_size=max(batch_size, 256),
    )
    knn_test = DataLoader(
        ImageArrayDataset(test_images, test_labels, evaluation, precompute=True),
        batch_size=max(batch_size, 256),
    )
    return ssl, knn_train, knn_test


def heldout_batch(data: ImageArrays, config: SweepConfig) -> Tensor:
    """The fixed held-out batch: the last HELDOUT_SIZE test images, evaluation view."""
    images = data.test_images[-HELDOUT_SIZE:]
    transform = eval_transform(image_size_of(config, data))
    dataset = ImageArrayDataset(images, data.test_labels[-HELDOUT_SIZE:], transform)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def build_model(
    spec: RunSpec, config: SweepConfig, data: ImageArrays, knn_train: DataLoader[Any]
) -> SSLMethod:
    """The run's module: the method's class with the sweep's settings."""
    cls, objective = parse_method(spec.method)
    splits = MoCo.num_splits if cls is MoCo else 0
    backbone, feature_dim = build_backbone(config.backbone, splits)
    return cls(
        backbone,
        feature_dim,
        knn_train,
        data.num_classes,
        max_epochs=config.epochs,
        batch_size=spec.batch_size,
        objective=objective,
        ema=spec.ema if spec.ema is not None else LIGHTLY_EMA,
        knn_k=config.knn_k,
        knn_t=config.knn_t,
        er_kwargs=config.er_kwargs(spec.method),
        gather_distributed=config.devices > 1,
    )


def run_one(spec: RunSpec, config: SweepConfig, data: ImageArrays) -> RunResult:
    """Pretrains and evaluates one run; resumes from its last.ckpt if one exists."""
    cls, objective = parse_method(spec.method)
    pl.seed_everything(spec.seed, workers=True)
    run_dir = config.log_dir / "lightning" / spec.run_id(config.epochs)
    ssl, knn_train, knn_test = make_loaders(
        data, spec.method, spec.batch_size, config, spec.seed
    )
    model = build_model(spec, config, data, knn_train)
    meter = model.entropy_meter()
    if meter.support == "sphere":
        meter.estimator = config.estimator  # type: ignore[assignment]
    history = EpochHistory(heldout_batch(data, config), meter)
    distributed = config.devices > 1
    precision = resolve_precision(config.precision, config.accelerator)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)
    trainer = pl.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy="ddp" if distributed else "auto",
        # SyncBatchNorm needs CUDA; CPU (gloo) DDP keeps per-process statistics.
        sync_batchnorm=distributed and _on_cuda(config.accelerator),
        use_distributed_sampler=distributed,
        precision=precision,  # type: ignore[arg-type]
        logger=CSVLogger(str(run_dir), name="", version=""),
        callbacks=[history, checkpoint],
        enable_progress_bar=config.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, len(ssl))),
        num_sanity_val_steps=0,
        deterministic=False,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    cuda = torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(
            model,
            train_dataloaders=ssl,
            val_dataloaders=knn_test,
            ckpt_path=str(last) if last.is_file() else None,
        )
    except SystemExit:
        # Lightning answers Ctrl+C with a graceful shutdown and sys.exit(1), leaving
        # SIGINT ignored; turn that back into an interruption the sweep can report.
        if not trainer.interrupted:
            raise
    finally:
        if signal.getsignal(signal.SIGINT) != sigint and sigint is not None:
            signal.signal(signal.SIGINT, sigint)
    runtime = time.perf_counter() - start
    if trainer.interrupted:
        raise KeyboardInterrupt(f"run {spec.run_id(config.epochs)} was interrupted")
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    values = history.values
    if not values["knn_top1"]:
        raise RuntimeError(f"run {spec.run_id(config.epochs)} recorded no kNN accuracy")
    settings = asdict(config)
    settings.update(
        data_dir=str(config.data_dir) if config.data_dir else None,
        log_dir=str(config.log_dir),
        image_size=image_size_of(config, data),
        feature_dim=model.feature_dim,
        train_images=len(ssl.dataset),  # type: ignore[arg-type]
        precision=precision,
        meter=meter.settings(),
        lightly_version=_version("lightly"),
        torch_version=torch.__version__,
        device=_device_name(cuda),
    )
    for key in ("methods", "batch_sizes", "seeds", "emas", "kappa", "jobs"):
        settings.pop(key)
    er = model.er_settings()
    return RunResult(
        method=spec.method,
        model=_display_name(cls.name),
        objective=objective,
        dataset=config.dataset,
        batch_size=spec.batch_size,
        ema=spec.ema,
        epochs=config.epochs,
        seed=spec.seed,
        knn_top1=max(values["knn_top1"]),
        knn_top1_final=values["knn_top1"][-1],
        knn_top1_per_epoch=values["knn_top1"],
        kappa=er["kappa"],
        estimator=er["estimator"] if meter.support == "sphere" else None,
        entropy_weight=er["entropy_weight"],
        er_entropy_kind="gap" if meter.support == "sphere" else "normalized",
        er_entropy_per_epoch=values["er_entropy"],
        output_collapse_score_per_epoch=values["output_collapse_score"],
        collapse_score_per_epoch=values["collapse_score"],
        rankme_per_epoch=values["rankme"],
        runtime_s=runtime,
        peak_gpu_memory_gb=peak,
        settings=settings,
    )


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` becomes ``16-mixed`` where training runs on a CUDA GPU, else ``32-true``."""
    if precision != "auto":
        return precision
    return "16-mixed" if _on_cuda(accelerator) else "32-true"


def _on_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def _display_name(name: str) -> str:
    return {
        "simclr": "SimCLR",
        "moco": "MoCo",
        "byol": "BYOL",
        "simsiam": "SimSiam",
        "dino": "DINO",
        "swav": "SwaV",
    }[name]


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _device_name(cuda: bool) -> str:
    if cuda:
        return torch.cuda.get_device_name()
    return f"CPU ({torch.get_num_threads()} threads)"


def summary_line(result: RunResult, index: int, total: int) -> str:
    """The one line printed after a run finishes."""
    return (
        f"[{index}/{total}] {result.method:<10} bs={result.batch_size:<4} "
        f"ema={'-' if result.ema is None else f'{result.ema:g}':<6} "
        f"seed={result.seed}  kNN top-1 best {result.knn_top1:.3f} "
        f"final {result.knn_top1_final:.3f}  "
        f"collapse {_last(result.collapse_score_per_epoch)}  "
        f"{result.runtime_s:.0f}s"
    )


def _last(values: Sequence[float]) -> str:
    return f"{values[-1]:.3f}" if values else "-"


def run_specs(specs: Sequence[RunSpec], config: SweepConfig) -> None:
    """Runs every spec that has no finished record in ``config.log_dir``.

    With ``config.jobs`` > 1 the unfinished runs are trained ``jobs`` at a time, each
    in its own process; every run writes its record when it finishes. A finished
    record made with other result settings is refused (ValueError).
    """
    runs_dir = config.log_dir / "runs"
    todo: List[Tuple[int, RunSpec, Path]] = []
    for index, spec in enumerate(specs, start=1):
        path = runs_dir / f"{spec.run_id(config.epochs)}.json"
        if path.is_file():
            try:
                done: Optional[RunResult] = RunResult.load(path)
            except ValueError:
                done = None  # a damaged record, or an older format: run it again
            if done is not None:
                check_same_settings(done, config, path)
                print(summary_line(done, index, len(specs)) + "  (done before, kept)")
                continue
        todo.append((index, spec, path))
    if not todo:
        return
    if config.jobs > 1 and len(todo) > 1:
        _run_in_processes(todo, len(specs), config)
        return
    data = load_dataset(config.dataset, config.data_dir)
    for index, spec, path in todo:
        result = run_one(spec, config, data)
        if global_rank() != 0:
            continue  # under DDP, rank 0 alone writes records, tables and plots
        result.save(path)
        print(summary_line(result, index, len(specs)), flush=True)


_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")
_worker_data: Dict[Tuple[str, Optional[Path]], ImageArrays] = {}


def _init_worker(
    threads: int, levels: Dict[str, int], filters: List[Any], start_method: str
) -> None:
    """A run process: its share of the cores, the parent's logging and warnings."""
    # A spawned process defaults to spawn: its data-loader workers would import torch
    # again every epoch (2.5x slower runs on 2 cores). They start as the parent's do.
    multiprocessing.set_start_method(start_method, force=True)
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    warnings.filters[:] = filters  # type: ignore[index]


def _run_and_save(spec: RunSpec, config: SweepConfig, path: Path) -> RunResult:
    """One run in a worker process; the record is written before the parent hears."""
    key = (config.dataset, config.data_dir)
    if key not in _worker_data:  # a worker trains several runs: load the data once
        _worker_data[key] = load_dataset(config.dataset, config.data_dir)
    result = run_one(spec, config, _worker_data[key])
    result.save(path)
    return result


def _worker_pool(workers: int, jobs: int) -> ProcessPoolExecutor:
    """``workers`` run processes, each with ``cpu_count // jobs`` threads."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    levels = {name: logging.getLogger(name).level for name in _LIGHTNING_LOGGERS}
    return ProcessPoolExecutor(
        max_workers=workers,
        # spawn: a fresh interpreter, not a fork of one holding torch's threads
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        # the run processes start their data-loader workers as this process does
        initargs=(
            threads,
            levels,
            list(warnings.filters),
            multiprocessing.get_start_method(),
        ),
    )


def _run_in_processes(
    todo: Sequence[Tuple[int, RunSpec, Path]], total: int, config: SweepConfig
) -> None:
    """Trains the runs ``config.jobs`` at a time; the first failure stops the rest."""
    pool = _worker_pool(min(config.jobs, len(todo)), config.jobs)
    futures: Dict[Future[RunResult], int] = {}
    try:
        for index, spec, path in todo:
            futures[pool.submit(_run_and_save, spec, config, path)] = index
        for future in as_completed(futures):
            print(summary_line(future.result(), futures[future], total), flush=True)
    except BaseException:
        # Runs not started are dropped; those under way finish (or are interrupted
        # with the parent by Ctrl-C); every finished record is on disk already.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_sweep(config: SweepConfig) -> List[RunResult]:
    """Runs every unfinished run of the sweep, then writes tables and plots.

    Returns all results of the log directory's ``runs/`` (earlier ones included);
    under DDP, processes other than rank 0 return an empty list.
    """
    config.validate()
    run_specs(expand_runs(config), config)
    if global_rank() != 0:
        return []
    results = [r for r in load_results(config.log_dir) if r.dataset == config.dataset]
    if results:
        table = write_tables(config.log_dir, results)
        plot_curves(results, config.log_dir / "curves.png")
        plot_sweep(results, "batch_size", config.log_dir / "top1_vs_batch_size.png")
        plot_sweep(results, "ema", config.log_dir / "top1_vs_ema.png")
        print()
        print(table)
    return results


# Settings that change a run's result but not its run id: a record made with other
# values must not stand in for this sweep's run.
RESULT_SETTINGS: Tuple[str, ...] = (
    "dataset",
    "backbone",
    "image_size",
    "train_subset",
    "test_subset",
    "knn_k",
    "knn_t",
    "entropy_weight",
    "estimator",
    "precision",
)


def check_same_settings(done: RunResult, config: SweepConfig, path: Path) -> None:
    """Raises ValueError if a finished record was made with other result settings."""
    for key in RESULT_SETTINGS:
        old = done.settings.get(key)
        if key == "image_size":
            if config.image_size is None or old == config.image_size:
                continue
            new: Any = config.image_size
        elif key == "precision":
            new = resolve_precision(config.precision, config.accelerator)
        else:
            new = getattr(config, key)
        if old != new:
            raise ValueError(
                f"{path} was run with {key}={old!r} but this sweep has {key}={new!r}; "
                "give another --log-dir, or the same settings to resume"
            )
    if config.kappa is not None and done.objective == "er" and done.kappa is not None:
        if done.kappa != config.kappa:
            raise ValueError(
                f"{path} was run with kappa={done.kappa!r} but this sweep has "
                f"kappa={config.kappa!r}; give another --log-dir"
            )


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
