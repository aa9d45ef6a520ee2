"""kNN, linear and fine-tuning evaluation of a pretrained backbone.

Settings as lightly's ImageNet benchmark: kNN with k=200 and temperature 0.1 on
L2-normalised features (InstDisc); linear evaluation of the frozen backbone for 90
epochs (SGD, lr 0.1 per 256 images, momentum 0.9, no weight decay, cosine schedule,
SimCLR); fine-tuning of the whole network for 30 epochs (lr 0.05 per 256 images). The
classifiers are lightly's ``KNNClassifier``, ``LinearClassifier`` and
``FinetuneClassifier``; metrics go to TensorBoard and to a CSV file
(``<log_dir>/<stage>/version_0/metrics.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from lightly.data import LightlyDataset
from lightly.transforms.utils import IMAGENET_NORMALIZE
from lightly.utils.benchmarking import (
    FinetuneClassifier,
    KNNClassifier,
    LinearClassifier,
    MetricCallback,
)
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms as T

from ._base import topk_for

Limit = Union[int, float, None]


@dataclass(frozen=True)
class RunConfig:
    """Settings shared by pretraining and every evaluation.

    Attributes:
        train_dir: ImageFolder tree (one folder per class) of the training images.
        val_dir: ImageFolder tree of the validation images.
        batch_size_per_device: Batch size of one process.
        num_workers: Data-loading processes per device.
        accelerator: Lightning accelerator (``"gpu"``, ``"cpu"``, ...).
        devices: Number of devices (processes with DDP).
        precision: Lightning precision (``"16-mixed"``, ``"bf16-mixed"``, ``"32"``).
        num_classes: Number of classes of the classifiers.
        image_size: Crop size of training and evaluation images.
        limit_train_batches: Lightning's limit of training batches per epoch.
        limit_val_batches: Lightning's limit of validation batches.
    """

    train_dir: Path
    val_dir: Path
    batch_size_per_device: int
    num_workers: int
    accelerator: str
    devices: int
    precision: str
    num_classes: int
    image_size: int = 224
    limit_train_batches: Limit = None
    limit_val_batches: Limit = None

    @property
    def distributed(self) -> bool:
        """Whether training runs in several processes (DDP)."""
        return self.devices > 1

    def strategy(self) -> str:
        """lightly's DDP strategy with several devices, else Lightning's default."""
        return "ddp_find_unused_parameters_true" if self.distributed else "auto"

    def limits(self) -> Dict[str, Any]:
        """The batch limits that are set, as Trainer keyword arguments.

        With fewer than 50 training batches per epoch, every step is logged.
        """
        out: Dict[str, Any] = {}
        train_limit = self.limit_train_batches
        if isinstance(train_limit, int) and train_limit < 50:
            out["log_every_n_steps"] = 1
        if self.limit_train_batches is not None:
            out["limit_train_batches"] = self.limit_train_batches
        if self.limit_val_batches is not None:
            out["limit_val_batches"] = self.limit_val_batches
        return out


def eval_transform(image_size: int = 224) -> T.Compose:
    """Resize to 256 / 224 of the crop size, center crop, ImageNet normalisation."""
    return T.Compose(
        [
            T.Resize(int(round(image_size * 256 / 224))),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]),
        ]
    )


def train_transform(image_size: int = 224) -> T.Compose:
    """Random resized crop and flip, ImageNet normalisation (linear, fine-tuning)."""
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
    shuffle: bool,
    drop_last: bool,
) -> DataLoader[Any]:
    """A loader of (image(s), target, filename) batches of an ImageFolder tree."""
    dataset = LightlyDataset(input_dir=str(directory), transform=transform)
    return DataLoader(
        dataset,
        batch_size=config.batch_size_per_device,
        shuffle=shuffle,
        num_workers=config.num_workers,
        drop_last=drop_last,
        persistent_workers=config.num_workers > 0,
    )


def make_loggers(log_dir: Path, name: str) -> List[Logger]:
    """TensorBoard and CSV loggers, both writing to ``log_dir/name/version_0``."""
    # The CSV logger first: it warns when its folder already holds files.
    return [
        CSVLogger(save_dir=str(log_dir), name=name, version=0),
        TensorBoardLogger(save_dir=str(log_dir), name=name, version=0),
    ]


def best_metrics(callback: MetricCallback, prefixes: Sequence[str]) -> Dict[str, float]:
    """The maximum over the validation epochs of each metric with a given prefix.

    A ``/dataloader_idx_<i>`` suffix that Lightning adds is dropped.
    """
    out: Dict[str, float] = {}
    for name, values in callback.val_metrics.items():
        if values and any(name.startswith(p) for p in prefixes):
            out[name.split("/")[0]] = float(max(values))
    return out


class _KNNClassifier(KNNClassifier):  # type: ignore[misc]
    """lightly's KNNClassifier with k capped at the size of the feature bank."""

    def concat_train_features(self) -> None:
        super().concat_train_features()
        if self._train_targets_tensor is not None:
            self.knn_k = min(self.hparams["knn_k"], len(self._train_targets_tensor))


def knn_eval(
    model: nn.Module,
    config: RunConfig,
    log_dir: Path,
    knn_k: int = 200,
    knn_t: float = 0.1,
) -> Dict[str, float]:
    """Runs kNN classification of the validation images on the model's features.

    Args:
        model: Maps images to (batch_size, feature_dim) features.
        config: Data and trainer settings.
        log_dir: Metrics go to ``log_dir/knn_eval``.
        knn_k: Number of neighbours (capped at the number of training images).
        knn_t: Temperature of the similarity weights.

    Returns:
        ``val_knn_top1`` (and ``val_knn_top5`` with >= 5 classes), in [0, 1].
    """
    print("Running kNN evaluation...")
    transform = eval_transform(config.image_size)
    loaders = [
        make_loader(config.train_dir, transform, config, False, False),
        make_loader(config.val_dir, transform, config, False, False),
    ]
    use_half = config.accelerator in ("gpu", "cuda")
    classifier = _KNNClassifier(
        model=model,
        num_classes=config.num_classes,
        knn_k=knn_k,
        knn_t=knn_t,
        train_dataloader_idx=0,
        val_dataloader_idx=1,
        topk=topk_for(config.num_classes),
        feature_dtype=torch.float16 if use_half else torch.float32,
    )
    metric_callback = MetricCallback()
    limits = config.limits()
    limits.pop("limit_train_batches", None)
    limits.pop("log_every_n_steps", None)
    trainer = Trainer(
        max_epochs=1,
        accelerator=config.accelerator,
        devices=config.devices,
        logger=make_loggers(log_dir, "knn_eval"),
        callbacks=[metric_callback],
        strategy="auto",
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        **limits,
    )
    trainer.validate(model=classifier, dataloaders=loaders, verbose=False)
    metrics = best_metrics(metric_callback, ["val_knn_top"])
    for name, value in metrics.items():
        print(f"knn {name}: {value:.4f}")
    return metrics


def _fit_classifier(
    classifier: LightningModule,
    config: RunConfig,
    log_dir: Path,
    stage: str,
    epochs: int,
) -> Dict[str, float]:
    print(f"Running {stage.replace('_', ' ')}...")
    metric_callback = MetricCallback()
    callbacks: List[Callback] = [LearningRateMonitor(), metric_callback]
    trainer = Trainer(
        max_epochs=epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        precision=config.precision,  # type: ignore[arg-type]
        logger=make_loggers(log_dir, stage),
        callbacks=callbacks,
        strategy=config.strategy(),
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        **config.limits(),
    )
    trainer.fit(
        model=classifier,
        train_dataloaders=make_loader(
            config.train_dir, train_transform(config.image_size), config, True, True
        ),
        val_dataloaders=make_loader(
            config.val_dir, eval_transform(config.image_size), config, False, False
        ),
    )
    metrics = best_metrics(metric_callback, ["val_top"])
    for name, value in metrics.items():
        print(f"max {stage} {name}: {value:.4f}")
    return metrics


def linear_eval(
    model: nn.Module,
    feature_dim: int,
    config: RunConfig,
    log_dir: Path,
    epochs: int = 90,
) -> Dict[str, float]:
    """Trains a linear classifier on the frozen model's features.

    Args:
        model: Maps images to (batch_size, feature_dim) features.
        feature_dim: Size of the features.
        config: Data and trainer settings.
        log_dir: Metrics go to ``log_dir/linear_eval``.
        epochs: Training epochs.

    Returns:
        The best ``val_top1`` (and ``val_top5``) over the epochs, in [0, 1].
    """
    classifier = LinearClassifier(
        model=model,
        batch_size_per_device=config.batch_size_per_device,
        feature_dim=feature_dim,
        num_classes=config.num_classes,
        topk=topk_for(config.num_classes),
    )
    return _fit_classifier(classifier, config, log_dir, "linear_eval", epochs)


def finetune_eval(
    model: nn.Module,
    feature_dim: int,
    config: RunConfig,
    log_dir: Path,
    epochs: int = 30,
) -> Dict[str, float]:
    """Fine-tunes the model with a linear classifier on top (the model changes).

    Args:
        model: Maps images to (batch_size, feature_dim) features.
        feature_dim: Size of the features.
        config: Data and trainer settings.
        log_dir: Metrics go to ``log_dir/finetune_eval``.
        epochs: Training epochs.

    Returns:
        The best ``val_top1`` (and ``val_top5``) over the epochs, in [0, 1].
    """
    classifier = FinetuneClassifier(
        model=model,
        batch_size_per_device=config.batch_size_per_device,
        feature_dim=feature_dim,
        num_classes=config.num_classes,
        topk=topk_for(config.num_classes),
    )
    return _fit_classifier(classifier, config, log_dir, "finetune_eval", epochs)


def count_classes(directory: Path) -> Optional[int]:
    """Number of class folders of an ImageFolder tree (None if it has none)."""
    n = sum(1 for p in directory.iterdir() if p.is_dir())
    return n or None
