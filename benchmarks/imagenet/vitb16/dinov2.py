"""DINOv2 and DINOv2-ER on a ViT, as lightly's ``benchmarks/imagenet/vitb16/dinov2.py``.

Original (lightly's recipe): teacher and student are timm's ``vit_small_patch16_224(
pos_embed="learn", dynamic_img_size=True, init_values=1e-5)`` in lightly's
``MaskedVisionTransformerTIMM(antialias=False, pos_embed_initialization="skip")``, the
student a copy of the teacher with uniform stochastic depth 0.1; heads
``DINOv2ProjectionHead(input_dim=384)`` for the teacher and the student, shared by
DINO and iBOT unless ``ibot_separate_head``; losses ``DINOLoss()`` on the class
tokens of all crops, ``IBOTPatchLoss()`` on the masked patches of the global crops
(random block masks), and ``0.1 * KoLeoLoss()`` on the student's class token of each
global crop; a teacher temperature warmed up linearly from 0.04 to 0.07 over 30
epochs; AdamW with lr 0.004 * sqrt(batch / 1024), a layer-wise decay of 0.9, 10 warmup
epochs of a per-step cosine schedule to 1e-6, weight decay on a cosine schedule from
0.04 to 0.4 (none on biases, norms and layer scales), the heads' last layer frozen in
the first epoch, gradients clipped to norm 3, and an EMA teacher on a cosine schedule
from 0.992 to 1, updated after each step. Multi-crop augmentation with 8 local crops
and lightly's DINOv2 scales.

ER [0]: :class:`lightly_er.loss.ERDINOLoss`, whose entropy term replaces DINO's
centering, and :class:`lightly_er.loss.ERKoLeoLoss`, KoLeo as the Kozachenko-Leonenko
entropy of the class tokens (same gradient as KoLeo, same weight 0.1), both estimated
on the batch gathered from all processes. iBOT's loss is unchanged. Everything else is
the original's: under one seed both objectives build the same weights.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
- [1] DINOv2, 2023, https://arxiv.org/abs/2304.07193
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Dict, List, Optional, Tuple

import torch
from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
from lightly.models.modules import DINOv2ProjectionHead, MaskedVisionTransformerTIMM
from lightly.models.utils import (
    random_block_mask,
    update_drop_path_rate,
    update_momentum,
)
from lightly.transforms.dino_transform import DINOTransform
from lightly.utils.optim import update_param_groups
from lightly.utils.scheduler import cosine_schedule, linear_warmup_schedule
from torch import Tensor, nn
from torch.optim import AdamW, Optimizer

from benchmarks.common.objective import Objective
from lightly_er.loss import ERDINOLoss, ERKoLeoLoss
from lightly_er.monitoring import EntropyMeter

from .._dino import dino_transform
from .._method import SSLMethod
from .dino import build_vit

STUDENT_DROP_PATH_RATE = 0.1
KOLEO_WEIGHT = 0.1
LAYER_DECAY = 0.9
MIN_LR = 1e-6
GRADIENT_CLIP = 3.0


def _freeze(module: nn.Module) -> None:
    """No gradient and eval mode, as lightly's ``freeze_eval_module``."""
    for param in module.parameters():
        param.requires_grad = False
    module.eval()


class DINOv2(SSLMethod):
    """DINOv2 (Oquab et al., 2023) on a ViT; ``objective="er"`` for DINOv2-ER.

    ``backbone``, ``projection_head`` (DINO) and ``ibot_head`` are the teacher (the
    network evaluated); ``student_backbone``, ``student_projection_head`` and
    ``student_ibot_head`` are trained (the iBOT heads are the DINO heads unless
    ``ibot_separate_head``).

    Args:
        batch_size_per_device, num_classes, objective, er_kwargs:
            See :class:`benchmarks.imagenet._method.SSLMethod`.
        backbone:
            A key of :data:`benchmarks.imagenet.vitb16.dino.VIT_BACKBONES`.
        ema:
            A constant EMA coefficient instead of lightly's cosine schedule from
            0.992 to 1, or None.
        ibot_separate_head:
            Separate heads for iBOT, as lightly's option (off).
    """

    name = "dinov2"
    has_teacher = True

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
        objective: Objective = "original",
        backbone: str = "vit_small_patch16_224",
        ema: Optional[float] = None,
        ibot_separate_head: bool = False,
        er_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(batch_size_per_device, num_classes, objective, ema, er_kwargs)
        self.save_hyperparameters()
        # Built in lightly's order: the same random numbers give the same weights.
        self.backbone = MaskedVisionTransformerTIMM(
            # lightly's DINOv2 ViT: learned position embeddings, layer scale 1e-5.
            vit=build_vit(backbone, pos_embed="learn", init_values=1e-5),
            antialias=False,
            pos_embed_initialization="skip",
        )
        self.student_backbone = copy.deepcopy(self.backbone)
        update_drop_path_rate(
            self.student_backbone.vit,
            drop_path_rate=STUDENT_DROP_PATH_RATE,
            mode="uniform",
        )
        _freeze(self.backbone)
        self.feature_dim = int(self.backbone.vit.embed_dim)
        self.projection_head = DINOv2ProjectionHead(input_dim=self.feature_dim)
        self.student_projection_head = DINOv2ProjectionHead(input_dim=self.feature_dim)
        self.ibot_head = self.projection_head
        self.student_ibot_head = self.student_projection_head
        if ibot_separate_head:
            self.ibot_head = DINOv2ProjectionHead(input_dim=self.feature_dim)
            self.student_ibot_head = DINOv2ProjectionHead(input_dim=self.feature_dim)
        _freeze(self.projection_head)
        _freeze(self.ibot_head)
        gather = {"gather_distributed": True}
        # The ER twin is the paper's variant: the entropy term replaces centering.
        self.criterion = self.make_loss(
            DINOLoss, ERDINOLoss, er_only={"centering": False, **gather}
        )
        self.ibot_criterion = IBOTPatchLoss()
        self.koleo_criterion = self.make_loss(KoLeoLoss, ERKoLeoLoss, er_only=gather)
        # lightly's DINOv2 head is not a DINOProjectionHead: say that its scores are
        # a discrete distribution, so that the entropy monitor measures them as one.
        self.student_projection_head.entropy_meter = EntropyMeter.for_loss(
            self.criterion
        )
        self.add_online_classifier(self.feature_dim)

    def forward(self, x: Tensor) -> Any:
        """The teacher's class token of x, shape (batch_size, feature_dim)."""
        return self.backbone(x)

    def _tokens(
        self,
        backbone: MaskedVisionTransformerTIMM,
        x: Tensor,
        mask: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        features = backbone.encode(x, mask=mask)
        return features[:, 0], features

    def training_step(
        self, batch: Tuple[List[Tensor], Tensor, List[str]], batch_idx: int
    ) -> Tensor:
        """DINO on the class tokens, iBOT on the masked patches, KoLeo on the student's
        global class tokens; the online classifier on the teacher's first crop."""
        views, targets = batch[0], batch[1]
        global_views = torch.cat(views[:2])
        local_views = torch.cat(views[2:])
        num = len(global_views)
        # The patch grid of these crops (lightly reads the ViT's, made for 224 px).
        patch_h, patch_w = self.backbone.vit.patch_embed.patch_size
        grid_h = global_views.shape[-2] // patch_h
        grid_w = global_views.shape[-1] // patch_w
        # Patches are masked in blocks; the class token never is.
        block_mask = random_block_mask(
            size=(num, grid_h, grid_w), device=global_views.device
        )
        mask = global_views.new_zeros((num, 1 + grid_h * grid_w), dtype=torch.bool)
        mask[:, 1:] = block_mask.flatten(start_dim=1)

        with torch.no_grad():
            teacher_cls, teacher_features = self._tokens(self.backbone, global_views)
            teacher_cls_out = self.projection_head(teacher_cls)
            teacher_masked_out = self.ibot_head(teacher_features[mask])
        student_global_cls, student_features = self._tokens(
            self.student_backbone, global_views, mask
        )
        student_global_out = self.student_projection_head(student_global_cls)
        student_masked_out = self.student_ibot_head(student_features[mask])
        student_local_cls, _ = self._tokens(self.student_backbone, local_views)
        student_cls_out = torch.cat(
            [student_global_out, self.student_projection_head(student_local_cls)]
        )

        teacher_temp = self.teacher_temperature()
        dino_loss: Tensor = self.criterion(
            teacher_out=list(teacher_cls_out.chunk(2)),
            student_out=list(student_cls_out.chunk(len(views))),
            teacher_temp=teacher_temp,
        )
        ibot_loss: Tensor = self.ibot_criterion(
            teacher_out=teacher_masked_out,
            student_out=student_masked_out,
            mask=block_mask,
            teacher_temp=teacher_temp,
        )
        koleo_loss = KOLEO_WEIGHT * sum(
            self.koleo_criterion(tokens) for tokens in student_global_cls.chunk(2)
        )
        loss = dino_loss + ibot_loss + koleo_loss
        extra: Dict[str, Any] = {
            "train_dino_loss": dino_loss,
            "train_ibot_loss": ibot_loss,
            "train_koleo_loss": koleo_loss,
            "teacher_temp": teacher_temp,
        }
        koleo_terms = getattr(self.koleo_criterion, "last_components", None)
        if koleo_terms is not None:
            extra["train_koleo_entropy"] = koleo_terms.entropy
        self.log_loss(loss, len(targets), extra)
        cls_loss = self.online_step(teacher_cls.chunk(2)[0], targets, batch_idx)
        total: Tensor = loss + cls_loss
        return total

    def teacher_temperature(self) -> float:
        """0.04 to 0.07, linearly over the first 30 epochs (lightly's schedule)."""
        max_epochs = self.trainer.max_epochs or 1
        steps = int(30 / max_epochs * self.trainer.estimated_stepping_batches)
        return float(
            linear_warmup_schedule(
                step=self.trainer.global_step,
                warmup_steps=steps,
                start_value=0.04,
                end_value=0.07,
            )
        )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The teacher follows the student after each step, as in lightly's script."""
        momentum = self.teacher_momentum(start_value=0.992)
        update_momentum(self.student_backbone, self.backbone, m=momentum)
        update_momentum(self.student_projection_head, self.projection_head, m=momentum)
        if self.student_ibot_head is not self.student_projection_head:
            update_momentum(self.student_ibot_head, self.ibot_head, m=momentum)

    def configure_optimizers(self) -> Any:
        """AdamW with lightly's layer-wise learning rates and weight decays."""
        lr = 0.004 * math.sqrt(self.global_batch_size / 1024)
        groups = self.layer_groups(lr)
        groups.append(
            {
                "name": "online_classifier",
                "params": list(self.online_classifier.parameters()),
                "lr": lr,
                "weight_decay": 0.0,
            }
        )
        optimizer = AdamW(groups, lr=lr)
        return [optimizer], [
            self.cosine_warmup(optimizer, warmup_epochs=10, end_value=MIN_LR / lr)
        ]

    def layer_groups(self, lr: float) -> List[Dict[str, Any]]:
        """One group per student parameter: lightly's layer decay and weight decay."""
        num_layers = len(self.student_backbone.vit.blocks)

        def decay(layer: int) -> float:
            return float(LAYER_DECAY ** (num_layers + 1 - layer))

        groups = []
        for name, param in self.named_parameters():
            if "student" not in name or "vit.head" in name:
                continue  # the teacher, the classifier, the ViT's own head
            group: Dict[str, Any] = {
                "name": name,
                "params": [param],
                "lr": lr,
                "weight_decay": 0.04,
            }
            tokens = ("pos_embed", "mask_token", "cls_token", "register_tokens")
            if any(token in name for token in tokens):
                group["lr"] = lr * decay(0)
            elif "patch_embed" in name:
                group["lr"] = lr * decay(0) * 0.2
            elif "blocks" in name:
                found = re.search(r"blocks\.(\d+)\.", name)
                assert found is not None, name
                group["lr"] = lr * decay(int(found.group(1)) + 1)
            elif not ("vit.norm" in name or "head" in name or "residual" in name):
                raise ValueError(f"no learning-rate rule for parameter {name}")
            if name.endswith(".bias") or ".norm" in name or "gamma" in name:
                group["weight_decay"] = 0.0
            groups.append(group)
        return groups

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: Optional[float] = None,
        gradient_clip_algorithm: Optional[str] = None,
    ) -> None:
        """Clips the gradient norm to 3, as lightly's script."""
        self.clip_gradients(
            optimizer,
            gradient_clip_val=GRADIENT_CLIP,
            gradient_clip_algorithm="norm",
        )

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """The heads' last layer has lr 0 in the first epoch; this step's decay."""
        if self.current_epoch < 1:
            for group in optimizer.param_groups:
                if "last_layer" in group["name"]:
                    group["lr"] = 0.0
        weight_decay = cosine_schedule(
            step=self.trainer.global_step,
            max_steps=self.trainer.estimated_stepping_batches,
            start_value=0.04,
            end_value=0.4,
        )
        update_param_groups(
            optimizer,
            updates=[
                {"name": group["name"], "weight_decay": weight_decay}
                for group in optimizer.param_groups
                if group["weight_decay"] != 0.0
            ],
        )


def transform(image_size: int = 224) -> DINOTransform:
    """lightly's DINOv2 transform: global scales (0.32, 1), local (0.05, 0.32), 8 local
    crops; at another crop size the local crops are 96 / 224 of it."""
    return dino_transform(
        image_size,
        global_crop_scale=(0.32, 1),
        local_crop_scale=(0.05, 0.32),
        n_local_views=8,
    )
