"""kNN, linear and fine-tuning evaluation, as lightly's ResNet-50 ``*_eval.py``.

- kNN (InstDisc): k=200 neighbors, temperature 0.1 (0.07 in the ViT benchmark), on
  L2-normalized features of the training and validation images (resize 256, center
  crop 224), with lightly's ``KNNClassifier``; one validation pass.
- Linear (SimCLR): lightly's ``LinearClassifier`` on the frozen backbone, 90 epochs,
  SGD with lr 0.1 per 256 images, momentum 0.9, no weight decay, cosine schedule
  without warmup; random resized crops and flips.
- Fine-tuning (SimCLR): lightly's ``FinetuneClassifier`` (the backbone is trained as
  well), 30 epochs, lr 0.05 per 256 images, otherwise as the linear evaluation.

Metrics go to TensorBoard and ``metrics.csv`` in ``<log_dir>/<stage>/version_0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from lightly.utils.benchmarking import (
    FinetuneClassifier,
    KNNClassifier,
    LinearClassifier,
    MetricCallback,
)
from lightly.utils.dist import print_rank_zero
from pytorch_lightning import Trainer

from benchmarks.common.history import best_metrics

from .._common import (
    RunConfig,
    eval_loader,
    fit_classifier,
    make_classifier,
    make_loggers,
    train_transform,
)


def knn_eval(
    model: Any,
    config: RunConfig,
    log_dir: Path,
    knn_k: int = 200,
    knn_t: float = 0.1,
) -> Dict[str, float]:
    """kNN classification of the validation images on the model's features.

    Args:
        model: Maps images to features (the pretraining module).
        config: Data and trainer settings.
        log_dir: The run folder; metrics go to ``log_dir/knn_eval``.
        knn_k: Number of neighbors.
        knn_t: Temperature of the similarity weights.

    Returns:
        ``val_knn_top1`` and ``val_knn_top5``, in [0, 1].
    """
    print_rank_zero("Running KNN evaluation...")
    loaders = [
        eval_loader(directory, config, persistent=False)
        for directory in (config.train_dir, config.val_dir)
    ]
    classifier = KNNClassifier(
        model=model,
        num_classes=config.num_classes,
        knn_k=knn_k,
        knn_t=knn_t,
        train_dataloader_idx=0,
        val_dataloader_idx=1,
    )
    metric_callback = MetricCallback()
    trainer = Trainer(
        max_epochs=1,
        accelerator=config.accelerator,
        devices=config.devices,
        logger=make_loggers(log_dir, "knn_eval"),
        callbacks=config.callbacks(metric_callback),
        strategy=config.strategy,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        **config.limits(train=False),
    )
    trainer.validate(model=classifier, dataloaders=loaders, verbose=False)
    metrics = best_metrics(metric_callback, ["val_knn_top"])
    for name, value in metrics.items():
        print_rank_zero(f"knn {name}: {value}")
    return metrics


def linear_eval(
    model: Any,
    config: RunConfig,
    log_dir: Path,
    epochs: int = 90,
    eval_method: Optional[str] = None,
) -> Dict[str, float]:
    """Trains lightly's LinearClassifier on the frozen model's features.

    Args:
        model: The pretraining module (its ``online_classifier`` gives the feature
            size).
        config: Data and trainer settings.
        log_dir: The run folder; metrics go to ``log_dir/linear_eval``.
        epochs: Training epochs.
        eval_method: Unused (the ViT benchmark's choice of classifier).

    Returns:
        The best ``val_top1`` and ``val_top5`` over the epochs, in [0, 1].
    """
    classifier = make_classifier(LinearClassifier, model, config)
    images = train_transform(config.image_size)
    return fit_classifier(classifier, config, log_dir, "linear_eval", epochs, images)


def finetune_eval(
    model: Any,
    config: RunConfig,
    log_dir: Path,
    epochs: int = 30,
    eval_method: Optional[str] = None,
) -> Dict[str, float]:
    """Fine-tunes the model with lightly's FinetuneClassifier (the model changes).

    Args:
        model: The pretraining module.
        config: Data and trainer settings.
        log_dir: The run folder; metrics go to ``log_dir/finetune_eval``.
        epochs: Training epochs.
        eval_method: Unused (the ViT benchmark's choice of classifier).

    Returns:
        The best ``val_top1`` and ``val_top5`` over the epochs, in [0, 1].
    """
    classifier = make_classifier(FinetuneClassifier, model, config)
    images = train_transform(config.image_size)
    return fit_classifier(classifier, config, log_dir, "finetune_eval", epochs, images)
