"""What lightly's two DINO scripts (ResNet-50 and ViT) share, written once.

The loss (``DINOLoss()``, or :class:`lightly_er.loss.ERDINOLoss` whose entropy term
replaces the centering and is estimated on the batch gathered from all processes
[0]), the step (the teacher's EMA coefficient on a cosine schedule from 0.996 to 1,
updated first; teacher on the two global crops, student on all crops, a constant
teacher temperature of 0.04) and the multi-crop augmentation at other crop sizes.
Each script keeps its backbones, heads, optimizer and the EMA update itself (its
tests spy on ``update_momentum`` in its own module).

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Dict, List, Tuple

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.transforms.dino_transform import DINOTransform
from torch import Tensor, nn

from lightly_er.loss import ERDINOLoss
from lightly_er.models.modules import ERDINOProjectionHead

from ._common import scaled_size
from ._method import SSLMethod

TEACHER_TEMPERATURE = 0.04
"""The constant teacher temperature of both scripts (the authors' setting)."""


class DINOMethod(SSLMethod):
    """DINO's loss and step; ``backbone`` and ``projection_head`` are the teacher.

    Attributes:
        teacher_no_grad: Whether the teacher runs under ``torch.no_grad`` (the ViT
            script) rather than with its parameters switched off (ResNet-50).
    """

    name = "dino"
    has_teacher = True
    teacher_no_grad: ClassVar[bool] = False
    projection_head: nn.Module
    student_backbone: nn.Module
    student_projection_head: DINOProjectionHead

    def build_loss(self) -> Any:
        """The loss, and the head class whose meters take its student temperature.

        Returns:
            (head class, keyword arguments of the ER head's meter).
        """
        # The ER twin is the paper's variant: the entropy term replaces centering.
        self.criterion = self.make_loss(
            DINOLoss,
            ERDINOLoss,
            er_only={"centering": False, "gather_distributed": True},
        )
        head = self.pick(DINOProjectionHead, ERDINOProjectionHead)
        return head, self.meter_kwargs("discrete")

    def forward_student(self, x: Tensor) -> Tensor:
        """The student's prototype scores of x."""
        features = self.student_backbone(x).flatten(start_dim=1)
        projections: Tensor = self.student_projection_head(features)
        return projections

    def update_teacher(self, momentum: float) -> None:
        """Moves the teacher towards the student (each script's own update)."""
        raise NotImplementedError

    def training_step(
        self, batch: Tuple[List[Tensor], Tensor, List[str]], batch_idx: int
    ) -> Tensor:
        """The EMA update, then the loss of a batch of multi-crop views.

        The online classifier trains on the teacher's features of the first global
        crop (DINO's own linear evaluation of a ViT concatenates the last four
        blocks' tokens).
        """
        momentum = self.teacher_momentum(start_value=0.996)
        self.update_teacher(momentum)
        views, targets = batch[0], batch[1]
        global_views = torch.cat(views[:2])
        local_views = torch.cat(views[2:])
        no_grad = torch.no_grad() if self.teacher_no_grad else contextlib.nullcontext()
        with no_grad:
            teacher_features = self.forward(global_views).flatten(start_dim=1)
            teacher_projections = self.projection_head(teacher_features)
        student_projections = torch.cat(
            [self.forward_student(global_views), self.forward_student(local_views)]
        )
        loss: Tensor = self.criterion(
            teacher_out=list(teacher_projections.chunk(2)),
            student_out=list(student_projections.chunk(len(views))),
            teacher_temp=TEACHER_TEMPERATURE,
        )
        self.log_loss(loss, len(targets), {"ema_momentum": momentum})
        cls_loss = self.online_step(teacher_features.chunk(2)[0], targets, batch_idx)
        return loss + cls_loss


def dino_transform(image_size: int, **kwargs: Any) -> DINOTransform:
    """lightly's DINOTransform with kwargs; at another crop size than 224 the
    local crops are 96 / 224 of it."""
    sizes: Dict[str, Any] = (
        {}
        if image_size == 224
        else {
            "global_crop_size": image_size,
            "local_crop_size": scaled_size(image_size, 96),
        }
    )
    return DINOTransform(**kwargs, **sizes)
