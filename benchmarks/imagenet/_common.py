"""Data, logging and trainer pieces shared by the ResNet-50 and ViT benchmarks.

The values follow lightly's ``benchmarks/imagenet/*/main.py`` and its ``*_eval.py``
files (transcribed in ``tests/benchmarks/lightly_imagenet.py``); where this module
departs from them, the departure is a row of
:data:`benchmarks.imagenet.differences.DIFFERENCES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from lightly.data import LightlyDataset
from lightly.transforms.torchvision_v2_compatibility import torchvision_transforms as T
from lightly.transforms.utils import IMAGENET_NORMALIZE
from lightly.utils.benchmarking import MetricCallback
from lightly.utils.dist import print_rank_zero
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import DeviceStatsMonitor, LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger
from torch.utils.data import DataLoader

from benchmarks.common.code import CodeVersion
from benchmarks.common.history import best_metrics
from benchmarks.common.tables import markdown_table

Limit = Union[int, float, None]

REFERENCE_SIZE = 224
"""The crop size of lightly's ImageNet benchmarks; other sizes scale from it."""


@dataclass(frozen=True)
class RunConfig:
    """Settings shared by pretraining and every evaluation of one run.

    Attributes:
        train_dir: ImageFolder tree (one folder per class) of the training images.
        val_dir: ImageFolder tree of the validation images.
        batch_size_per_device: Batch size of one process.
        num_workers: Data-loading processes per device.
        accelerator: Lightning accelerator (``"gpu"``, ``"cpu"``, ...).
        devices: Number of devices.
        precision: Lightning precision of pretraining, linear and fine-tuning runs.
        strategy: Lightning strategy of every stage (lightly's default is
            ``"ddp_find_unused_parameters_true"``).
        num_classes: Number of classes of the classifiers.
        image_size: Crop size of training and evaluation images.
        limit_train_batches: Lightning's limit of training batches per epoch.
        limit_val_batches: Lightning's limit of validation batches.
        device_stats: Whether every stage logs Lightning's DeviceStatsMonitor.
        code: The code the run is made with (None: not read).
    """

    train_dir: Path
    val_dir: Path
    batch_size_per_device: int
    num_workers: int
    accelerator: str
    devices: int
    precision: str
    strategy: str
    num_classes: int
    image_size: int = REFERENCE_SIZE
    limit_train_batches: Limit = None
    limit_val_batches: Limit = None
    device_stats: bool = False
    code: Optional[CodeVersion] = None

    def limits(self, train: bool = True) -> Dict[str, Any]:
        """The batch limits that are set, as Trainer keyword arguments.

        With a limit of fewer than 50 training batches, every step is logged
        (Lightning logs every 50 steps by default).

        Args:
            train: Whether the stage trains (a kNN evaluation only validates).
        """
        out: Dict[str, Any] = {}
        if train and self.limit_train_batches is not None:
            out["limit_train_batches"] = self.limit_train_batches
            if isinstance(self.limit_train_batches, int):
                if self.limit_train_batches < 50:
                    out["log_every_n_steps"] = 1
        if self.limit_val_batches is not None:
            out["limit_val_batches"] = self.limit_val_batches
        return out

    def callbacks(self, *extra: Callback) -> List[Callback]:
        """DeviceStatsMonitor (when asked for) followed by the given callbacks."""
        stats: List[Callback] = [DeviceStatsMonitor()] if self.device_stats else []
        return stats + list(extra)


def scaled_size(image_size: int, reference: int) -> int:
    """The size that is to ``image_size`` what ``reference`` is to 224 (at least 8).

    Examples:
        >>> scaled_size(224, 96), scaled_size(224, 256), scaled_size(32, 96)
        (96, 256, 14)
    """
    if image_size == REFERENCE_SIZE:
        return reference
    return max(8, -(-image_size * reference // REFERENCE_SIZE))


def eval_transform(image_size: int = REFERENCE_SIZE) -> Any:
    """lightly's evaluation transform: resize to 256, center crop 224, normalize.

    Other crop sizes resize to ``image_size * 256 / 224``.
    """
    return T.Compose(
        [
            T.Resize(scaled_size(image_size, 256)),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]),
        ]
    )


def train_transform(image_size: int = REFERENCE_SIZE) -> Any:
    """lightly's linear and fine-tuning training transform: random crop and flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]),
        ]
    )


def make_loader(
    directory: Path,
    transform: Callable[[Any], Any],
    config: RunConfig,
    *,
    shuffle: bool,
    drop_last: bool,
    persistent: bool,
    collate_fn: Optional[Callable[[Any], Any]] = None,
) -> DataLoader[Any]:
    """A loader of (image(s), target, filename) batches of an ImageFolder tree.

    Args:
        directory: The ImageFolder tree.
        transform: Applied to every image.
        config: Batch size and workers.
        shuffle: Whether to shuffle.
        drop_last: Whether to drop the last, smaller batch.
        persistent: Whether lightly keeps the workers alive between epochs there
            (only where there are workers: PyTorch refuses it without).
        collate_fn: The loader's collate function (PyTorch's default if None).
    """
    dataset = LightlyDataset(input_dir=str(directory), transform=transform)
    return DataLoader(
        dataset,
        batch_size=config.batch_size_per_device,
        shuffle=shuffle,
        num_workers=config.num_workers,
        drop_last=drop_last,
        persistent_workers=persistent and config.num_workers > 0,
        collate_fn=collate_fn,
    )


def eval_loader(
    directory: Path, config: RunConfig, persistent: bool = True
) -> DataLoader[Any]:
    """A loader of an ImageFolder tree with the evaluation transform, in order."""
    transform = eval_transform(config.image_size)
    return make_loader(
        directory,
        transform,
        config,
        shuffle=False,
        drop_last=False,
        persistent=persistent,
    )


def make_loggers(log_dir: Path, name: str) -> List[Logger]:
    """lightly's TensorBoard logger and a CSV logger, both in ``log_dir/name``.

    Each stage runs once per run folder, so both write to ``version_0``.
    """
    # The CSV logger first: it warns when its folder already holds files.
    return [
        CSVLogger(save_dir=str(log_dir), name=name, version=0),
        TensorBoardLogger(save_dir=str(log_dir), name=name, version=0),
    ]


def warmup_steps(trainer: Trainer, warmup_epochs: float) -> int:
    """lightly's warmup length in steps, capped at the length of the run.

    lightly computes ``int(estimated_stepping_batches / max_epochs * warmup_epochs)``
    and its scheduler refuses a warmup longer than the run, which happens when the
    run has fewer epochs than the warmup; here the warmup then spans the whole run.
    """
    total = int(trainer.estimated_stepping_batches)
    epochs = trainer.max_epochs or 1
    return min(int(trainer.estimated_stepping_batches / epochs * warmup_epochs), total)


def make_classifier(
    cls: Callable[..., LightningModule], model: Any, config: RunConfig
) -> Any:
    """An evaluation classifier of lightly's (or a subclass) on the model's features,
    whose size the model's online classifier gives."""
    return cls(
        model=model,
        batch_size_per_device=config.batch_size_per_device,
        feature_dim=model.online_classifier.feature_dim,
        num_classes=config.num_classes,
    )


def fit_classifier(
    classifier: LightningModule,
    config: RunConfig,
    log_dir: Path,
    stage: str,
    epochs: int,
    train_images: Callable[[Any], Any],
) -> Dict[str, float]:
    """Trains an evaluation classifier as lightly's ``linear_eval``/``finetune_eval``.

    Args:
        classifier: lightly's LinearClassifier, FinetuneClassifier or a subclass.
        config: Data and trainer settings.
        log_dir: The run folder; metrics go to ``log_dir/stage``.
        stage: ``"linear_eval"`` or ``"finetune_eval"``.
        epochs: Training epochs.
        train_images: Transform of the training images.

    Returns:
        The best ``val_top1`` and ``val_top5`` over the epochs, in [0, 1].
    """
    print_rank_zero(f"Running {stage.replace('_', ' ')}...")
    metric_callback = MetricCallback()
    trainer = Trainer(
        max_epochs=epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        callbacks=config.callbacks(LearningRateMonitor(), metric_callback),
        logger=make_loggers(log_dir, stage),
        precision=config.precision,  # type: ignore[arg-type]
        strategy=config.strategy,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        **config.limits(),
    )
    trainer.fit(
        model=classifier,
        train_dataloaders=make_loader(
            config.train_dir,
            train_images,
            config,
            shuffle=True,
            drop_last=True,
            persistent=True,
        ),
        val_dataloaders=eval_loader(config.val_dir, config),
    )
    metrics = best_metrics(metric_callback, ["val_top"])
    for name, value in metrics.items():
        print_rank_zero(f"max {stage.split('_')[0]} {name}: {value}")
    return metrics


def metrics_table(metrics: Dict[str, Dict[str, float]]) -> str:
    """The evaluation results as a Markdown table (stage, metric, value).

    Examples:
        >>> print(metrics_table({"knn": {"val_knn_top1": 0.5}}))
        | Eval Name | Metric Name | Value |
        |:---:|:---:|:---:|
        | knn | val_knn_top1 | 0.50 |
    """
    rows = [
        (stage, name, f"{value:.2f}")
        for stage, values in metrics.items()
        for name, value in values.items()
    ]
    # lightly prints its results table centered and without a final newline.
    columns = ("Eval Name", "Metric Name", "Value")
    return markdown_table(columns, rows, "ccc").rstrip("\n")
