"""DINO and DINO-ER, as lightly's ``benchmarks/imagenet/resnet50/dino.py``.

Original: ``DINOProjectionHead()`` for the teacher, ``DINOProjectionHead(
freeze_last_layer=1)`` for the student (each initialized on its own; 65536
prototypes) and ``DINOLoss()``. ER: :class:`lightly_er.models.modules.ERDINOProjectionHead`
(meter at the loss's student temperature) and :class:`lightly_er.loss.ERDINOLoss`,
whose explicit entropy term replaces the centering and is estimated on the batch
gathered from all processes [0] (:mod:`benchmarks.imagenet._dino`). Both: SGD (lr 0.03 per 256 images, momentum 0.9,
weight decay 1e-4), 10 warmup epochs of a per-step cosine schedule, a constant
teacher temperature of 0.04, gradients clipped to norm 3 and the student's last layer
frozen in the first epoch (both in ``configure_gradient_clipping``), DINO's multi-crop
augmentation with the crop scales the authors give for ResNet-50, and a teacher
(``backbone``, ``projection_head``; the network evaluated) that is switched off for
gradients when training starts and follows the student with an EMA coefficient on a
cosine schedule from 0.996 to 1, updated at the start of each step.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Union

from lightly.models.utils import (
    activate_requires_grad,
    deactivate_requires_grad,
    update_momentum,
)
from lightly.transforms.dino_transform import DINOTransform
from torch.optim import SGD, Optimizer

from benchmarks.common.objective import Objective

from .._dino import DINOMethod, dino_transform
from ._base import ResNetMethod

GRADIENT_CLIP = 3.0


class DINO(DINOMethod, ResNetMethod):
    """DINO (Caron et al., 2021); ``objective="er"`` for DINO-ER.

    Args:
        batch_size_per_device, num_classes, objective, backbone, er_kwargs:
            See :class:`benchmarks.imagenet.resnet50._base.ResNetMethod`.
        ema:
            A constant EMA coefficient instead of lightly's cosine schedule from
            0.996 to 1, or None.
    """

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
        head, meter = self.build_loss()
        self.projection_head = head(self.feature_dim, **meter)
        self.student_backbone = copy.deepcopy(self.backbone)
        self.student_projection_head = head(
            self.feature_dim, freeze_last_layer=1, **meter
        )
        self.add_online_classifier(self.feature_dim)

    def on_train_start(self) -> None:
        """The teacher gets no gradients while training."""
        deactivate_requires_grad(self.backbone)
        deactivate_requires_grad(self.projection_head)

    def on_train_end(self) -> None:
        """The teacher is trainable again (fine-tuning evaluation)."""
        activate_requires_grad(self.backbone)
        activate_requires_grad(self.projection_head)

    def update_teacher(self, momentum: float) -> None:
        """The teacher follows the student, as in lightly's script."""
        update_momentum(self.student_backbone, self.backbone, m=momentum)
        update_momentum(self.student_projection_head, self.projection_head, m=momentum)

    def configure_optimizers(self) -> Any:
        """SGD on the student, lr 0.03 per 256 images, 10 warmup epochs."""
        optimizer = SGD(
            self.param_groups([self.student_backbone, self.student_projection_head]),
            # SGD rather than AdamW or LARS: the authors' choice for ResNet-50.
            lr=0.03 * self.batch_size_per_device * self.trainer.world_size / 256,
            momentum=0.9,
            weight_decay=1e-4,
        )
        return [optimizer], [self.cosine_warmup(optimizer, warmup_epochs=10)]

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: Union[int, float, None] = None,
        gradient_clip_algorithm: Union[str, None] = None,
    ) -> None:
        """Clips the gradient norm to 3, then drops the frozen last layer's gradient."""
        self.clip_gradients(
            optimizer=optimizer,
            gradient_clip_val=GRADIENT_CLIP,
            gradient_clip_algorithm="norm",
        )
        self.student_projection_head.cancel_last_layer_gradients(self.current_epoch)


def transform(image_size: int = 224) -> DINOTransform:
    """lightly's DINO transform with the authors' ResNet-50 crop scales.

    At another crop size, the local crops are 96 / 224 of it.
    """
    return dino_transform(
        image_size, global_crop_scale=(0.14, 1), local_crop_scale=(0.05, 0.14)
    )
