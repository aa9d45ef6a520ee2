"""MoCo v2 and MoCo-v2-ER, as lightly's ``benchmarks/imagenet/resnet50/mocov2.py``.

Original: ``MoCoProjectionHead()`` and ``NTXentLoss(temperature=0.2,
memory_bank_size=(65536, 128), gather_distributed=True)``. ER:
:class:`lightly_er.loss.ERNTXentLoss` with the same arguments [0] (lightly-er has no
MoCo head of its own: both objectives use lightly's). The query encoder
(``backbone``, ``projection_head``) is trained by SGD (lr 0.03 per 256 images,
momentum 0.9, weight decay 1e-4) on a per-step cosine schedule without warmup. The key
encoder is a copy of the query backbone and a freshly initialized head; it follows the
query encoder with a constant EMA coefficient of 0.999, updated between the query and
the key encoding, and encodes a batch shuffled across processes. Queries come from the
second view, keys from the first.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import batch_shuffle, batch_unshuffle, update_momentum
from lightly.transforms.moco_transform import MoCoV2Transform
from torch import Tensor
from torch.optim import SGD

from benchmarks.common.objective import Objective
from lightly_er.loss import ERNTXentLoss

from ._base import ResNetMethod

MOMENTUM = 0.999


class MoCoV2(ResNetMethod):
    """MoCo v2 (Chen et al., 2020); ``objective="er"`` for MoCo-v2-ER.

    Args:
        batch_size_per_device, num_classes, objective, backbone, er_kwargs:
            See :class:`benchmarks.imagenet.resnet50._base.ResNetMethod`.
        ema:
            A constant EMA coefficient instead of lightly's 0.999, or None.
    """

    name = "mocov2"
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
        self.projection_head = MoCoProjectionHead(self.feature_dim)
        self.key_backbone = copy.deepcopy(self.backbone)
        self.key_projection_head = MoCoProjectionHead(self.feature_dim)
        self.criterion = self.make_loss(
            NTXentLoss,
            ERNTXentLoss,
            temperature=0.2,
            memory_bank_size=(65536, 128),
            gather_distributed=True,
        )
        self.add_online_classifier(self.feature_dim)

    def forward_query_encoder(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(features, projections) of the query encoder."""
        features = self.forward(x).flatten(start_dim=1)
        projections = self.projection_head(features)
        return features, projections

    @torch.no_grad()
    def forward_key_encoder(self, x: Tensor) -> Tensor:
        """Key projections of x, encoded in a batch shuffled across processes."""
        distributed = self.trainer.num_devices > 1
        x, shuffle = batch_shuffle(batch=x, distributed=distributed)
        features = self.key_backbone(x).flatten(start_dim=1)
        projections = self.key_projection_head(features)
        keys: Tensor = batch_unshuffle(
            batch=projections, shuffle=shuffle, distributed=distributed
        )
        return keys

    def training_step(
        self, batch: Tuple[List[Tensor], Tensor, List[str]], batch_idx: int
    ) -> Tensor:
        views, targets = batch[0], batch[1]
        query_features, queries = self.forward_query_encoder(views[1])
        # The key encoder moves between the query and the key encoding, as in the
        # authors' code.
        momentum = self.ema if self.ema is not None else MOMENTUM
        update_momentum(self.backbone, self.key_backbone, m=momentum)
        update_momentum(self.projection_head, self.key_projection_head, m=momentum)
        keys = self.forward_key_encoder(views[0])
        loss: Tensor = self.criterion(queries, keys)
        self.log_loss(loss, len(targets))
        return loss + self.online_step(query_features, targets, batch_idx)

    def configure_optimizers(self) -> Any:
        """SGD, lr 0.03 per 256 images, cosine schedule without warmup."""
        optimizer = SGD(
            self.param_groups([self.backbone, self.projection_head]),
            lr=0.03 * self.batch_size_per_device * self.trainer.world_size / 256,
            momentum=0.9,
            weight_decay=1e-4,
        )
        return [optimizer], [self.cosine_warmup(optimizer, warmup_epochs=0)]


def transform(image_size: int = 224) -> MoCoV2Transform:
    """lightly's ``MoCoV2Transform()`` (at another crop size if given)."""
    if image_size == 224:
        return MoCoV2Transform()
    return MoCoV2Transform(input_size=image_size)
