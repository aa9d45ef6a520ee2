"""DINO and DINO-ER on a ViT, as lightly's ``benchmarks/imagenet/vitb16/dino.py``.

Original: teacher and student are each a timm ``vit_small_patch16_224(
dynamic_img_size=True)`` (ViT-S/16; the student with ``drop_path_rate=0.1``),
initialized on their own, in lightly's ``MaskedVisionTransformerTIMM``; heads
``DINOProjectionHead(input_dim=384, norm_last_layer=False)`` (the student's with
``freeze_last_layer=1``) and ``DINOLoss()``. ER:
:class:`lightly_er.models.modules.ERDINOProjectionHead` (meter at the loss's student
temperature) and :class:`lightly_er.loss.ERDINOLoss`, whose entropy term replaces
the centering and is estimated on the batch gathered from all processes [0]
(:mod:`benchmarks.imagenet._dino`). Both:
AdamW (lr 0.0005 per 256 images) with a weight decay that follows a cosine schedule
from 0.04 to 0.4 (set before every optimizer step, none on norm layers, biases and
the online classifier), 10 warmup epochs of a per-step cosine learning-rate schedule,
the student's last layer frozen in the first epoch, a constant teacher temperature of
0.04, an EMA teacher on a cosine schedule from 0.996 to 1, and DINO's multi-crop
augmentation with 8 local crops (the authors' default scales). Like lightly's script,
it clips no gradients.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from lightly.models.modules import MaskedVisionTransformerTIMM
from lightly.models.utils import update_momentum
from lightly.transforms.dino_transform import DINOTransform
from lightly.utils.optim import update_param_groups
from lightly.utils.scheduler import cosine_schedule
from timm.models.vision_transformer import (
    VisionTransformer,
    vit_small_patch16_224,
    vit_tiny_patch16_224,
)
from torch import Tensor
from torch.optim import AdamW, Optimizer

from benchmarks.common.objective import Objective

from .._common import scaled_size
from .._dino import DINOMethod, dino_transform

STUDENT_DROP_PATH_RATE = 0.1

VIT_BACKBONES: Dict[str, int] = {
    "vit_small_patch16_224": 16,
    "vit_tiny_patch16_224": 16,
    "vit_test": 8,
}
"""Accepted backbones and their patch sizes: lightly's ViT-S/16 first, timm's ViT-Ti/16
and ``vit_test``, a one-block ViT (width 32, 2 heads, 8-pixel patches) for tests."""


def build_vit(
    name: str, drop_path_rate: Optional[float] = None, **kwargs: Any
) -> VisionTransformer:
    """A randomly initialized timm ViT that takes any multiple of its patch size.

    Args:
        name: A key of :data:`VIT_BACKBONES`.
        drop_path_rate: Stochastic depth rate (None: timm's default, 0).
        **kwargs: More arguments of timm's ``VisionTransformer`` (DINOv2's).

    Raises:
        ValueError: If the name is unknown.
    """
    kwargs["dynamic_img_size"] = True
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    vit: VisionTransformer
    if name == "vit_small_patch16_224":
        vit = vit_small_patch16_224(**kwargs)
        return vit
    if name == "vit_tiny_patch16_224":
        vit = vit_tiny_patch16_224(**kwargs)
        return vit
    if name == "vit_test":
        return VisionTransformer(
            patch_size=8, embed_dim=32, depth=1, num_heads=2, **kwargs
        )
    raise ValueError(
        f"unknown backbone {name!r}; choose from {', '.join(VIT_BACKBONES)}"
    )


def check_image_size(backbone: str, image_size: int) -> Optional[str]:
    """An error message unless the global and local crops fit the patch size."""
    patch = VIT_BACKBONES[backbone]
    local = scaled_size(image_size, 96)
    if image_size % patch or local % patch:
        return (
            f"--image-size {image_size} gives crops of {image_size} and {local} "
            f"pixels; {backbone} needs multiples of its patch size {patch}"
        )
    return None


class DINO(DINOMethod):
    """DINO (Caron et al., 2021) on a ViT; ``objective="er"`` for DINO-ER.

    ``backbone`` and ``projection_head`` are the teacher (the network evaluated);
    ``student_backbone`` and ``student_projection_head`` are trained.

    Args:
        batch_size_per_device, num_classes, objective, er_kwargs:
            See :class:`benchmarks.imagenet._method.SSLMethod`.
        backbone:
            A key of :data:`VIT_BACKBONES` (lightly's: ``vit_small_patch16_224``).
        ema:
            A constant EMA coefficient instead of lightly's cosine schedule from
            0.996 to 1, or None.
    """

    teacher_no_grad = True

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
        objective: Objective = "original",
        backbone: str = "vit_small_patch16_224",
        ema: Optional[float] = None,
        er_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(batch_size_per_device, num_classes, objective, ema, er_kwargs)
        self.save_hyperparameters()
        teacher = MaskedVisionTransformerTIMM(vit=build_vit(backbone))
        self.backbone = teacher
        self.feature_dim = int(teacher.vit.embed_dim)
        head, meter = self.build_loss()
        self.projection_head = head(
            input_dim=self.feature_dim, norm_last_layer=False, **meter
        )
        self.student_backbone = MaskedVisionTransformerTIMM(
            vit=build_vit(backbone, drop_path_rate=STUDENT_DROP_PATH_RATE)
        )
        self.student_projection_head = head(
            input_dim=self.feature_dim,
            freeze_last_layer=1,
            norm_last_layer=False,
            **meter,
        )
        self.add_online_classifier(self.feature_dim)

    def forward(self, x: Tensor) -> Any:
        """The teacher's class token of x, shape (batch_size, feature_dim)."""
        return self.backbone(x)

    def update_teacher(self, momentum: float) -> None:
        """The teacher follows the student, as in lightly's script."""
        update_momentum(self.student_backbone, self.backbone, m=momentum)
        update_momentum(self.student_projection_head, self.projection_head, m=momentum)

    def configure_optimizers(self) -> Any:
        """AdamW on the student, lr 0.0005 per 256 images, 10 warmup epochs."""
        optimizer = AdamW(
            self.param_groups(
                [self.student_backbone, self.student_projection_head],
                weight_decay=0.04,
            ),
            lr=0.0005 * self.batch_size_per_device * self.trainer.world_size / 256,
        )
        return [optimizer], [self.cosine_warmup(optimizer, warmup_epochs=10)]

    def weight_decay(self) -> float:
        """This step's weight decay: a cosine schedule from 0.04 to 0.4."""
        return float(
            cosine_schedule(
                step=self.trainer.global_step,
                max_steps=self.trainer.estimated_stepping_batches,
                start_value=0.04,
                end_value=0.4,
            )
        )

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Freezes the last layer in the first epoch; sets this step's weight decay."""
        self.student_projection_head.cancel_last_layer_gradients(self.current_epoch)
        update_param_groups(
            optimizer,
            updates=[{"name": self.name, "weight_decay": self.weight_decay()}],
        )


def transform(image_size: int = 224) -> DINOTransform:
    """lightly's ViT DINO transform: the authors' default scales, 8 local crops.

    At another crop size, the local crops are 96 / 224 of it.
    """
    return dino_transform(
        image_size,
        global_crop_scale=(0.4, 1),
        local_crop_scale=(0.05, 0.4),
        n_local_views=8,
    )
