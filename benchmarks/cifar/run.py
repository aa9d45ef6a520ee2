"""One run of a CIFAR-10 sweep: its data loaders, its module, training, its record.

A run pretrains one method (original or ER objective) with PyTorch Lightning. After
every epoch :class:`~benchmarks.common.history.EpochHistory` records lightly's kNN
top-1 on the backbone features and, through :class:`HeldOutProbe`, on a fixed held-out
batch of evaluation images: the ER entropy of the output the objective sees (measured
as the run's loss measures it), and the collapse score and RankMe of the backbone
features. A run resumes from its ``last.ckpt``.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor
from torch.utils.data import DataLoader

from benchmarks.cifar.backbones import build_backbone
from benchmarks.cifar.config import (
    RunSpec,
    SweepConfig,
    on_cuda,
    resolve_precision,
)
from benchmarks.cifar.data import (
    ImageArrayDataset,
    ImageArrays,
    eval_transform,
    train_transform,
)
from benchmarks.cifar.methods import LIGHTLY_EMA, MoCo, SSLMethod, parse_method
from benchmarks.common.history import EpochHistory
from benchmarks.common.records import RunResult
from lightly_er.functional import collapse_score, effective_rank
from lightly_er.loss import entropy_settings
from lightly_er.monitoring import EntropyMeter

HELDOUT_SIZE = 256
"""Evaluation images on which the per-epoch entropy metrics are measured."""

RECORDED: Tuple[str, ...] = (
    "knn_top1",
    "er_entropy",
    "output_collapse_score",
    "collapse_score",
    "rankme",
)
"""What :class:`HeldOutProbe` adds to the history every epoch, by record name."""


class HeldOutProbe:
    """After every epoch: kNN top-1 and the entropy metrics of a held-out batch.

    On the fixed held-out images (evaluation transform, model in eval mode) it
    measures the ER entropy of the method's objective output with ``meter`` (the
    gap H - H_min in nats on the sphere, H / log K on a discrete support), that
    output's collapse score, and the collapse score and RankMe of the backbone
    features. It reads the accuracy that lightly's ``BenchmarkModule`` logs as
    ``kNN_accuracy`` (in percent); an epoch without it is not recorded.
    """

    def __init__(self, heldout: Tensor, meter: EntropyMeter) -> None:
        self.heldout = heldout
        self.meter = meter

    def __call__(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> Optional[Dict[str, float]]:
        accuracy = trainer.callback_metrics.get("kNN_accuracy")
        if accuracy is None:
            return None
        assert isinstance(pl_module, SSLMethod)
        return {"knn_top1": float(accuracy) / 100.0, **self.measure(pl_module)}

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
    # Measured as the loss measures (kappa or temperature from the loss itself), with
    # the sweep's estimator also for an original run.
    meter = EntropyMeter.for_loss(model.criterion, estimator=config.estimator)
    history = EpochHistory(HeldOutProbe(heldout_batch(data, config), meter))
    distributed = config.devices > 1
    precision = resolve_precision(config.precision, config.accelerator)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)
    trainer = pl.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy="ddp" if distributed else "auto",
        # SyncBatchNorm needs CUDA; CPU (gloo) DDP keeps per-process statistics.
        sync_batchnorm=distributed and on_cuda(config.accelerator),
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
    values = {key: history.val_metrics.get(key, []) for key in RECORDED}
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
    loss = entropy_settings(model.criterion) or {}
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
        kappa=loss.get("kappa"),
        estimator=loss.get("estimator") if meter.support == "sphere" else None,
        entropy_weight=getattr(model.criterion, "entropy_weight", None),
        er_entropy_kind="gap" if meter.support == "sphere" else "normalized",
        er_entropy_per_epoch=values["er_entropy"],
        output_collapse_score_per_epoch=values["output_collapse_score"],
        collapse_score_per_epoch=values["collapse_score"],
        rankme_per_epoch=values["rankme"],
        runtime_s=runtime,
        peak_gpu_memory_gb=peak,
        settings=settings,
    )


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
