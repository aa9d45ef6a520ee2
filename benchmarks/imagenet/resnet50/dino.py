"""DINO and DINO-ER on ImageNet.

Original: lightly's ``DINOLoss`` (teacher centering and sharpening) with
``DINOProjectionHead``. ER: :class:`lightly_er.loss.ERDINOLoss`, whose explicit entropy
term replaces the centering, with :class:`lightly_er.models.modules.ERDINOProjectionHead`
[0]. Both use 65536 prototypes, SGD (lr 0.03 per 256 images, weight decay 1e-4),
10 warmup epochs, a teacher whose EMA coefficient goes from 0.996 to 1 on a cosine
schedule, the last layer frozen in the first epoch and DINO's multi-crop augmentation
with global crop scale (0.14, 1), as lightly's benchmark.

``backbone`` and ``projection_head`` are the teacher, used for evaluation;
``student_backbone`` and ``student_projection_head`` are trained.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Dict, List, Sequence

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import (
    activate_requires_grad,
    deactivate_requires_grad,
    update_momentum,
)
from lightly.transforms.dino_transform import DINOTransform
from torch import Tensor, nn

from lightly_er.loss import ERDINOLoss
from lightly_er.models.modules import ERDINOProjectionHead
from lightly_er.monitoring import Support

from ._base import ImageNetMethod, scaled_crop, views_and_targets

OUTPUT_DIM = 65536


class DINO(ImageNetMethod):
    """DINO (Caron et al., 2021); ``objective="er"`` for DINO-ER.

    Args:
        *args, **kwargs: See :class:`ImageNetMethod`.
    """

    name = "dino"
    has_teacher = True
    ema_start = 0.996
    optimizer_name = "sgd"
    base_lr = 0.03
    weight_decay = 1e-4
    monitor_modules: ClassVar[Dict[str, Support]] = {
        "student_projection_head": "discrete"
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        head = self.pick(DINOProjectionHead, ERDINOProjectionHead)
        # The head's weight norm cannot be deep-copied: build two, copy the weights.
        self.projection_head = head(
            self.feature_dim, 2048, 256, OUTPUT_DIM, freeze_last_layer=1
        )
        self.student_projection_head = head(
            self.feature_dim, 2048, 256, OUTPUT_DIM, freeze_last_layer=1
        )
        self.student_projection_head.load_state_dict(self.projection_head.state_dict())
        self.student_backbone = copy.deepcopy(self.backbone)
        deactivate_requires_grad(self.backbone)
        deactivate_requires_grad(self.projection_head)
        loss = self.pick(DINOLoss, ERDINOLoss)
        if self.objective == "er":
            self.criterion = loss(
                output_dim=OUTPUT_DIM, gather_distributed=self.gather_distributed
            )
        else:
            self.criterion = loss(output_dim=OUTPUT_DIM)

    def trained_modules(self) -> List[nn.Module]:
        return [self.student_backbone, self.student_projection_head]

    def on_fit_end(self) -> None:
        # The teacher is evaluated (linear, fine-tuning) after pretraining.
        activate_requires_grad(self.backbone)
        activate_requires_grad(self.projection_head)

    def forward_student(self, x: Tensor) -> Tensor:
        """The student's prototype scores of x."""
        features = self.student_backbone(x).flatten(start_dim=1)
        out: Tensor = self.student_projection_head(features)
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Tensor:
        views, targets = views_and_targets(batch)
        global_views = torch.cat(views[:2])
        with torch.no_grad():
            teacher_features = self(global_views)
            teacher_out = self.projection_head(teacher_features)
        student_out = [self.forward_student(global_views)]
        if len(views) > 2:
            # Local crops have another size: one forward pass for all of them.
            student_out.append(self.forward_student(torch.cat(views[2:])))
        self.student_projection_head.cancel_last_layer_gradients(self.current_epoch)
        loss: Tensor = self.criterion(
            list(teacher_out.chunk(2)),
            list(torch.cat(student_out).chunk(len(views))),
            epoch=self.current_epoch,
        )
        self.log_loss(loss, len(targets))
        cls_loss = self.online_step(teacher_features.chunk(2)[0], targets, batch_idx)
        momentum = self.teacher_momentum()
        update_momentum(self.student_backbone, self.backbone, m=momentum)
        update_momentum(self.student_projection_head, self.projection_head, m=momentum)
        return loss + cls_loss


def transform(image_size: int = 224) -> DINOTransform:
    """DINO's multi-crop augmentation (2 global, 6 local crops) for the crop size.

    The local crops are 96 / 224 of the global crop size, as at 224 pixels.
    """
    return DINOTransform(
        global_crop_size=image_size,
        global_crop_scale=(0.14, 1.0),
        local_crop_size=scaled_crop(image_size, 96),
    )
