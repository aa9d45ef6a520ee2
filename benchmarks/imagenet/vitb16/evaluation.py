"""Linear and fine-tuning evaluation of the ViT benchmark, as lightly's vitb16 files.

``eval_method="mae"`` (lightly's default) uses MAE's settings:

- linear: a batch norm (no affine parameters) before the linear layer, LARS (lr 0.1 per
  256 images, momentum 0.9, no weight decay), 10 warmup epochs, 90 epochs;
- fine-tuning: 100 epochs of AdamW (lr 5e-4 per 256 images, weight decay 0.05 except
  norm layers, biases and the classifier, a layer-wise learning-rate decay of 0.65
  for blocks named ``encoder_layer_<i>``), 5 warmup epochs, mixup 0.8, cutmix 1.0,
  label smoothing 0.1, and timm's RandAugment training transform.

``eval_method="simclr"`` uses lightly's ``LinearClassifier`` and ``FinetuneClassifier``
(SGD, random resized crops). The kNN evaluation is the ResNet-50 one (with lightly's
ViT temperature, 0.07).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from lightly.models.utils import (
    add_stochastic_depth_to_blocks,
    get_named_leaf_modules,
    get_weight_decay_parameters,
)
from lightly.transforms.utils import IMAGENET_NORMALIZE
from lightly.utils.benchmarking import FinetuneClassifier, LinearClassifier
from lightly.utils.benchmarking.topk import mean_topk_accuracy
from lightly.utils.dist import print_rank_zero
from lightly.utils.lars import LARS
from lightly.utils.scheduler import CosineWarmupScheduler
from timm.data.mixup import Mixup
from timm.data.transforms_factory import create_transform
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, Module, Sequential
from torch.optim import AdamW

from .._common import (
    RunConfig,
    fit_classifier,
    make_classifier,
    train_transform,
    warmup_steps,
)

EVAL_METHODS = ("mae", "simclr")
"""``--eval-method`` choices, lightly's default first."""

VIT_B_BLOCKS = 12
"""The block count that MAE's layer-wise decay assumes (ViT-B)."""


class LinearClassifierMAE(LinearClassifier):
    """lightly's linear classifier with MAE's batch norm, LARS and warmup.

    Args:
        model, batch_size_per_device, lr, feature_dim, num_classes, topk:
            As lightly's ``LinearClassifier``.
    """

    def __init__(
        self,
        model: Module,
        batch_size_per_device: int,
        lr: float = 0.1,
        feature_dim: int = 2048,
        num_classes: int = 1000,
        topk: Tuple[int, ...] = (1, 5),
    ) -> None:
        super().__init__(
            model=model,
            batch_size_per_device=batch_size_per_device,
            lr=lr,
            feature_dim=feature_dim,
            num_classes=num_classes,
            topk=topk,
        )
        # MAE normalizes the frozen features before the linear layer.
        self.classification_head = Sequential(
            BatchNorm1d(feature_dim, affine=False, eps=1e-6),
            Linear(feature_dim, num_classes),
        )

    def configure_optimizers(self) -> Any:
        """LARS, no weight decay, 10 warmup epochs of a per-step cosine schedule."""
        optimizer = LARS(
            list(self.get_trainable_parameters()),
            lr=self.get_effective_lr(),
            momentum=0.9,
            weight_decay=0.0,
        )
        scheduler = CosineWarmupScheduler(
            optimizer=optimizer,
            warmup_epochs=warmup_steps(self.trainer, 10),
            max_epochs=int(self.trainer.estimated_stepping_batches),
        )
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]


class FinetuneClassifierMAE(FinetuneClassifier):
    """lightly's fine-tuning classifier with MAE's mixup, optimizer and schedule.

    Args:
        model, batch_size_per_device, lr, feature_dim, num_classes, topk:
            As lightly's ``FinetuneClassifier`` (lr 5e-4, the code's value for
            ViT-B/16; the paper says 1e-3).
    """

    def __init__(
        self,
        model: Module,
        batch_size_per_device: int,
        lr: float = 5e-4,
        feature_dim: int = 2048,
        num_classes: int = 1000,
        topk: Tuple[int, ...] = (1, 5),
    ) -> None:
        super().__init__(
            model=model,
            batch_size_per_device=batch_size_per_device,
            lr=lr,
            feature_dim=feature_dim,
            num_classes=num_classes,
            topk=topk,
        )
        # Stochastic depth reaches torchvision ViT blocks only (none in a timm ViT).
        add_stochastic_depth_to_blocks(self.model, prob=0.1)
        self.mixup = Mixup(  # type: ignore[no-untyped-call]
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            label_smoothing=0.1,
            num_classes=num_classes,
        )

    def shared_step(
        self, batch: Tuple[Tensor, ...], batch_idx: int
    ) -> Tuple[Tensor, Dict[int, Tensor]]:
        """Loss on mixed images (training only); accuracy on the true labels."""
        images, targets = batch[0], batch[1]
        if self.trainer.state.stage == "train":
            images, targets = self.mixup(images, targets)
        predictions = self.forward(images)
        loss = self.criterion(predictions, targets)
        _, predicted_labels = predictions.topk(max(self.topk))
        topk = mean_topk_accuracy(predicted_labels, batch[1], k=self.topk)
        return loss, topk

    def configure_optimizers(self) -> Any:
        """AdamW with MAE's layer-wise learning-rate decay, 5 warmup epochs."""
        lr = self.get_effective_lr()
        decay = 0.65
        groups: Dict[str, Dict[str, Any]] = {}
        for name, module in get_named_leaf_modules(self.model).items():
            if "encoder_layer_" in name:
                index = int(name.split("encoder_layer_")[1].split(".")[0])
                group = f"vit_layer_{index}"
                # The last block trains at lr, each earlier one at 0.65 times less.
                group_lr = lr * decay ** (VIT_B_BLOCKS - 1 - index)
            else:
                group, group_lr = "vit", lr
            params, params_no_weight_decay = get_weight_decay_parameters([module])
            for key, values, weight_decay in (
                (group, params, 0.05),
                (f"{group}_no_weight_decay", params_no_weight_decay, 0.0),
            ):
                entry = groups.setdefault(
                    key,
                    {
                        "name": key,
                        "params": [],
                        "lr": group_lr,
                        "weight_decay": weight_decay,
                    },
                )
                entry["params"].extend(values)
        groups["classification_head"] = {
            "name": "classification_head",
            "params": list(self.classification_head.parameters()),
            "weight_decay": 0.0,
        }
        optimizer = AdamW(list(groups.values()), betas=(0.9, 0.999))
        scheduler = CosineWarmupScheduler(
            optimizer=optimizer,
            warmup_epochs=warmup_steps(self.trainer, 5),
            max_epochs=int(self.trainer.estimated_stepping_batches),
        )
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]


def mae_train_transform(image_size: int = 224) -> Any:
    """timm's training transform of MAE's fine-tuning (RandAugment, random erasing)."""
    return create_transform(
        input_size=image_size,
        is_training=True,
        auto_augment="rand-m9-mstd0.5-inc1",
        interpolation="bicubic",
        re_prob=0.25,
        re_mode="pixel",
        re_count=1,
        mean=tuple(IMAGENET_NORMALIZE["mean"]),
        std=tuple(IMAGENET_NORMALIZE["std"]),
    )


def linear_eval(
    model: Any,
    config: RunConfig,
    log_dir: Path,
    epochs: int = 90,
    eval_method: Optional[str] = "mae",
) -> Dict[str, float]:
    """Trains a linear classifier on the frozen model's features.

    Args:
        model: The pretraining module.
        config: Data and trainer settings.
        log_dir: The run folder; metrics go to ``log_dir/linear_eval``.
        epochs: Training epochs.
        eval_method: ``"mae"`` (MAE's classifier) or ``"simclr"`` (lightly's).

    Returns:
        The best ``val_top1`` and ``val_top5`` over the epochs, in [0, 1].
    """
    cls = LinearClassifierMAE if eval_method == "mae" else LinearClassifier
    print_rank_zero(f"Using the {eval_method or 'simclr'} linear classifier.")
    classifier = make_classifier(cls, model, config)
    images = train_transform(config.image_size)
    return fit_classifier(classifier, config, log_dir, "linear_eval", epochs, images)


def finetune_eval(
    model: Any,
    config: RunConfig,
    log_dir: Path,
    epochs: int = 100,
    eval_method: Optional[str] = "mae",
) -> Dict[str, float]:
    """Fine-tunes the whole model with a linear classifier (the model changes).

    Args:
        model: The pretraining module; all its parameters are made trainable.
        config: Data and trainer settings.
        log_dir: The run folder; metrics go to ``log_dir/finetune_eval``.
        epochs: Training epochs.
        eval_method: ``"mae"`` (MAE's recipe) or ``"simclr"`` (lightly's).

    Returns:
        The best ``val_top1`` and ``val_top5`` over the epochs, in [0, 1].
    """
    for param in model.parameters():
        param.requires_grad = True
    model.train()
    if eval_method == "mae":
        images = mae_train_transform(config.image_size)
        cls: Any = FinetuneClassifierMAE
    else:
        images = train_transform(config.image_size)
        cls = FinetuneClassifier
    print_rank_zero(f"Using the {eval_method or 'simclr'} fine-tuning classifier.")
    classifier = make_classifier(cls, model, config)
    return fit_classifier(classifier, config, log_dir, "finetune_eval", epochs, images)


__all__: List[str] = [
    "EVAL_METHODS",
    "FinetuneClassifierMAE",
    "LinearClassifierMAE",
    "finetune_eval",
    "linear_eval",
    "mae_train_transform",
]
