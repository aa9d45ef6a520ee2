"""One LightningModule per SSL method, each with its original and its ER objective.

The original modules are lightly's CIFAR-10 benchmark
(``docs/source/getting_started/benchmarks/cifar10_benchmark.py`` in lightly's
repository) value for value: the heads, losses, optimizer and learning-rate scaling,
the constant EMA of 0.99, MoCo's split batch norm and key-batch shuffle, DINO's
independently initialized teacher head. ``objective="er"`` swaps the loss and the
heads for their lightly-er subclasses (:class:`benchmarks.common.objective.ObjectiveSwitch`)
and changes nothing else: with the same seed both modules hold the same parameters and
buffers and compute the same outputs. Every deliberate difference from lightly's
script is an option that is off by default and listed in
:data:`benchmarks.cifar.differences.DIFFERENCES`.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.models import utils as model_utils
from lightly.models.modules import heads
from lightly.utils.benchmarking import BenchmarkModule
from torch import Tensor, nn
from torch.utils.data import DataLoader

# The names live in benchmarks/cifar/names.py, importable without torch.
from benchmarks.cifar.names import LIGHTLY_EMA, MOCO_SPLITS, split_method
from benchmarks.cifar.names import METHODS as METHODS
from benchmarks.common.objective import Objective, ObjectiveSwitch
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


class SSLMethod(ObjectiveSwitch, BenchmarkModule):
    """Shared glue: objective switch, loss logging, kNN evaluation (lightly's).

    Args:
        backbone: Maps images to (batch_size, feature_dim, ...) features.
        feature_dim: Size of the backbone features.
        dataloader_knn: Loader of the labeled training images for the kNN bank.
        num_classes: Number of classes of the kNN classifier.
        max_epochs: Epochs of the cosine learning-rate schedule.
        batch_size: Batch size per step, for the linear learning-rate scaling.
        objective: ``"original"`` (lightly's loss and heads) or ``"er"``.
        ema: Constant EMA coefficient of the teacher (0.99, lightly's).
        knn_k: Neighbors of the kNN classifier (200, lightly's).
        knn_t: Temperature of the kNN classifier (0.1, lightly's).
        er_kwargs: Extra keyword arguments of the ER loss (kappa, entropy_weight,
            estimator); the ER heads' meters take their kappa from the loss.
        gather_distributed: Gather across processes in the losses (DDP option).
    """

    name: str = ""
    has_teacher: bool = False
    criterion: nn.Module

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        dataloader_knn: DataLoader[Any],
        num_classes: int,
        max_epochs: int,
        batch_size: int,
        objective: Objective = "original",
        ema: float = LIGHTLY_EMA,
        knn_k: int = 200,
        knn_t: float = 0.1,
        er_kwargs: Optional[Dict[str, Any]] = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(dataloader_knn, num_classes, knn_k=knn_k, knn_t=knn_t)
        self.init_objective(objective, er_kwargs)
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
        self.ema = ema
        self.gather_distributed = gather_distributed

    # -- what the benchmark measures ------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """Backbone features, flattened to (batch_size, feature_dim)."""
        out: Tensor = self.backbone(x).flatten(start_dim=1)
        return out

    def objective_output(self, x: Tensor) -> Tensor:
        """The output whose entropy the ER objective estimates (eval use): the
        module's output, unless a method says otherwise."""
        out: Tensor = self(x)
        return out

    def log_loss(self, loss: Tensor, batch_size: int) -> None:
        """Logs the loss (as lightly) and an ER loss's terms in nats."""
        self.log("train_loss_ssl", loss, batch_size=batch_size)
        self.log_er_terms(batch_size)

    def lr_factor(self) -> float:
        """lightly's linear learning-rate scaling: batch_size / 128."""
        return self.batch_size / 128

    def sgd(self, params: Any, lr: float) -> Any:
        """lightly's CIFAR-10 optimizer: SGD, momentum 0.9, weight decay 5e-4, cosine."""
        optim = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, self.max_epochs)
        return [optim], [scheduler]


def _views(batch: Any) -> List[Tensor]:
    views = batch[0]
    if isinstance(views, Tensor):
        raise TypeError(
            "a training batch must start with a list of augmented views, got a "
            "single tensor; use a multi-view transform"
        )
    return list(views)


class SimCLR(SSLMethod):
    """lightly's SimCLRModel; ER: ERNTXentLoss (kappa = 1 / 0.5) + ER head."""

    name = "simclr"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        gather: Dict[str, Any] = (
            {"gather_distributed": True} if self.gather_distributed else {}
        )
        # The loss first (it draws no random numbers): the head's meter takes its
        # kappa, 1 / 0.5 for NTXentLoss() of lightly's script.
        self.criterion = self.make_loss(NTXentLoss, ERNTXentLoss, **gather)
        head = self.pick(heads.SimCLRProjectionHead, ERSimCLRProjectionHead)
        self.projection_head = head(
            self.feature_dim, self.feature_dim, 128, **self.meter_kwargs("sphere")
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.projection_head(self.features(x))
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0, x1 = _views(batch)[:2]
        loss: Tensor = self.criterion(self(x0), self(x1))
        self.log_loss(loss, len(x0))
        return loss

    def configure_optimizers(self) -> Any:
        return self.sgd(self.parameters(), 6e-2 * self.lr_factor())


class _MomentumMethod(SSLMethod):
    """A method with an EMA copy of its backbone and projection head (MoCo, BYOL)."""

    has_teacher = True
    projection_head: nn.Module

    def _init_momentum(self) -> None:
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        model_utils.deactivate_requires_grad(self.backbone_momentum)
        model_utils.deactivate_requires_grad(self.projection_head_momentum)

    def _update_momentum(self) -> None:
        model_utils.update_momentum(self.backbone, self.backbone_momentum, self.ema)
        model_utils.update_momentum(
            self.projection_head, self.projection_head_momentum, self.ema
        )


class MoCo(_MomentumMethod):
    """lightly's MocoModel: split batch norm, a 4096 bank, shuffled keys.

    ER: ERNTXentLoss with the same bank (its keys are extra kernel centers of the
    entropy estimate); lightly-er has no MoCo head subclass, so the heads are lightly's.
    """

    name = "moco"
    num_splits = MOCO_SPLITS
    """lightly's split batch norm (8 splits, as sync batch norm is off)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.projection_head = heads.MoCoProjectionHead(
            self.feature_dim, self.feature_dim, 128
        )
        self._init_momentum()
        self.criterion = self.make_loss(
            NTXentLoss,
            ERNTXentLoss,
            temperature=0.1,
            # lightly's script passes 4096, which lightly >= 1.6 requires as a
            # (num_features, dim) tuple: the same bank.
            memory_bank_size=(4096, 128),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.projection_head(self.features(x))
        return out

    def _step(self, x0: Tensor, x1: Tensor) -> Tuple[Tensor, Tensor]:
        x1, shuffle = model_utils.batch_shuffle(x1, distributed=self.gather_distributed)
        query = self(x0)
        key = self.projection_head_momentum(
            self.backbone_momentum(x1).flatten(start_dim=1)
        )
        key = model_utils.batch_unshuffle(
            key, shuffle, distributed=self.gather_distributed
        )
        return query, key

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0, x1 = _views(batch)[:2]
        self._update_momentum()
        # Symmetric loss, as lightly's script.
        loss_0: Tensor = self.criterion(*self._step(x0, x1))
        loss_1: Tensor = self.criterion(*self._step(x1, x0))
        loss = 0.5 * (loss_0 + loss_1)
        self.log_loss(loss, len(x0))
        return loss

    def configure_optimizers(self) -> Any:
        params = list(self.backbone.parameters()) + list(
            self.projection_head.parameters()
        )
        return self.sgd(params, 6e-2 * self.lr_factor())


class BYOL(_MomentumMethod):
    """lightly's BYOLModel; ER: ERNegativeCosineSimilarity + ER BYOL heads."""

    name = "byol"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The loss first (it draws no random numbers): the heads' meters take its kappa.
        # BYOL calls criterion(p, z): the entropy term is the prediction's, x0.
        self.criterion = self.make_loss(
            NegativeCosineSimilarity,
            ERNegativeCosineSimilarity,
            er_only={"prediction": "x0"},
        )
        projection = self.pick(heads.BYOLProjectionHead, ERBYOLProjectionHead)
        prediction = self.pick(heads.BYOLPredictionHead, ERBYOLPredictionHead)
        meter = self.meter_kwargs("sphere")
        self.projection_head = projection(self.feature_dim, 1024, 256, **meter)
        self.prediction_head = prediction(256, 1024, 256, **meter)
        self._init_momentum()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.prediction_head(self.projection_head(self.features(x)))
        return out

    def forward_momentum(self, x: Tensor) -> Tensor:
        y = self.backbone_momentum(x).flatten(start_dim=1)
        z: Tensor = self.projection_head_momentum(y)
        return z.detach()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        self._update_momentum()
        x0, x1 = _views(batch)[:2]
        p0 = self(x0)
        z0 = self.forward_momentum(x0)
        p1 = self(x1)
        z1 = self.forward_momentum(x1)
        loss: Tensor = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        self.log_loss(loss, len(x0))
        return loss

    def configure_optimizers(self) -> Any:
        params = (
            list(self.backbone.parameters())
            + list(self.projection_head.parameters())
            + list(self.prediction_head.parameters())
        )
        return self.sgd(params, 6e-2 * self.lr_factor())


class SimSiam(SSLMethod):
    """lightly's SimSiamModel (2-layer projection, no lr scaling); ER: the loss only."""

    name = "simsiam"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prediction_head = heads.SimSiamPredictionHead(2048, 512, 2048)
        self.projection_head = self.build_projection_head()
        # SimSiam calls criterion(z, p): the entropy term is the prediction's, x1.
        self.criterion = self.make_loss(
            NegativeCosineSimilarity,
            ERNegativeCosineSimilarity,
            er_only={"prediction": "x1"},
        )

    def build_projection_head(self) -> nn.Module:
        """lightly's SimSiam projection head of the CIFAR-10 benchmark."""
        head: nn.Module = heads.ProjectionHead(
            [
                (self.feature_dim, 2048, nn.BatchNorm1d(2048), nn.ReLU(inplace=True)),
                (2048, 2048, nn.BatchNorm1d(2048), None),
            ]
        )
        return head

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.projection_head(self.features(x))
        p = self.prediction_head(z)
        return z.detach(), p

    def objective_output(self, x: Tensor) -> Tensor:
        out: Tensor = self(x)[1]
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0, x1 = _views(batch)[:2]
        z0, p0 = self(x0)
        z1, p1 = self(x1)
        loss: Tensor = 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))
        self.log_loss(loss, len(x0))
        return loss

    def configure_optimizers(self) -> Any:
        # lightly: no lr scaling, "results in better training stability".
        return self.sgd(self.parameters(), 6e-2)


class DINO(SSLMethod):
    """lightly's DINOModel (2-layer head, no local crops); ER: ERDINOLoss + ER head."""

    name = "dino"
    has_teacher = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The loss first (it draws no random numbers): the heads' meters take its
        # student temperature.
        # The ER twin is the paper's variant: the entropy term replaces centering.
        gather = {"gather_distributed": True} if self.gather_distributed else {}
        self.criterion = self.make_loss(
            DINOLoss,
            ERDINOLoss,
            er_only={"centering": False, **gather},
            output_dim=2048,
        )
        self.head = self._build_projection_head()
        self.teacher_backbone = copy.deepcopy(self.backbone)
        # As lightly: the teacher head is a second, independently initialized head.
        self.teacher_head = self._build_projection_head()
        model_utils.deactivate_requires_grad(self.teacher_backbone)
        model_utils.deactivate_requires_grad(self.teacher_head)

    def _build_projection_head(self) -> heads.DINOProjectionHead:
        head_cls = self.pick(heads.DINOProjectionHead, ERDINOProjectionHead)
        head = head_cls(
            self.feature_dim,
            2048,
            256,
            2048,
            batch_norm=True,
            **self.meter_kwargs("discrete"),
        )
        # lightly: only 2 layers for CIFAR-10.
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

    def forward_teacher(self, x: Tensor) -> Tensor:
        y = self.teacher_backbone(x).flatten(start_dim=1)
        out: Tensor = self.teacher_head(y)
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        model_utils.update_momentum(self.backbone, self.teacher_backbone, m=self.ema)
        model_utils.update_momentum(self.head, self.teacher_head, m=self.ema)
        views = _views(batch)
        teacher_out = [self.forward_teacher(view) for view in views[:2]]
        student_out = [self(view) for view in views]
        loss: Tensor = self.criterion(
            teacher_out, student_out, epoch=self.current_epoch
        )
        self.log_loss(loss, len(views[0]))
        return loss

    def configure_optimizers(self) -> Any:
        params = list(self.backbone.parameters()) + list(self.head.parameters())
        return self.sgd(params, 6e-2 * self.lr_factor())


class SwAV(SSLMethod):
    """lightly's SwaVModel (512 prototypes, Adam); ER: ERSwaVLoss + ER heads."""

    name = "swav"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The loss first (it draws no random numbers): the heads' meters ask it.
        # The ER twin is the paper's variant: the entropy term replaces Sinkhorn.
        gather = {"gather_distributed": True} if self.gather_distributed else {}
        self.criterion = self.make_loss(
            SwaVLoss,
            ERSwaVLoss,
            er_only={"use_sinkhorn": False, **gather},
            sinkhorn_gather_distributed=self.gather_distributed,
        )
        head = self.pick(heads.SwaVProjectionHead, ERSwaVProjectionHead)
        prototypes = self.pick(heads.SwaVPrototypes, ERSwaVPrototypes)
        self.projection_head = head(
            self.feature_dim, self.feature_dim, 128, **self.meter_kwargs("sphere")
        )
        self.prototypes = prototypes(128, 512, **self.meter_kwargs("discrete"))

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
        self.log_loss(loss, len(crops[0]))
        return loss

    def configure_optimizers(self) -> Any:
        optim = torch.optim.Adam(
            self.parameters(), lr=1e-3 * self.lr_factor(), weight_decay=1e-6
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, self.max_epochs)
        return [optim], [scheduler]


METHOD_CLASSES: Dict[str, Type[SSLMethod]] = {
    cls.name: cls for cls in (SimCLR, MoCo, BYOL, SimSiam, DINO, SwAV)
}
"""Method name -> module class. ``<name>_er`` selects the ER objective."""


def parse_method(method: str) -> Tuple[Type[SSLMethod], Objective]:
    """Splits ``"byol_er"`` into (BYOL, "er") and ``"byol"`` into (BYOL, "original").

    Raises:
        ValueError: If the method is unknown; the message lists the known ones.
    """
    base, objective = split_method(method)
    return METHOD_CLASSES[base], "er" if objective == "er" else "original"
