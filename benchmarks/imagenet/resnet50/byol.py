"""BYOL and BYOL-ER on ImageNet.

Original: lightly's ``NegativeCosineSimilarity`` with ``BYOLProjectionHead`` and
``BYOLPredictionHead``. ER: :class:`lightly_er.loss.ERNegativeCosineSimilarity` with
:class:`lightly_er.models.modules.ERBYOLProjectionHead` and
:class:`lightly_er.models.modules.ERBYOLPredictionHead` [0]. Both use LARS (lr 0.45 per
256 images, weight decay 1e-6), 10 warmup epochs, a teacher whose EMA coefficient goes
from 0.99 to 1 on a cosine schedule, and BYOL's asymmetric augmentations, as lightly's
benchmark.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Dict, List, Sequence

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.byol_transform import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
)
from torch import Tensor, nn

from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.models.modules import ERBYOLPredictionHead, ERBYOLProjectionHead
from lightly_er.monitoring import Support

from ._base import ImageNetMethod, views_and_targets


class BYOL(ImageNetMethod):
    """BYOL (Grill et al., 2020); ``objective="er"`` for BYOL-ER.

    Args:
        *args, **kwargs: See :class:`ImageNetMethod`.
    """

    name = "byol"
    has_teacher = True
    ema_start = 0.99
    optimizer_name = "lars"
    base_lr = 0.45
    weight_decay = 1e-6
    monitor_modules: ClassVar[Dict[str, Support]] = {
        "projection_head": "sphere",
        "prediction_head": "sphere",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        projection = self.pick(BYOLProjectionHead, ERBYOLProjectionHead)
        prediction = self.pick(BYOLPredictionHead, ERBYOLPredictionHead)
        self.projection_head = projection(self.feature_dim, 4096, 256)
        self.prediction_head = prediction(256, 4096, 256)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_projection_head)
        loss = self.pick(NegativeCosineSimilarity, ERNegativeCosineSimilarity)
        kwargs_er: Dict[str, Any] = (
            {"gather_distributed": self.gather_distributed}
            if self.objective == "er"
            else {}
        )
        self.criterion = loss(**kwargs_er)

    def trained_modules(self) -> List[nn.Module]:
        return [self.backbone, self.projection_head, self.prediction_head]

    @torch.no_grad()
    def forward_teacher(self, x: Tensor) -> Tensor:
        """The teacher's projection of x, without gradient."""
        features = self.teacher_backbone(x).flatten(start_dim=1)
        out: Tensor = self.teacher_projection_head(features)
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Tensor:
        views, targets = views_and_targets(batch)
        momentum = self.teacher_momentum()
        update_momentum(self.backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.projection_head, self.teacher_projection_head, m=momentum)
        teacher_0 = self.forward_teacher(views[0])
        teacher_1 = self.forward_teacher(views[1])
        features_0 = self(views[0])
        predictions_0 = self.prediction_head(self.projection_head(features_0))
        predictions_1 = self.prediction_head(self.projection_head(self(views[1])))
        # 2 * (1 - cos) is the squared distance of the normalised vectors; the two
        # directions are summed, not averaged, as in BYOL's code and lightly.
        loss: Tensor = 2 * self.criterion(
            teacher_0, predictions_1
        ) + 2 * self.criterion(teacher_1, predictions_0)
        self.log_loss(loss, len(targets))
        return loss + self.online_step(features_0, targets, batch_idx)


def transform(image_size: int = 224) -> BYOLTransform:
    """BYOL's asymmetric two-view augmentation at the given crop size."""
    return BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=image_size),
        view_2_transform=BYOLView2Transform(input_size=image_size),
    )
