"""One LightningModule per SSL method, each with its original and its ER objective.

The modules follow lightly's CIFAR-10 benchmark (lightly docs, "Benchmarks ->
CIFAR-10"): a backbone that maps images to ``feature_dim`` features, lightly's heads and
losses, SGD with lr 6e-2 * batch_size / 128, momentum 0.9, weight decay 5e-4 and a cosine
schedule (SwAV: Adam 1e-3 * batch_size / 128), a constant EMA coefficient of 0.99 for
the teacher of MoCo, BYOL and DINO, and lightly's ``BenchmarkModule`` kNN evaluation
(k=200, t=0.1) after every epoch.

Each method is defined once. ``objective="er"`` swaps the loss and heads for their
lightly-er adapters (``_pick`` chooses the class); nothing else differs, which is the
one-line change a lightly user makes in a training script.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Type, TypeVar

import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.models.modules import heads
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.benchmarking import BenchmarkModule
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightly_er.loss import (
    ERDINOLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)
from lightly_er.models.modules import (
    ERBYOLPredictionHead,
    ERBYOLProjectionHead,
    ERDINOProjectionHead,
    ERSimCLRProjectionHead,
    ERSwaVProjectionHead,
    ERSwaVPrototypes,
)

Objective = Literal["original", "er"]
T = TypeVar("T")


class SSLMethod(BenchmarkModule):  # type: ignore[misc]
    """Shared training glue: optimiser, schedule, kNN evaluation, loss logging.

    Attributes:
        backbone:
            Maps a batch of images to (batch_size, feature_dim) features (it may keep
            trailing singleton dims; they are flattened).
        objective:
            ``"original"`` (lightly's loss and heads) or ``"er"`` (lightly-er's).
        criterion:
            The loss module; for ER objectives its ``last_components`` are logged.

    Args:
        backbone: The backbone network.
        feature_dim: Size of the backbone's output features.
        dataloader_knn: Loader of (images, targets, ...) of the labelled train set for
            the kNN feature bank (no augmentation).
        num_classes: Number of classes for the kNN classifier.
        max_epochs: Epochs of the cosine learning-rate schedule.
        batch_size: Batch size per step, for the linear learning-rate scaling.
        objective: ``"original"`` or ``"er"``.
        ema: Constant EMA coefficient of the teacher (methods with a teacher only).
        knn_k: Neighbours of the kNN classifier.
        knn_t: Temperature of the kNN classifier.
        er_kwargs: Extra keyword arguments for the ER loss (for example kappa).
        gather_distributed: Gather embeddings across processes in the losses that
            support it (DDP).
    """

    name: str = ""
    has_teacher: bool = False

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        dataloader_knn: DataLoader[Any],
        num_classes: int,
        max_epochs: int,
        batch_size: int,
        objective: Objective = "original",
        ema: float = 0.99,
        knn_k: int = 200,
        knn_t: float = 0.1,
        er_kwargs: Optional[Dict[str, Any]] = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(dataloader_knn, num_classes, knn_k=knn_k, knn_t=knn_t)
        if objective not in ("original", "er"):
            raise ValueError(f"objective must be 'original' or 'er', got {objective!r}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        if max_epochs < 1 or batch_size < 1:
            raise ValueError(
                f"max_epochs and batch_size must be >= 1, got {max_epochs} and "
                f"{batch_size}"
            )
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.objective: Objective = objective
        self.ema = ema
        self.er_kwargs: Dict[str, Any] = dict(er_kwargs or {})
        self.gather_distributed = gather_distributed

    def _pick(self, original: Type[T], er: Type[T]) -> Type[T]:
        """The lightly class, or its ER adapter when the objective is ER."""
        return er if self.objective == "er" else original

    def _criterion_kwargs(self, **original: Any) -> Dict[str, Any]:
        """The loss arguments, plus gathering and the ER keywords for an ER loss."""
        if self.objective != "er":
            return original
        return {
            **original,
            "gather_distributed": self.gather_distributed,
            **self.er_kwargs,
        }

    def features(self, x: Tensor) -> Tensor:
        """Backbone features, flattened to (batch_size, feature_dim)."""
        out: Tensor = self.backbone(x).flatten(start_dim=1)
        return out

    def _log_loss(self, loss: Tensor, batch_size: int) -> None:
        self.log("train_loss_ssl", loss, prog_bar=True, batch_size=batch_size)
        components = getattr(self.criterion, "last_components", None)
        if components is not None:
            self.log("train_entropy", components.entropy, batch_size=batch_size)
            self.log(
                "train_reconstruction", components.reconstruction, batch_size=batch_size
            )

    def _momentum_update(self, pairs: Sequence[Tuple[nn.Module, nn.Module]]) -> None:
        for online, teacher in pairs:
            update_momentum(online, teacher, m=self.ema)

    def _sgd_lr(self) -> float:
        return 6e-2 * self.batch_size / 128

    def configure_optimizers(self) -> Any:
        params = [p for n, p in self.named_parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params, lr=self._sgd_lr(), momentum=0.9, weight_decay=5e-4
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, self.max_epochs
        )
        return [optimizer], [scheduler]


class _MomentumMethod(SSLMethod):
    """A method with an EMA copy of its backbone and projection head (MoCo, BYOL)."""

    has_teacher = True
    projection_head: nn.Module

    def _init_momentum(self) -> None:
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def _update_momentum(self) -> None:
        self._momentum_update(
            [
                (self.backbone, self.backbone_momentum),
                (self.projection_head, self.projection_head_momentum),
            ]
        )

    @torch.no_grad()
    def forward_momentum(self, x: Tensor) -> Tensor:
        """The EMA encoder's projection of x, without gradient."""
        out = self.backbone_momentum(x).flatten(start_dim=1)
        result: Tensor = self.projection_head_momentum(out)
        return result.detach()


def _views(batch: Any) -> List[Tensor]:
    views = batch[0]
    if isinstance(views, Tensor):
        raise TypeError(
            "a training batch must start with a list of augmented views, got a "
            "single tensor; use a multi-view transform"
        )
    return list(views)


class SimCLR(SSLMethod):
    """SimCLR (Chen et al., 2020); ER: ``ERNTXentLoss`` + ``ERSimCLRProjectionHead``."""

    name = "simclr"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        head = self._pick(heads.SimCLRProjectionHead, ERSimCLRProjectionHead)
        self.projection_head = head(self.feature_dim, self.feature_dim, 128)
        loss = self._pick(NTXentLoss, ERNTXentLoss)
        self.criterion = loss(
            **self._criterion_kwargs(gather_distributed=self.gather_distributed)
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.projection_head(self.features(x))
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0, x1 = _views(batch)[:2]
        loss: Tensor = self.criterion(self(x0), self(x1))
        self._log_loss(loss, len(x0))
        return loss


class MoCo(_MomentumMethod):
    """MoCo v2 with a memory bank of 4096; ER: ``ERNTXentLoss`` (bank as KDE support)."""

    name = "moco"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # lightly-er has no MoCo head adapter: the ER loss normalises internally and
        # the head stays lightly's, so the pair differs in the loss alone.
        self.projection_head = heads.MoCoProjectionHead(
            self.feature_dim, self.feature_dim, 128
        )
        self._init_momentum()
        loss = self._pick(NTXentLoss, ERNTXentLoss)
        self.criterion = loss(
            **self._criterion_kwargs(
                temperature=0.1,
                memory_bank_size=(4096, 128),
                gather_distributed=self.gather_distributed,
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.projection_head(self.features(x))
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0, x1 = _views(batch)[:2]
        self._update_momentum()
        # Symmetric loss, as in lightly's CIFAR-10 benchmark.
        loss_0: Tensor = self.criterion(self(x0), self.forward_momentum(x1))
        loss_1: Tensor = self.criterion(self(x1), self.forward_momentum(x0))
        loss = 0.5 * (loss_0 + loss_1)
        self._log_loss(loss, len(x0))
        return loss


class BYOL(_MomentumMethod):
    """BYOL (Grill et al., 2020); ER: ``ERNegativeCosineSimilarity`` + ER BYOL heads."""

    name = "byol"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        projection = self._pick(heads.BYOLProjectionHead, ERBYOLProjectionHead)
        prediction = self._pick(heads.BYOLPredictionHead, ERBYOLPredictionHead)
        self.projection_head = projection(self.feature_dim, 1024, 256)
        self.prediction_head = prediction(256, 1024, 256)
        self._init_momentum()
        loss = self._pick(NegativeCosineSimilarity, ERNegativeCosineSimilarity)
        self.criterion = loss(**self._criterion_kwargs())

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.prediction_head(self.projection_head(self.features(x)))
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0, x1 = _views(batch)[:2]
        self._update_momentum()
        p0, p1 = self(x0), self(x1)
        z0, z1 = self.forward_momentum(x0), self.forward_momentum(x1)
        loss: Tensor = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        self._log_loss(loss, len(x0))
        return loss


class SimSiam(SSLMethod):
    """SimSiam (Chen & He, 2021); ER: ``ERNegativeCosineSimilarity``.

    lightly's CIFAR-10 benchmark uses a 2-layer projection head of width 2048 and no
    learning-rate scaling; so does this module. The ER variant normalises the same
    heads' outputs inside the loss.
    """

    name = "simsiam"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.projection_head = heads.ProjectionHead(
            [
                (
                    self.feature_dim,
                    2048,
                    nn.BatchNorm1d(2048),
                    nn.ReLU(inplace=True),
                ),
                (2048, 2048, nn.BatchNorm1d(2048), None),
            ]
        )
        self.prediction_head = heads.SimSiamPredictionHead(2048, 512, 2048)
        loss = self._pick(NegativeCosineSimilarity, ERNegativeCosineSimilarity)
        self.criterion = loss(**self._criterion_kwargs())

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.projection_head(self.features(x))
        p = self.prediction_head(z)
        return z.detach(), p

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0, x1 = _views(batch)[:2]
        z0, p0 = self(x0)
        z1, p1 = self(x1)
        loss: Tensor = 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))
        self._log_loss(loss, len(x0))
        return loss

    def _sgd_lr(self) -> float:
        return 6e-2


class DINO(SSLMethod):
    """DINO (Caron et al., 2021) with lightly's 2-layer CIFAR head; ER: ``ERDINOLoss``."""

    name = "dino"
    has_teacher = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head = self._build_head()
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_head = self._build_head()
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        loss = self._pick(DINOLoss, ERDINOLoss)
        self.criterion = loss(**self._criterion_kwargs(output_dim=2048))

    def _build_head(self) -> heads.DINOProjectionHead:
        head_cls = self._pick(heads.DINOProjectionHead, ERDINOProjectionHead)
        head = head_cls(self.feature_dim, 2048, 256, 2048, batch_norm=True)
        head.layers = heads.ProjectionHead(
            [
                (self.feature_dim, 2048, nn.BatchNorm1d(2048), nn.GELU()),
                (2048, 256, None, None),
            ]
        ).layers
        return head

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out

    @torch.no_grad()
    def forward_teacher(self, x: Tensor) -> Tensor:
        out = self.teacher_backbone(x).flatten(start_dim=1)
        result: Tensor = self.teacher_head(out)
        return result

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        views = _views(batch)
        self._momentum_update(
            [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]
        )
        teacher_out = [self.forward_teacher(v) for v in views[:2]]
        student_out = [self(v) for v in views]
        loss: Tensor = self.criterion(
            teacher_out, student_out, epoch=self.current_epoch
        )
        self._log_loss(loss, len(views[0]))
        return loss


class SwAV(SSLMethod):
    """SwAV (Caron et al., 2020) with 512 prototypes; ER: ``ERSwaVLoss``."""

    name = "swav"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        head = self._pick(heads.SwaVProjectionHead, ERSwaVProjectionHead)
        prototypes = self._pick(heads.SwaVPrototypes, ERSwaVPrototypes)
        self.projection_head = head(self.feature_dim, self.feature_dim, 128)
        self.prototypes = prototypes(128, 512)
        loss = self._pick(SwaVLoss, ERSwaVLoss)
        self.criterion = loss(
            **self._criterion_kwargs(
                sinkhorn_gather_distributed=self.gather_distributed
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        z = self.projection_head(self.features(x))
        z = nn.functional.normalize(z, dim=1, p=2)
        out: Tensor = self.prototypes(z)
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        self.prototypes.normalize()
        crops = _views(batch)
        outputs = [self(x) for x in crops]
        loss: Tensor = self.criterion(outputs[:2], outputs[2:])
        self._log_loss(loss, len(crops[0]))
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(
            self.parameters(), lr=1e-3 * self.batch_size / 128, weight_decay=1e-6
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, self.max_epochs
        )
        return [optimizer], [scheduler]


METHOD_CLASSES: Dict[str, Type[SSLMethod]] = {
    cls.name: cls for cls in (SimCLR, MoCo, BYOL, SimSiam, DINO, SwAV)
}
"""Method name -> module class. ``<name>_er`` selects the ER objective."""

METHODS: Tuple[str, ...] = tuple(
    name + suffix for name in METHOD_CLASSES for suffix in ("", "_er")
)
"""Every runnable method name: ``simclr``, ``simclr_er``, ``moco``, ..."""


def parse_method(method: str) -> Tuple[Type[SSLMethod], Objective]:
    """Splits ``"byol_er"`` into (BYOL, "er") and ``"byol"`` into (BYOL, "original").

    Raises:
        ValueError: If the method is unknown; the message lists the known ones.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method.endswith("_er"):
        return METHOD_CLASSES[method[: -len("_er")]], "er"
    return METHOD_CLASSES[method], "original"
