"""BYOL and BYOL-ER, as lightly's ``benchmarks/imagenet/resnet50/byol.py``.

Original: ``BYOLProjectionHead()``, ``BYOLPredictionHead()`` and
``NegativeCosineSimilarity()``. ER: :class:`lightly_er.models.modules.ERBYOLProjectionHead`,
:class:`lightly_er.models.modules.ERBYOLPredictionHead` (meters at the loss's kappa)
and :class:`lightly_er.loss.ERNegativeCosineSimilarity`, which estimates its entropy
on the batch gathered from all processes [0]. Both: LARS (lr 0.45 per 256 images,
weight decay 1e-6), 10 warmup epochs of a per-step cosine schedule, BYOL's asymmetric
augmentation, and a teacher made of a copy of the backbone and a freshly initialized
projection head, whose EMA coefficient follows a cosine schedule from 0.99 to 1 and
is updated at the start of each step. The loss is 2 * (1 - cos) summed over both
directions, as BYOL's code.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import update_momentum
from lightly.transforms.byol_transform import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
)
from lightly.utils.lars import LARS
from torch import Tensor

from benchmarks.common.objective import Objective
from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.models.modules import ERBYOLPredictionHead, ERBYOLProjectionHead

from ._base import ResNetMethod


class BYOL(ResNetMethod):
    """BYOL (Grill et al., 2020); ``objective="er"`` for BYOL-ER.

    Args:
        batch_size_per_device, num_classes, objective, backbone, er_kwargs:
            See :class:`benchmarks.imagenet.resnet50._base.ResNetMethod`.
        ema:
            A constant EMA coefficient instead of lightly's cosine schedule from 0.99
            to 1, or None.
    """

    name = "byol"
    sphere = True
    has_teacher = True

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
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
            NegativeCosineSimilarity,
            ERNegativeCosineSimilarity,
            # criterion(teacher, prediction): the entropy term is the prediction's.
            er_only={"gather_distributed": True, "prediction": "x1"},
        )
        projection = self.pick(BYOLProjectionHead, ERBYOLProjectionHead)
        prediction = self.pick(BYOLPredictionHead, ERBYOLPredictionHead)
        kappa = self.meter_kwargs("sphere")
        self.projection_head = projection(self.feature_dim, **kappa)
        self.prediction_head = prediction(**kappa)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_projection_head = projection(self.feature_dim, **kappa)
        self.add_online_classifier(self.feature_dim)

    def forward_student(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(features, predictions) of the trained network."""
        features = self.forward(x).flatten(start_dim=1)
        predictions = self.prediction_head(self.projection_head(features))
        return features, predictions

    @torch.no_grad()
    def forward_teacher(self, x: Tensor) -> Tensor:
        """The teacher's projections of x."""
        features = self.teacher_backbone(x).flatten(start_dim=1)
        projections: Tensor = self.teacher_projection_head(features)
        return projections

    def training_step(
        self, batch: Tuple[List[Tensor], Tensor, List[str]], batch_idx: int
    ) -> Tensor:
        momentum = self.teacher_momentum(start_value=0.99)
        update_momentum(self.backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.projection_head, self.teacher_projection_head, m=momentum)
        views, targets = batch[0], batch[1]
        teacher_0 = self.forward_teacher(views[0])
        teacher_1 = self.forward_teacher(views[1])
        features_0, predictions_0 = self.forward_student(views[0])
        _, predictions_1 = self.forward_student(views[1])
        # 2 * (1 - cos) is the squared distance of the normalized vectors; the two
        # directions are summed, not averaged, as in BYOL's code.
        loss_0: Tensor = 2 * self.criterion(teacher_0, predictions_1)
        loss_1: Tensor = 2 * self.criterion(teacher_1, predictions_0)
        loss = loss_0 + loss_1
        self.log_loss(loss, len(targets))
        return loss + self.online_step(features_0, targets, batch_idx)

    def configure_optimizers(self) -> Any:
        """LARS, lr 0.45 per 256 images, 10 warmup epochs."""
        optimizer = LARS(
            self.param_groups(
                [self.backbone, self.projection_head, self.prediction_head]
            ),
            # BYOL's 100-epoch settings of the authors' code, not the paper's.
            lr=0.45 * self.batch_size_per_device * self.trainer.world_size / 256,
            momentum=0.9,
            weight_decay=1e-6,
        )
        return [optimizer], [self.cosine_warmup(optimizer, warmup_epochs=10)]


def transform(image_size: int = 224) -> BYOLTransform:
    """lightly's ``BYOLTransform()`` (at another crop size if given)."""
    if image_size == 224:
        return BYOLTransform()
    return BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=image_size),
        view_2_transform=BYOLView2Transform(input_size=image_size),
    )
