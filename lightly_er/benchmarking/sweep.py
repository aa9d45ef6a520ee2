"""A resumable sweep of pretraining runs: methods x batch sizes x EMA x seeds.

Each run pretrains one method (original or ER objective) with PyTorch Lightning,
evaluates a kNN classifier on the backbone features after every epoch (lightly's
``BenchmarkModule``) and records the normalised entropy of those features. A finished
run writes ``runs/<run id>.json``; a restarted sweep skips every run that has one, and
resumes an unfinished run from its ``last.ckpt``. Tables and plots are rewritten from
all records at the end.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from lightly.models import ResNetGenerator
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from lightly_er.benchmarking.datasets import (
    DATASETS,
    ImageArrayDataset,
    ImageArrays,
    eval_transform,
    load_dataset,
    train_transform,
)
from lightly_er.benchmarking.methods import METHODS, SSLMethod, parse_method
from lightly_er.benchmarking.plots import plot_curves, plot_sweep
from lightly_er.benchmarking.results import (
    RunResult,
    load_results,
    run_id,
    write_tables,
)
from lightly_er.monitoring import EntropyMeter

BACKBONES: Tuple[str, ...] = ("resnet18", "small")


@dataclass
class SweepConfig:
    """Every setting of a sweep; ``presets`` gives the named starting points.

    Attributes:
        methods: Method names (``simclr``, ``simclr_er``, ...).
        batch_sizes: Batch sizes to sweep.
        epochs: Pretraining epochs per run.
        seeds: Seeds to repeat every setting with.
        emas: EMA coefficients to sweep for methods with a teacher.
        dataset: One of DATASETS.
        data_dir: Where the dataset is (or is downloaded to).
        log_dir: Where runs, tables and plots are written.
        backbone: ``resnet18`` (lightly's CIFAR variant: 3x3 stem, no max-pool) or
            ``small`` (a 3-layer CNN for CPU smoke runs).
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        devices: Number of devices; more than 1 trains with DDP and gathered losses.
        precision: Lightning precision (``32-true``, ``16-mixed``, ``bf16-mixed``), or
            ``auto``: mixed precision (``16-mixed``) on a CUDA GPU, ``32-true`` else.
        num_workers: Data-loader workers.
        train_subset: Use only this many training images (None: all), drawn with
            the run's seed.
        test_subset: Evaluate kNN on only this many test images (None: all), the
            same images for every run.
        knn_k: Neighbours of the kNN classifier.
        knn_t: Temperature of the kNN classifier.
        progress_bar: Show Lightning's progress bar.
    """

    methods: List[str] = field(default_factory=lambda: list(METHODS))
    batch_sizes: List[int] = field(default_factory=lambda: [128])
    epochs: int = 200
    seeds: List[int] = field(default_factory=lambda: [0])
    emas: List[float] = field(default_factory=lambda: [0.99])
    dataset: str = "cifar10"
    data_dir: Optional[Path] = None
    log_dir: Path = Path("benchmark_logs")
    backbone: str = "resnet18"
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "auto"
    num_workers: int = 8
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    knn_k: int = 200
    knn_t: float = 0.1
    progress_bar: bool = True

    def validate(self) -> None:
        """Raises ValueError naming the first bad setting."""
        for method in self.methods:
            parse_method(method)
        if not self.methods:
            raise ValueError("methods must name at least one method")
        if not self.batch_sizes or any(b < 2 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be >= 2, got {self.batch_sizes}")
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
        if self.data_dir is not None and not self.data_dir.is_dir():
            if self.dataset != "cifar10":
                raise ValueError(f"data dir {self.data_dir} does not exist")
        if self.dataset == "cifar10" and self.data_dir is None:
            raise ValueError("the cifar10 dataset needs --data-dir")
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}"
            )
        if self.devices < 1 or self.num_workers < 0:
            raise ValueError("devices must be >= 1 and num_workers >= 0")
        if self.train_subset is not None and self.train_subset < 2:
            raise ValueError(f"train subset must be >= 2, got {self.train_subset}")
        if self.test_subset is not None and self.test_subset < 1:
            raise ValueError(f"test subset must be >= 1, got {self.test_subset}")


PRESETS: Dict[str, Dict[str, Any]] = {
    # The README's main job: every method once on scikit-learn's digits, in about
    # 3 minutes on 2 CPU cores (augmentation dominates, hence the 2 workers).
    "smoke": dict(
        dataset="digits",
        backbone="small",
        batch_sizes=[64],
        epochs=3,
        seeds=[0],
        emas=[0.99],
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
        emas=[0.99],
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
    """A 3-layer CNN with 128 output features, for fast CPU smoke runs."""

    def __init__(self) -> None:
        layers: List[nn.Module] = []
        channels = [3, 32, 64, 128]
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:], strict=False)):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(*layers)


def build_backbone(name: str) -> Tuple[nn.Module, int]:
    """(backbone, feature_dim) for ``resnet18`` (CIFAR variant) or ``small``."""
    if name == "resnet18":
        resnet = ResNetGenerator("resnet-18")
        return nn.Sequential(
            *list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1)
        ), 512
    if name == "small":
        return SmallBackbone(), 128
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")


class EpochHistory(Callback):
    """Records kNN top-1 and the normalised feature entropy after every epoch.

    The entropy is that of the L2-normalised backbone features of the kNN train set,
    which ``BenchmarkModule`` has just computed, measured with the vMF KDE of an
    ``EntropyMeter`` on at most ``max_points`` of them. Its state travels in Lightning
    checkpoints, so a resumed run keeps its history.

    It reads the accuracy in ``on_validation_end``: Lightning calls the callbacks'
    ``on_validation_epoch_end`` before the module's, where ``BenchmarkModule`` logs
    ``kNN_accuracy``, so that hook would see the previous epoch's value.
    """

    def __init__(self, max_points: int = 2048) -> None:
        self.max_points = max_points
        self.knn_top1: List[float] = []
        self.entropy: List[float] = []

    def on_validation_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        if trainer.sanity_checking:
            return
        accuracy = trainer.callback_metrics.get("kNN_accuracy")
        if accuracy is None:
            return
        self.knn_top1.append(float(accuracy) / 100.0)
        features = getattr(pl_module, "_train_features", None)
        if features is not None:
            points = features.t()[: self.max_points].float()
            meter = EntropyMeter(support="sphere")
            metrics = meter.update(points)
            if metrics is not None:
                self.entropy.append(float(metrics["normalized_entropy"]))

    def state_dict(self) -> Dict[str, Any]:
        return {"knn_top1": self.knn_top1, "entropy": self.entropy}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.knn_top1 = list(state_dict["knn_top1"])
        self.entropy = list(state_dict["entropy"])


def _subset(
    images: np.ndarray, labels: np.ndarray, size: Optional[int], seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """A random subset of ``size`` images (all of them for None), fixed by the seed."""
    if size is None or size >= len(images):
        return images, labels
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(images), generator=generator)[:size].numpy()
    return images[keep], labels[keep]


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
    common: Dict[str, Any] = dict(num_workers=config.num_workers)
    ssl = DataLoader(
        ImageArrayDataset(
            train_images, train_labels, train_transform(method, data.image_size)
        ),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        **common,
    )
    evaluation = eval_transform(data.image_size)
    knn_train = DataLoader(
        ImageArrayDataset(train_images, train_labels, evaluation),
        batch_size=max(batch_size, 256),
        **common,
    )
    knn_test = DataLoader(
        ImageArrayDataset(test_images, test_labels, evaluation),
        batch_size=max(batch_size, 256),
        **common,
    )
    return ssl, knn_train, knn_test


def run_one(spec: RunSpec, config: SweepConfig, data: ImageArrays) -> RunResult:
    """Pretrains and evaluates one run; resumes from its last.ckpt if one exists."""
    cls, objective = parse_method(spec.method)
    pl.seed_everything(spec.seed, workers=True)
    run_dir = config.log_dir / "lightning" / spec.run_id(config.epochs)
    ssl, knn_train, knn_test = make_loaders(
        data, spec.method, spec.batch_size, config, spec.seed
    )
    backbone, feature_dim = build_backbone(config.backbone)
    distributed = config.devices > 1
    model: SSLMethod = cls(
        backbone,
        feature_dim,
        knn_train,
        data.num_classes,
        max_epochs=config.epochs,
        batch_size=spec.batch_size,
        objective=objective,
        ema=spec.ema if spec.ema is not None else 0.99,
        knn_k=min(config.knn_k, len(knn_train.dataset)),  # type: ignore[arg-type]
        knn_t=config.knn_t,
        gather_distributed=distributed,
    )
    history = EpochHistory()
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
    if not history.knn_top1:
        raise RuntimeError(f"run {spec.run_id(config.epochs)} recorded no kNN accuracy")
    settings = asdict(config)
    settings.update(
        data_dir=str(config.data_dir) if config.data_dir else None,
        log_dir=str(config.log_dir),
        feature_dim=feature_dim,
        train_images=len(ssl.dataset),  # type: ignore[arg-type]
        precision=precision,
        lightly_version=_version("lightly"),
        torch_version=torch.__version__,
        device=_device_name(cuda),
    )
    for key in ("methods", "batch_sizes", "seeds", "emas"):
        settings.pop(key)
    return RunResult(
        method=spec.method,
        model=_display_name(cls.name),
        objective=objective,
        dataset=config.dataset,
        batch_size=spec.batch_size,
        ema=spec.ema,
        epochs=config.epochs,
        seed=spec.seed,
        knn_top1=max(history.knn_top1),
        knn_top1_per_epoch=history.knn_top1,
        entropy_per_epoch=history.entropy,
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
    entropy = result.final_entropy
    return (
        f"[{index}/{total}] {result.method:<10} bs={result.batch_size:<4} "
        f"ema={'-' if result.ema is None else f'{result.ema:g}':<6} "
        f"seed={result.seed}  kNN top-1 {result.knn_top1:.3f}  "
        f"entropy {'-' if entropy is None else f'{entropy:.3f}'}  "
        f"{result.runtime_s:.0f}s"
    )


def run_sweep(config: SweepConfig) -> List[RunResult]:
    """Runs every unfinished run of the sweep, then writes tables and plots.

    Returns all results of the log directory's ``runs/`` (earlier ones included);
    under DDP, processes other than rank 0 return an empty list.
    """
    config.validate()
    data = load_dataset(config.dataset, config.data_dir)
    specs = expand_runs(config)
    runs_dir = config.log_dir / "runs"
    for index, spec in enumerate(specs, start=1):
        path = runs_dir / f"{spec.run_id(config.epochs)}.json"
        if path.is_file():
            try:
                done: Optional[RunResult] = RunResult.load(path)
            except ValueError:
                done = None  # a damaged record: run it again
            if done is not None:
                check_same_settings(done, config, path)
                print(summary_line(done, index, len(specs)) + "  (done before, kept)")
                continue
        result = run_one(spec, config, data)
        if _global_rank() != 0:
            continue  # under DDP, rank 0 alone writes records, tables and plots
        result.save(path)
        print(summary_line(result, index, len(specs)), flush=True)
    if _global_rank() != 0:
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
    "train_subset",
    "test_subset",
    "knn_k",
    "knn_t",
)


def check_same_settings(done: RunResult, config: SweepConfig, path: Path) -> None:
    """Raises ValueError if a finished record was made with other result settings."""
    for key in RESULT_SETTINGS:
        old, new = done.settings.get(key), getattr(config, key)
        if old != new:
            raise ValueError(
                f"{path} was run with {key}={old!r} but this sweep has {key}={new!r}; "
                "give another --log-dir, or the same settings to resume"
            )


def _global_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


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
