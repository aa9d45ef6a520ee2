"""MoCo v2 and MoCo-v2-ER on ImageNet.

Original: lightly's ``NTXentLoss`` (temperature 0.2, a queue of 65536 keys) with
``MoCoProjectionHead``. ER: :class:`lightly_er.loss.ERNTXentLoss` with the same queue,
which it uses as extra support of the entropy estimate [0]; lightly-er has no MoCo head
adapter (the ER loss normalises its inputs), so the heads are lightly's. Both use SGD
(lr 0.03 per 256 images, weight decay 1e-4), a cosine schedule without warmup, an EMA
key encoder (momentum 0.999) and batch shuffling of the keys with DDP, as lightly's
benchmark.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Dict, List, Sequence

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import (
    batch_shuffle,
    batch_unshuffle,
    deactivate_requires_grad,
    update_momentum,
)
from lightly.transforms.moco_transform import MoCoV2Transform
from torch import Tensor, nn

from lightly_er.loss import ERNTXentLoss
from lightly_er.monitoring import Support

from ._base import ImageNetMethod, views_and_targets

QUEUE_SIZE = 65536


class MoCoV2(ImageNetMethod):
    """MoCo v2 (Chen et al., 2020); ``objective="er"`` for MoCo-v2-ER.

    ``backbone`` and ``projection_head`` form the query encoder (trained, used for
    evaluation); ``key_backbone`` and ``key_projection_head`` are its EMA copy.

    Args:
        *args, **kwargs: See :class:`ImageNetMethod`.
    """

    name = "mocov2"
    has_teacher = True
    ema_start = 0.999
    optimizer_name = "sgd"
    base_lr = 0.03
    weight_decay = 1e-4
    warmup_epochs = 0
    monitor_modules: ClassVar[Dict[str, Support]] = {"projection_head": "sphere"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.projection_head = MoCoProjectionHead(self.feature_dim, 2048, 128)
        self.key_backbone = copy.deepcopy(self.backbone)
        self.key_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.key_backbone)
        deactivate_requires_grad(self.key_projection_head)
        loss = self.pick(NTXentLoss, ERNTXentLoss)
        self.criterion = loss(
            temperature=0.2,
            memory_bank_size=(QUEUE_SIZE, 128),
            gather_distributed=self.gather_distributed,
        )

    def trained_modules(self) -> List[nn.Module]:
        return [self.backbone, self.projection_head]

    def teacher_momentum(self) -> float:
        """MoCo keeps the EMA coefficient constant (0.999, or ``ema``)."""
        return self.ema if self.ema is not None else self.ema_start

    @torch.no_grad()
    def forward_key(self, x: Tensor) -> Tensor:
        """Key projections of x, with the batch shuffled across processes (DDP)."""
        distributed = self.trainer.world_size > 1
        x, idx = batch_shuffle(batch=x, distributed=distributed)
        features = self.key_backbone(x).flatten(start_dim=1)
        keys: Tensor = self.key_projection_head(features)
        out: Tensor = batch_unshuffle(batch=keys, shuffle=idx, distributed=distributed)
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Tensor:
        views, targets = views_and_targets(batch)
        momentum = self.teacher_momentum()
        update_momentum(self.backbone, self.key_backbone, m=momentum)
        update_momentum(self.projection_head, self.key_projection_head, m=momentum)
        features = self(views[0])
        queries = self.projection_head(features)
        keys = self.forward_key(views[1])
        loss: Tensor = self.criterion(queries, keys)
        self.log_loss(loss, len(targets))
        return loss + self.online_step(features, targets, batch_idx)


def transform(image_size: int = 224) -> MoCoV2Transform:
    """MoCo v2's two-view augmentation at the given crop size."""
    return MoCoV2Transform(input_size=image_size)
