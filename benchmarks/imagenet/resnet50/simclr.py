"""SimCLR and SimCLR-ER on ImageNet.

Original: lightly's ``NTXentLoss`` (temperature 0.1) and ``SimCLRProjectionHead``.
ER: :class:`lightly_er.loss.ERNTXentLoss` and
:class:`lightly_er.models.modules.ERSimCLRProjectionHead` [0]. Both use LARS with
square-root learning-rate scaling, 10 warmup epochs and SimCLR's augmentations, as
lightly's benchmark.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, List, Sequence

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms.simclr_transform import SimCLRTransform
from torch import Tensor, nn

from lightly_er.loss import ERNTXentLoss
from lightly_er.models.modules import ERSimCLRProjectionHead
from lightly_er.monitoring import Support

from ._base import ImageNetMethod, views_and_targets


class SimCLR(ImageNetMethod):
    """SimCLR (Chen et al., 2020); ``objective="er"`` for SimCLR-ER.

    Args:
        *args, **kwargs: See :class:`ImageNetMethod`.
    """

    name = "simclr"
    optimizer_name = "lars"
    weight_decay = 1e-6
    monitor_modules: ClassVar[Dict[str, Support]] = {"projection_head": "sphere"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        head = self.pick(SimCLRProjectionHead, ERSimCLRProjectionHead)
        self.projection_head = head(self.feature_dim, 2048, 128)
        loss = self.pick(NTXentLoss, ERNTXentLoss)
        self.criterion = loss(
            temperature=0.1, gather_distributed=self.gather_distributed
        )

    def trained_modules(self) -> List[nn.Module]:
        return [self.backbone, self.projection_head]

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Tensor:
        views, targets = views_and_targets(batch)
        features = self(torch.cat(views))
        z0, z1 = self.projection_head(features).chunk(len(views))[:2]
        loss: Tensor = self.criterion(z0, z1)
        self.log_loss(loss, len(targets))
        cls_loss = self.online_step(features, targets.repeat(len(views)), batch_idx)
        return loss + cls_loss

    def learning_rate(self, global_batch_size: int) -> float:
        """0.075 * sqrt(global batch): better than linear for batches <= 2048."""
        return 0.075 * math.sqrt(global_batch_size)


def transform(image_size: int = 224) -> SimCLRTransform:
    """SimCLR's two-view augmentation at the given crop size."""
    return SimCLRTransform(input_size=image_size)
