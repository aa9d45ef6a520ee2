"""SwAV and SwAV-ER, as lightly's ``benchmarks/imagenet/resnet50/swav.py``.

Original: ``SwaVProjectionHead()``, ``SwaVPrototypes(n_steps_frozen_prototypes=1)``
(3000 prototypes, frozen in the first epoch) and
``SwaVLoss(sinkhorn_gather_distributed=True)``. ER:
:class:`lightly_er.models.modules.ERSwaVProjectionHead`,
:class:`lightly_er.models.modules.ERSwaVPrototypes` (meters at the library's default
kappa and at the loss's temperature) and :class:`lightly_er.loss.ERSwaVLoss` with the
same arguments, whose explicit entropy term replaces Sinkhorn's equipartition and is
estimated on the batch gathered from all processes [0]. Both: LARS (lr 0.6 per 256
images, weight decay 1e-6), 10 warmup epochs of a per-step cosine schedule whose end
factor is 0.0006 per 256 images (lightly's value), multi-crop (2 x 224 and 6 x 96
pixels), and from epoch 15 a queue of the last 15 batches of high-resolution
projections per crop.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.transforms.swav_transform import SwaVTransform
from lightly.utils.lars import LARS
from torch import Tensor
from torch.nn import ModuleList
from torch.nn import functional as F

from benchmarks.common.objective import Objective
from lightly_er.loss import ERSwaVLoss
from lightly_er.models.modules import ERSwaVProjectionHead, ERSwaVPrototypes

from .._common import scaled_size
from ._base import ResNetMethod

CROP_COUNTS: Tuple[int, int] = (2, 6)
QUEUE_START_EPOCH = 15
QUEUE_BATCHES = 15
PROJECTION_DIM = 128


class SwAV(ResNetMethod):
    """SwAV (Caron et al., 2020); ``objective="er"`` for SwAV-ER.

    Args:
        batch_size_per_device, num_classes, objective, backbone, ema, er_kwargs:
            See :class:`benchmarks.imagenet.resnet50._base.ResNetMethod` (``ema`` is
            ignored: SwAV has no teacher).
    """

    name = "swav"

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
            SwaVLoss,
            ERSwaVLoss,
            # The ER twin is the paper's variant: the entropy term replaces Sinkhorn.
            er_only={"use_sinkhorn": False, "gather_distributed": True},
            sinkhorn_gather_distributed=True,
        )
        head = self.pick(SwaVProjectionHead, ERSwaVProjectionHead)
        prototypes = self.pick(SwaVPrototypes, ERSwaVPrototypes)
        self.projection_head = head(self.feature_dim, **self.meter_kwargs("sphere"))
        self.prototypes = prototypes(
            n_steps_frozen_prototypes=1, **self.meter_kwargs("discrete")
        )
        self.add_online_classifier(self.feature_dim)
        # A queue for small batches (<= 256), one per high-resolution crop.
        self.queues = ModuleList(
            [
                MemoryBankModule(
                    size=(QUEUE_BATCHES * batch_size_per_device, PROJECTION_DIM)
                )
                for _ in range(CROP_COUNTS[0])
            ]
        )

    def project(self, x: Tensor) -> Tensor:
        """L2-normalized projection of backbone features."""
        return F.normalize(self.projection_head(x), dim=1, p=2)

    def training_step(
        self, batch: Tuple[List[Tensor], Tensor, List[str]], batch_idx: int
    ) -> Tensor:
        self.prototypes.normalize()
        multi_crops, targets = batch[0], batch[1]
        features = [self.forward(crops).flatten(start_dim=1) for crops in multi_crops]
        projections = [self.project(f) for f in features]
        high = CROP_COUNTS[0]

        queue_logits: Optional[List[Tensor]] = None
        with torch.no_grad():
            if self.current_epoch >= QUEUE_START_EPOCH:
                queued = update_queues(projections[:high], self.queues)
                # lightly counts the batches of the epoch, not the filled slots.
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

    def configure_optimizers(self) -> Any:
        """LARS, lr 0.6 per 256 images, 10 warmup epochs, lightly's end factor."""
        global_batch = self.batch_size_per_device * self.trainer.world_size
        optimizer = LARS(
            self.param_groups([self.backbone, self.projection_head, self.prototypes]),
            # 0.6 at batch 256, scaled linearly (4.8 at 2048), SwAV's appendix A.
            lr=0.6 * global_batch / 256,
            momentum=0.9,
            weight_decay=1e-6,
        )
        scheduler = self.cosine_warmup(
            optimizer, warmup_epochs=10, end_value=0.0006 * global_batch / 256
        )
        return [optimizer], [scheduler]


@torch.no_grad()
def update_queues(projections: Sequence[Tensor], queues: ModuleList) -> List[Tensor]:
    """Adds each crop's projections to its queue; returns the queues' contents.

    Args:
        projections: One (batch_size, dim) tensor per high-resolution crop.
        queues: One MemoryBankModule per crop.

    Returns:
        One (queue_size, dim) tensor per crop: the queue before this batch was added.

    Raises:
        ValueError: If there are not as many projections as queues.
    """
    if len(projections) != len(queues):
        raise ValueError(
            f"got {len(projections)} high-resolution projections for "
            f"{len(queues)} queues"
        )
    # The banks keep (dim, size); the prototypes take (size, dim).
    return [
        queue(p, update=True)[1].permute(1, 0)
        for queue, p in zip(queues, projections, strict=True)
    ]


def transform(image_size: int = 224) -> SwaVTransform:
    """lightly's ``SwaVTransform(crop_counts=(2, 6))`` (at another size if given).

    At another crop size, the low-resolution crops are 96 / 224 of it.
    """
    if image_size == 224:
        return SwaVTransform(crop_counts=CROP_COUNTS)
    return SwaVTransform(
        crop_sizes=(image_size, scaled_size(image_size, 96)),
        crop_counts=CROP_COUNTS,
    )
