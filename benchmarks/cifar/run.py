"""One run of a CIFAR-10 sweep: its owner, data loaders, module, training, record.

A run pretrains one method (original or ER objective) with PyTorch Lightning. After
every epoch :class:`~benchmarks.common.history.EpochHistory` records lightly's kNN
top-1 on the backbone features and, through :class:`HeldOutProbe`, on a fixed held-out
batch of evaluation images: the ER entropy of the output the objective sees (measured
as the run's loss measures it), and the collapse score and RankMe of the backbone
features.

A run folder (``<log-dir>/lightning/<run id>``) has one owner at a time: the process
that holds its ``run.lock`` (:mod:`benchmarks.cifar.claim`). A run resumes from its
``last.ckpt``, keeping its ``metrics.csv`` and adding up the
wall-clock time of every process that trained it (:mod:`benchmarks.common.resume`).
"""

from __future__ import annotations

import os
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
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
from benchmarks.cifar.methods import MoCo, SSLMethod, parse_method
from benchmarks.cifar.names import LIGHTLY_EMA
from benchmarks.common.code import (
    STARTED_NAME,
    current_code,
    read_started,
    write_started,
)
from benchmarks.common.er_options import er_variant
from benchmarks.common.history import EpochHistory
from benchmarks.common.records import RunResult
from benchmarks.common.resume import AppendingCSVLogger, RunClock
from lightly_er.functional import collapse_score, effective_rank
from lightly_er.monitoring import EntropyMeter, entropy_settings

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
    # The kNN images are deterministic: transformed once, served from memory, and
    # shared by the runs of a sweep that have the same images.
    knn_train = DataLoader(
        _evaluation_images(data, "train", config.train_subset, seed, size),
        batch_size=max(batch_size, 256),
    )
    knn_test = DataLoader(
        _evaluation_images(data, "test", config.test_subset, 0, size),
        batch_size=max(batch_size, 256),
    )
    return ssl, knn_train, knn_test


_EVALUATION_CACHE: Dict[Tuple[int, str, Optional[int], int, int], Any] = {}


def _evaluation_images(
    data: ImageArrays, split: str, subset: Optional[int], seed: int, size: int
) -> ImageArrayDataset:
    """The evaluation view of a split's subset, computed once per sweep process."""
    key = (id(data), split, subset, seed, size)
    if key not in _EVALUATION_CACHE:
        if len(_EVALUATION_CACHE) >= 4:  # a sweep's seeds at most, not a dataset zoo
            _EVALUATION_CACHE.pop(next(iter(_EVALUATION_CACHE)))
        images, labels = (
            (data.train_images, data.train_labels)
            if split == "train"
            else (data.test_images, data.test_labels)
        )
        images, labels = _subset(images, labels, subset, seed)
        views = ImageArrayDataset(images, labels, eval_transform(size), precompute=True)
        # The data stays referenced with them, so that its id is not reused.
        _EVALUATION_CACHE[key] = (data, views)
    cached: ImageArrayDataset = _EVALUATION_CACHE[key][1]
    return cached


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


def run_dir_of(spec: RunSpec, config: SweepConfig) -> Path:
    """The run's Lightning folder: checkpoints, metrics.csv and its lock."""
    return config.log_dir / "lightning" / spec.run_id


def make_trainer(
    config: SweepConfig,
    run_dir: Path,
    precision: str,
    callbacks: List[pl.Callback],
    steps_per_epoch: int,
) -> pl.Trainer:
    """The run's Lightning trainer: lightly's settings, the run folder's logger and
    checkpoints; the first of ``callbacks`` (the history) runs before the
    checkpoint, the others after it."""
    distributed = config.devices > 1
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)
    return pl.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy="ddp" if distributed else "auto",
        # SyncBatchNorm needs CUDA; CPU (gloo) DDP keeps per-process statistics.
        sync_batchnorm=distributed and on_cuda(config.accelerator),
        use_distributed_sampler=distributed,
        precision=precision,  # type: ignore[arg-type]
        logger=AppendingCSVLogger(str(run_dir), name="", version=""),
        callbacks=[callbacks[0], checkpoint, *callbacks[1:]],
        enable_progress_bar=config.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        num_sanity_val_steps=0,
        deterministic=False,
    )


def run_one(spec: RunSpec, config: SweepConfig, data: ImageArrays) -> RunResult:
    """Pretrains and evaluates one run; resumes from its last.ckpt if one exists.

    The caller owns the run folder (:func:`benchmarks.cifar.claim.train_claimed`).
    """
    cls, objective = parse_method(spec.method)
    pl.seed_everything(spec.seed, workers=True)
    run_dir = run_dir_of(spec, config)
    ssl, knn_train, knn_test = make_loaders(
        data, spec.method, spec.batch_size, config, spec.seed
    )
    model = build_model(spec, config, data, knn_train)
    # Measured as the loss measures (kappa or temperature from the loss itself), with
    # the sweep's estimator also for an original run.
    meter = EntropyMeter.for_loss(model.criterion, estimator=config.estimator)
    history = EpochHistory(HeldOutProbe(heldout_batch(data, config), meter))
    precision = resolve_precision(config.precision, config.accelerator)
    clock = RunClock()
    trainer = make_trainer(config, run_dir, precision, [history, clock], len(ssl))
    last = run_dir / "checkpoints" / "last.ckpt"
    code = current_code(ignore=[config.log_dir])
    if launched_rank() == 0:
        write_started(run_dir / STARTED_NAME, code, fresh=not last.is_file())
    started = read_started(run_dir / STARTED_NAME)
    cuda = torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock.start()
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
    runtime_parts = clock.parts()
    if trainer.interrupted:
        raise KeyboardInterrupt(f"run {spec.run_id} was interrupted")
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    values = {key: history.val_metrics.get(key, []) for key in RECORDED}
    if not values["knn_top1"]:
        raise RuntimeError(f"run {spec.run_id} recorded no kNN accuracy")
    settings = run_settings(config, data, model, len(ssl.dataset), precision, cuda)  # type: ignore[arg-type]
    settings["meter"] = meter.settings()
    settings["er_variant"] = er_variant(model.criterion)
    if started is not None and not started.same_code(code):
        # Resumed across a change of code (--allow-code-change): both are named.
        settings["started_with_code"] = started.to_dict()
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
        runtime_s=sum(runtime_parts),
        runtime_parts_s=runtime_parts,
        rebuilt_from_checkpoint=clock.rebuilt,
        peak_gpu_memory_gb=peak,
        settings=settings,
        code=code,
    )


def run_settings(
    config: SweepConfig,
    data: ImageArrays,
    model: SSLMethod,
    train_images: int,
    precision: str,
    cuda: bool,
) -> Dict[str, Any]:
    """The ``settings`` of a run's record: the sweep's, as this run used them."""
    settings = asdict(config)
    settings.update(
        data_dir=str(config.data_dir) if config.data_dir else None,
        log_dir=str(config.log_dir),
        image_size=image_size_of(config, data),
        feature_dim=model.feature_dim,
        train_images=train_images,
        precision=precision,
        lightly_version=_version("lightly"),
        torch_version=torch.__version__,
        device=_device_name(cuda),
    )
    for key in ("methods", "batch_sizes", "seeds", "emas", "kappa", "jobs"):
        settings.pop(key)
    settings.pop("allow_code_change")
    return settings


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


def run_label(spec: RunSpec, index: int, total: int) -> str:
    """``[3/12] byol       bs=64   ema=0.99   seed=0``: the start of a run's lines."""
    ema = "-" if spec.ema is None else f"{spec.ema:g}"
    return (
        f"[{index}/{total}] {spec.method:<10} bs={spec.batch_size:<4} "
        f"ema={ema:<6} seed={spec.seed}"
    )


def summary_line(result: RunResult, index: int, total: int) -> str:
    """The one line printed after a run finishes."""
    spec = RunSpec(
        result.method, result.batch_size, result.ema, result.seed, epochs=result.epochs
    )
    line = (
        f"{run_label(spec, index, total)}  kNN top-1 best {result.knn_top1:.3f} "
        f"final {result.knn_top1_final:.3f}  "
        f"collapse {_last(result.collapse_score_per_epoch)}  "
        f"{result.runtime_s:.0f}s"
    )
    if len(result.runtime_parts_s) > 1:
        line += f" ({len(result.runtime_parts_s)} processes)"
    if result.rebuilt_from_checkpoint:
        line += "  (record rebuilt from last.ckpt)"
    return line


def _last(values: Sequence[float]) -> str:
    return f"{values[-1]:.3f}" if values else "-"


def launched_rank() -> int:
    """This process's rank as its launcher set it (0 outside DDP), known before
    the process group exists (Lightning's rule: ``RANK``, then ``LOCAL_RANK``)."""
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 0
