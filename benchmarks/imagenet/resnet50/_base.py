"""Training code shared by every method of the ImageNet ResNet-50 benchmark.

Each method (``simclr.py``, ``mocov2.py``, ``byol.py``, ``dino.py``, ``swav.py``) is one
LightningModule with an ``objective`` switch: ``"original"`` builds lightly's loss and
heads, ``"er"`` their lightly-er adapters (:meth:`ImageNetMethod.pick`). Everything
else (backbone, augmentations, optimiser, schedule, teacher updates, online linear
classifier) is the same for both, and follows lightly's ``benchmarks/imagenet/resnet50``
(lightly docs, "Benchmarks -> ImageNet1k").

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import math
from typing import (
    Any,
    ClassVar,
    Dict,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
)

import torch
import torchvision
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.benchmarking import OnlineLinearClassifier
from lightly.utils.lars import LARS
from lightly.utils.scheduler import CosineWarmupScheduler, cosine_schedule
from pytorch_lightning import LightningModule
from torch import Tensor, nn

from lightly_er.monitoring import Support

Objective = Literal["original", "er"]
OptimizerName = Literal["lars", "sgd"]
T = TypeVar("T")

BACKBONES: Tuple[str, ...] = ("resnet50", "resnet18", "resnet34", "resnet101")
"""torchvision ResNets accepted as backbone (``resnet50`` is the benchmark's)."""


def build_backbone(name: str) -> Tuple[nn.Module, int]:
    """Returns a randomly initialised torchvision ResNet without its classifier.

    Args:
        name: One of :data:`BACKBONES`.

    Returns:
        (backbone, feature_dim): the network maps (N, 3, H, W) images to
        (N, feature_dim) features.

    Raises:
        ValueError: If the name is not in :data:`BACKBONES`.
    """
    if name not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}"
        )
    resnet = getattr(torchvision.models, name)()
    feature_dim = int(resnet.fc.in_features)
    resnet.fc = nn.Identity()
    return resnet, feature_dim


def topk_for(num_classes: int) -> Tuple[int, ...]:
    """The top-k accuracies that exist for num_classes classes: (1, 5) or (1,)."""
    return tuple(k for k in (1, 5) if k <= num_classes)


class ImageNetMethod(LightningModule):
    """Backbone, online linear classifier, optimiser and logging of every method.

    Subclasses build their heads and loss in ``__init__`` (choosing the classes with
    :meth:`pick`), implement ``training_step`` (returning the SSL loss plus
    :meth:`online_step`'s classification loss) and set the class attributes below.

    Attributes:
        name:
            The method's name on the command line (``"simclr"``; ``"simclr_er"``
            selects the ER objective).
        has_teacher:
            Whether the method has an EMA teacher (``--ema`` applies).
        ema_start:
            Start of the cosine EMA schedule (to 1.0) of the teacher; ``ema`` replaces
            it by a constant.
        optimizer_name:
            ``"lars"`` or ``"sgd"``.
        base_lr:
            Learning rate for a global batch of 256 (linear scaling).
        weight_decay:
            Weight decay of the weights (not of norm layers, biases, classifier).
        warmup_epochs:
            Linear warmup epochs of the cosine schedule.
        end_lr_factor:
            Final learning rate as a fraction of the peak learning rate.
        monitor_modules:
            The submodules :class:`lightly_er.monitoring.EntropyMonitor` watches,
            with their support.
        backbone:
            The network used for evaluation (kNN, linear, fine-tuning) by
            :meth:`forward`.
        feature_dim:
            Size of the backbone features.
        objective:
            ``"original"`` or ``"er"``.
        ema:
            Constant EMA coefficient of the teacher, or None for the method's cosine
            schedule.
        gather_distributed:
            Whether the losses use the batches of all processes (set with DDP).
        online_classifier:
            lightly's linear classifier on detached backbone features, trained
            alongside (its validation accuracy is logged as ``val_online_cls_top1``).

    Args:
        batch_size_per_device: Batch size of one process.
        num_classes: Number of classes of the online classifier.
        objective: ``"original"`` or ``"er"``.
        backbone: A torchvision ResNet name (see :data:`BACKBONES`).
        ema: Constant EMA coefficient in [0, 1), or None.
        gather_distributed: Whether the losses gather the batches of all processes.
    """

    name: ClassVar[str] = ""
    has_teacher: ClassVar[bool] = False
    ema_start: ClassVar[float] = 0.99
    optimizer_name: ClassVar[OptimizerName] = "lars"
    base_lr: ClassVar[float] = 0.3
    weight_decay: ClassVar[float] = 1e-6
    warmup_epochs: ClassVar[int] = 10
    end_lr_factor: ClassVar[float] = 0.0
    monitor_modules: ClassVar[Dict[str, Support]] = {}

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
        objective: Objective = "original",
        backbone: str = "resnet50",
        ema: Optional[float] = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if objective not in ("original", "er"):
            raise ValueError(f"objective must be 'original' or 'er', got {objective!r}")
        if ema is not None and not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        if batch_size_per_device < 1 or num_classes < 1:
            raise ValueError(
                "batch_size_per_device and num_classes must be >= 1, got "
                f"{batch_size_per_device} and {num_classes}"
            )
        self.save_hyperparameters()
        self.batch_size_per_device = batch_size_per_device
        self.objective: Objective = objective
        self.ema = ema
        self.gather_distributed = gather_distributed
        self.backbone, self.feature_dim = build_backbone(backbone)
        self.online_classifier = OnlineLinearClassifier(
            feature_dim=self.feature_dim,
            num_classes=num_classes,
            topk=topk_for(num_classes),
        )

    def pick(self, original: Type[T], er: Type[T]) -> Type[T]:
        """lightly's class, or its lightly-er adapter for the ER objective."""
        return er if self.objective == "er" else original

    def forward(self, x: Tensor) -> Tensor:
        """Backbone features of x, shape (batch_size, feature_dim)."""
        out: Tensor = self.backbone(x).flatten(start_dim=1)
        return out

    def trained_modules(self) -> List[nn.Module]:
        """The modules the SSL optimiser trains (the online classifier is added)."""
        raise NotImplementedError

    def teacher_momentum(self) -> float:
        """The EMA coefficient of this step: ``ema`` or the cosine schedule to 1."""
        if self.ema is not None:
            return self.ema
        return float(
            cosine_schedule(
                step=self.trainer.global_step,
                max_steps=max(int(self.trainer.estimated_stepping_batches), 1),
                start_value=self.ema_start,
                end_value=1.0,
            )
        )

    def log_loss(self, loss: Tensor, batch_size: int) -> None:
        """Logs the SSL loss and, for an ER loss, its entropy and reconstruction."""
        self.log(
            "train_loss", loss, prog_bar=True, sync_dist=True, batch_size=batch_size
        )
        components = getattr(self.criterion, "last_components", None)
        if components is not None:
            self.log(
                "train_entropy",
                components.entropy,
                sync_dist=True,
                batch_size=batch_size,
            )
            self.log(
                "train_reconstruction",
                components.reconstruction,
                sync_dist=True,
                batch_size=batch_size,
            )

    def online_step(self, features: Tensor, targets: Tensor, batch_idx: int) -> Tensor:
        """Trains the online classifier on detached features; returns its loss."""
        cls_loss: Tensor
        cls_loss, cls_log = self.online_classifier.training_step(
            (features.detach(), targets), batch_idx
        )
        self.log_dict(cls_log, sync_dist=True, batch_size=len(targets))
        return cls_loss

    def validation_step(self, batch: Sequence[Any], batch_idx: int) -> Tensor:
        """Online classifier accuracy on the validation set."""
        images, targets = batch[0], batch[1]
        cls_loss: Tensor
        cls_loss, cls_log = self.online_classifier.validation_step(
            (self(images).detach(), targets), batch_idx
        )
        self.log_dict(cls_log, prog_bar=True, sync_dist=True, batch_size=len(targets))
        return cls_loss

    def learning_rate(self, global_batch_size: int) -> float:
        """Peak learning rate: ``base_lr`` scaled linearly from a batch of 256."""
        return self.base_lr * global_batch_size / 256

    def configure_optimizers(self) -> Any:
        """LARS or SGD (momentum 0.9) with a warmup and a per-step cosine schedule.

        Norm layers, biases and the online classifier are not weight-decayed.
        """
        params, params_no_weight_decay = get_weight_decay_parameters(
            self.trained_modules()
        )
        groups: List[Dict[str, Any]] = [
            {"name": self.name, "params": params},
            {
                "name": f"{self.name}_no_weight_decay",
                "params": params_no_weight_decay,
                "weight_decay": 0.0,
            },
            {
                "name": "online_classifier",
                "params": list(self.online_classifier.parameters()),
                "weight_decay": 0.0,
            },
        ]
        lr = self.learning_rate(self.batch_size_per_device * self.trainer.world_size)
        optimizer: torch.optim.Optimizer
        if self.optimizer_name == "lars":
            optimizer = LARS(
                groups, lr=lr, momentum=0.9, weight_decay=self.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                groups, lr=lr, momentum=0.9, weight_decay=self.weight_decay
            )
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        warmup_steps = int(total_steps / epochs * min(self.warmup_epochs, epochs - 1))
        scheduler = CosineWarmupScheduler(
            optimizer=optimizer,
            warmup_epochs=warmup_steps,
            max_epochs=total_steps,
            end_value=self.end_lr_factor,
        )
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]


def views_and_targets(batch: Sequence[Any]) -> Tuple[List[Tensor], Tensor]:
    """Splits a training batch (views, targets, filenames) of a multi-view transform.

    Raises:
        TypeError: If the batch holds one image tensor instead of a list of views.
    """
    views, targets = batch[0], batch[1]
    if isinstance(views, Tensor):
        raise TypeError(
            "a training batch must start with a list of augmented views; use the "
            "method's multi-view transform"
        )
    return list(views), targets


def scaled_crop(size: int, reference: int) -> int:
    """A crop size that is to ``size`` what ``reference`` is to 224 (at least 8)."""
    return max(8, int(math.ceil(size * reference / 224)))
