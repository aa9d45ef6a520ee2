"""SwAV and SwAV-ER on ImageNet.

Original: lightly's ``SwaVLoss`` (Sinkhorn codes) with ``SwaVProjectionHead`` and
``SwaVPrototypes``. ER: :class:`lightly_er.loss.ERSwaVLoss`, whose explicit entropy
term replaces Sinkhorn's equipartition, with
:class:`lightly_er.models.modules.ERSwaVProjectionHead` and
:class:`lightly_er.models.modules.ERSwaVPrototypes` [0]. Both use 3000 prototypes
(frozen in the first epoch), LARS (lr 0.6 per 256 images, weight decay 1e-6),
10 warmup epochs, a cosine schedule to 0.001 of the peak, multi-crop (2 x 224 and
6 x 96) and, from epoch 15, a queue of the last 15 batches, as lightly's benchmark.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import torch
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.transforms.swav_transform import SwaVTransform
from torch import Tensor, nn
from torch.nn import functional as F

from lightly_er.loss import ERSwaVLoss
from lightly_er.models.modules import ERSwaVProjectionHead, ERSwaVPrototypes
from lightly_er.monitoring import Support

from ._base import ImageNetMethod, scaled_crop, views_and_targets

CROP_COUNTS: Tuple[int, int] = (2, 6)
N_PROTOTYPES = 3000
QUEUE_START_EPOCH = 15
QUEUE_BATCHES = 15


class SwAV(ImageNetMethod):
    """SwAV (Caron et al., 2020); ``objective="er"`` for SwAV-ER.

    Args:
        *args, **kwargs: See :class:`ImageNetMethod`.
    """

    name = "swav"
    optimizer_name = "lars"
    base_lr = 0.6
    weight_decay = 1e-6
    end_lr_factor = 1e-3
    monitor_modules: ClassVar[Dict[str, Support]] = {
        "projection_head": "sphere",
        "prototypes": "discrete",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        head = self.pick(SwaVProjectionHead, ERSwaVProjectionHead)
        prototypes = self.pick(SwaVPrototypes, ERSwaVPrototypes)
        self.projection_head = head(self.feature_dim, 2048, 128)
        self.prototypes = prototypes(128, N_PROTOTYPES, n_steps_frozen_prototypes=1)
        if self.objective == "er":
            self.criterion: nn.Module = ERSwaVLoss(
                sinkhorn_gather_distributed=self.gather_distributed,
                gather_distributed=self.gather_distributed,
            )
        else:
            self.criterion = SwaVLoss(
                sinkhorn_gather_distributed=self.gather_distributed
            )
        self.queues = nn.ModuleList(
            [
                MemoryBankModule(
                    size=(QUEUE_BATCHES * self.batch_size_per_device, 128),
                    feature_dim_first=False,
                )
                for _ in range(CROP_COUNTS[0])
            ]
        )

    def trained_modules(self) -> List[nn.Module]:
        return [self.backbone, self.projection_head, self.prototypes]

    def project(self, features: Tensor) -> Tensor:
        """L2-normalised projection of backbone features."""
        return F.normalize(self.projection_head(features), dim=1)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Tensor:
        self.prototypes.normalize()
        crops, targets = views_and_targets(batch)
        features = [self(x) for x in crops]
        projections = [self.project(f) for f in features]
        high = CROP_COUNTS[0]
        queue_logits: Optional[List[Tensor]] = None
        if self.current_epoch >= QUEUE_START_EPOCH:
            with torch.no_grad():
                queued = [
                    queue(p.detach(), update=True)[1]
                    for queue, p in zip(self.queues, projections[:high], strict=True)
                ]
                if batch_idx > QUEUE_BATCHES:
                    queue_logits = [
                        self.prototypes(q, step=self.current_epoch) for q in queued
                    ]
        logits = [self.prototypes(p, step=self.current_epoch) for p in projections]
        loss: Tensor = self.criterion(
            high_resolution_outputs=logits[:high],
            low_resolution_outputs=logits[high:],
            queue_outputs=queue_logits,
        )
        self.log_loss(loss, len(targets))
        return loss + self.online_step(features[0], targets, batch_idx)


def transform(image_size: int = 224) -> SwaVTransform:
    """SwAV's multi-crop augmentation; low-resolution crops are 96 / 224 of it."""
    return SwaVTransform(
        crop_sizes=(image_size, scaled_crop(image_size, 96)),
        crop_counts=CROP_COUNTS,
    )
