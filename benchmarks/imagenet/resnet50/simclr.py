"""SimCLR and SimCLR-ER, as lightly's ``benchmarks/imagenet/resnet50/simclr.py``.

Original: ``SimCLRProjectionHead()`` and ``NTXentLoss(temperature=0.1,
gather_distributed=True)``. ER: :class:`lightly_er.models.modules.ERSimCLRProjectionHead`
(its meter at the loss's kappa, 1 / 0.1) and :class:`lightly_er.loss.ERNTXentLoss`
with the same arguments [0]. Both: LARS with learning rate 0.075 * sqrt(global batch
size), weight decay 1e-6 (none on norm layers, biases and the online classifier), 10
warmup epochs of a per-step cosine schedule,
SimCLR's augmentation, and an online kNN classifier (k=``knn_k``, t=``knn_t``) that
runs on every validation, as lightly's main.py gives it two validation loaders.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms.simclr_transform import SimCLRTransform
from lightly.utils.benchmarking import KNNClassifier
from lightly.utils.lars import LARS
from torch import Tensor

from benchmarks.common.objective import Objective
from lightly_er.loss import ERNTXentLoss
from lightly_er.models.modules import ERSimCLRProjectionHead

from ._base import ResNetMethod

TEMPERATURE = 0.1


class OnlineKNNClassifier(KNNClassifier):
    """lightly's KNNClassifier whose metrics its parent module logs.

    lightly's SimCLR keeps a KNNClassifier as a submodule and calls its
    ``validation_step``, which logs through the submodule; Lightning (2.x) refuses a
    log call of a module it does not run itself. This subclass computes exactly what
    lightly's does and leaves the logging to :class:`SimCLR`, which logs the returned
    accuracies.
    """

    def log_dict(self, *args: Any, **kwargs: Any) -> None:
        """Logs nothing: the parent module logs what ``validation_step`` returns."""


class SimCLR(ResNetMethod):
    """SimCLR (Chen et al., 2020); ``objective="er"`` for SimCLR-ER.

    Args:
        batch_size_per_device, num_classes, objective, backbone, ema, er_kwargs:
            See :class:`benchmarks.imagenet.resnet50._base.ResNetMethod` (``ema`` is
            ignored: SimCLR has no teacher).
        knn_k: Neighbors of the online kNN classifier.
        knn_t: Temperature of the online kNN classifier.
    """

    name = "simclr"
    sphere = True

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
        knn_k: int,
        knn_t: float,
        objective: Objective = "original",
        backbone: str = "resnet50",
        ema: Optional[float] = None,
        er_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(
            batch_size_per_device, num_classes, objective, backbone, ema, er_kwargs
        )
        self.save_hyperparameters()
        self.criterion = self.make_loss(
            NTXentLoss, ERNTXentLoss, temperature=TEMPERATURE, gather_distributed=True
        )
        head = self.pick(SimCLRProjectionHead, ERSimCLRProjectionHead)
        self.projection_head = head(self.feature_dim, **self.meter_kwargs("sphere"))
        self.add_online_classifier(self.feature_dim)
        self.knn_classifier = OnlineKNNClassifier(
            model=None,
            num_classes=num_classes,
            knn_k=knn_k,
            knn_t=knn_t,
            train_dataloader_idx=0,
            val_dataloader_idx=1,
        )

    def training_step(
        self, batch: Tuple[List[Tensor], Tensor, List[str]], batch_idx: int
    ) -> Tensor:
        views, targets = batch[0], batch[1]
        features = self.forward(torch.cat(views)).flatten(start_dim=1)
        z0, z1 = self.projection_head(features).chunk(len(views))
        loss: Tensor = self.criterion(z0, z1)
        self.log_loss(loss, len(targets))
        cls_loss = self.online_step(features, targets.repeat(len(views)), batch_idx)
        return loss + cls_loss

    def validation_step(  # type: ignore[override]
        self,
        batch: Tuple[Tensor, Tensor, List[str]],
        batch_idx: int,
        dataloader_idx: int,
    ) -> Optional[Tensor]:
        """Fills the kNN bank (loader 0) or scores the validation images (loader 1).

        On loader 1 the kNN and online linear classifiers share the features.
        """
        images, targets = batch[0], batch[1]
        features = self.forward(images).flatten(start_dim=1).detach()
        knn_log: Optional[Dict[str, Tensor]] = self.knn_classifier.validation_step(
            (features, targets), batch_idx, dataloader_idx
        )
        if dataloader_idx != self.knn_classifier.val_dataloader_idx:
            return None
        cls_loss: Tensor
        cls_loss, cls_log = self.online_classifier.validation_step(
            (features, targets), batch_idx
        )
        self.log_dict(
            {**(knn_log or {}), **cls_log},
            prog_bar=True,
            sync_dist=True,
            batch_size=len(targets),
        )
        return cls_loss

    def on_validation_epoch_end(self) -> None:
        """Empties the kNN bank."""
        self.knn_classifier.reset_storage()

    def configure_optimizers(self) -> Any:
        """LARS, lr 0.075 * sqrt(global batch), 10 warmup epochs."""
        optimizer = LARS(
            self.param_groups([self.backbone, self.projection_head]),
            # Square-root scaling, lightly's choice for batches <= 2048 and short runs.
            lr=0.075 * math.sqrt(self.global_batch_size),
            momentum=0.9,
            weight_decay=1e-6,
        )
        return [optimizer], [self.cosine_warmup(optimizer, warmup_epochs=10)]


def transform(image_size: int = 224) -> SimCLRTransform:
    """lightly's ``SimCLRTransform()`` (at another crop size if given)."""
    if image_size == 224:
        return SimCLRTransform()
    return SimCLRTransform(input_size=image_size)
