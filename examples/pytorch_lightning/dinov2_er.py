# DINOv2-ER with PyTorch Lightning: lightly's DINOv2 example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: DINOLoss -> ERDINOLoss, which keeps the
# teacher centering and adds an explicit entropy term (centering=False is the
# paper's variant), KoLeoLoss -> ERKoLeoLoss, KoLeo as
# the Kozachenko-Leonenko entropy of the class tokens in nats (KoLeo's gradient, so
# its weight 0.1 stays), the ER terms logged, and EntropyMonitor in the callbacks.
# iBOT's loss is unchanged.
#
# Dependencies: lightly, timm and lightly-er (`pip install .` in the lightly-er
# repository installs lightly).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.
import copy
from functools import partial

import pytorch_lightning as pl
import torch
import torchvision
from lightly.loss import IBOTPatchLoss
from lightly.models.modules import DINOv2ProjectionHead, MaskedVisionTransformerTIMM
from lightly.models.utils import (
    random_block_mask,
    update_drop_path_rate,
    update_momentum,
)
from lightly.transforms.dino_transform import DINOTransform
from lightly.utils.scheduler import cosine_schedule, linear_warmup_schedule
from timm.models.vision_transformer import vit_small_patch16_224
from torch.nn import Module
from torch.optim import AdamW

from lightly_er.loss import ERDINOLoss, ERKoLeoLoss
from lightly_er.monitoring import EntropyMeter, EntropyMonitor


def freeze_eval_module(module):
    """No gradient, eval mode: the teacher is an EMA of the student."""
    for param in module.parameters():
        param.requires_grad = False
    module.eval()


class DINOv2Head(Module):
    def __init__(self, dino_head, ibot_head):
        super().__init__()
        self.dino_head = dino_head
        self.ibot_head = ibot_head


class DINOv2(pl.LightningModule):
    def __init__(self, ibot_separate_head=False):
        super().__init__()
        self.save_hyperparameters()

        # The teacher's ViT-S/16, with learned position embeddings and layer scale.
        vit_teacher = vit_small_patch16_224(
            pos_embed="learn",
            dynamic_img_size=True,
            init_values=1e-5,
        )
        self.teacher_backbone = MaskedVisionTransformerTIMM(
            vit=vit_teacher,
            antialias=False,
            pos_embed_initialization="skip",
        )
        self.student_backbone = copy.deepcopy(self.teacher_backbone)
        update_drop_path_rate(
            self.student_backbone.vit,
            drop_path_rate=0.1,  # a smaller rate such as 0.1 suits ViT-S
            mode="uniform",
        )
        freeze_eval_module(self.teacher_backbone)

        dino_head = partial(DINOv2ProjectionHead, input_dim=384)
        teacher_dino_head = dino_head()
        student_dino_head = dino_head()
        ibot_head = partial(DINOv2ProjectionHead, input_dim=384)
        if ibot_separate_head:
            teacher_ibot_head = ibot_head()
            student_ibot_head = ibot_head()
        else:
            teacher_ibot_head = teacher_dino_head
            student_ibot_head = student_dino_head
        self.teacher_head = DINOv2Head(teacher_dino_head, teacher_ibot_head)
        self.student_head = DINOv2Head(student_dino_head, student_ibot_head)
        freeze_eval_module(self.teacher_head)

        # The ER swap: lightly's DINOLoss() and KoLeoLoss().
        self.dino_criterion = ERDINOLoss()
        self.ibot_criterion = IBOTPatchLoss()
        self.koleo_criterion = ERKoLeoLoss()

    def forward(self, x):
        return self.teacher_backbone(x)

    def forward_teacher(self, x):
        features = self.teacher_backbone.encode(x)
        return features[:, 0], features

    def forward_student(self, x, mask):
        features = self.student_backbone.encode(x, mask=mask)
        masked_features = None if mask is None else features[mask]
        return features[:, 0], masked_features

    def training_step(self, batch, batch_idx):
        views = batch[0]
        global_views = torch.cat(views[:2])
        local_views = torch.cat(views[2:])

        # Random block masks over the patches of the global crops (not the class
        # token).
        B = len(global_views)
        sequence_length = self.teacher_backbone.sequence_length
        mask = global_views.new_zeros((B, sequence_length), dtype=torch.bool)
        H, W = self.teacher_backbone.vit.patch_embed.grid_size
        block_mask = random_block_mask(size=(B, H, W), device=mask.device)
        mask[:, 1:] = block_mask.flatten(start_dim=1)

        with torch.no_grad():
            teacher_cls_token, teacher_features = self.forward_teacher(global_views)
            teacher_cls_out = self.teacher_head.dino_head(teacher_cls_token)
            teacher_masked_out = self.teacher_head.ibot_head(teacher_features[mask])

        student_global_cls_token, student_global_masked_features = self.forward_student(
            global_views, mask=mask
        )
        student_global_cls_out = self.student_head.dino_head(student_global_cls_token)
        student_global_masked_out = self.student_head.ibot_head(
            student_global_masked_features
        )
        student_local_cls_token, _ = self.forward_student(local_views, mask=None)
        student_local_cls_out = self.student_head.dino_head(student_local_cls_token)
        student_cls_out = torch.cat([student_global_cls_out, student_local_cls_out])

        teacher_temp = linear_warmup_schedule(
            step=self.trainer.global_step,
            warmup_steps=int(
                30 / self.trainer.max_epochs * self.trainer.estimated_stepping_batches
            ),
            start_value=0.04,
            end_value=0.07,
        )
        dino_loss = self.dino_criterion(
            teacher_out=teacher_cls_out.chunk(2),
            student_out=student_cls_out.chunk(len(views)),
            teacher_temp=teacher_temp,
        )
        ibot_loss = self.ibot_criterion(
            teacher_out=teacher_masked_out,
            student_out=student_global_masked_out,
            mask=block_mask,
            teacher_temp=teacher_temp,
        )
        koleo_loss = 0.1 * sum(
            self.koleo_criterion(t) for t in student_global_cls_token.chunk(2)
        )
        loss = dino_loss + ibot_loss + koleo_loss
        # DINO-ER's terms and the class tokens' entropy, in nats.
        components = self.dino_criterion.last_components
        self.log("train_loss", loss, prog_bar=True)
        # ER in nats (the bound the loss maximizes) and the entropy gap: on prototypes
        # the entropy's floor is 0 (all mass on one prototype), so the entropy itself.
        self.log("er/er", components.entropy + components.reconstruction)
        self.log("er/entropy_gap", components.entropy)
        self.log("er/koleo_entropy", self.koleo_criterion.last_components.entropy)
        return loss

    def configure_optimizers(self):
        return AdamW(self.parameters(), lr=0.001)

    def on_before_optimizer_step(self, optimizer, *args):
        # The last layer of the heads is frozen in the first epoch, as in lightly.
        if self.current_epoch < 1:
            for param_group in optimizer.param_groups:
                if "last_layer" in param_group:
                    param_group["lr"] = 0.0

        weight_decay = cosine_schedule(
            step=self.trainer.global_step,
            max_steps=self.trainer.estimated_stepping_batches,
            start_value=0.04,
            end_value=0.4,
        )
        for group in optimizer.param_groups:
            if group["weight_decay"] != 0.0:
                group["weight_decay"] = weight_decay

    def on_train_batch_end(self, outputs, batch, batch_idx):
        momentum = cosine_schedule(
            step=self.trainer.global_step,
            max_steps=self.trainer.estimated_stepping_batches,
            start_value=0.992,
            end_value=1.0,
        )
        update_momentum(self.student_backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.student_head, self.teacher_head, m=momentum)
        return super().on_train_batch_end(outputs, batch, batch_idx)


model = DINOv2()

transform = DINOTransform(
    global_crop_scale=(0.32, 1),
    local_crop_scale=(0.05, 0.32),
    n_local_views=8,
)


# The detection annotations of Pascal VOC are not needed: every target becomes 0.
def target_transform(t):
    return 0


dataset = torchvision.datasets.VOCDetection(
    "datasets/pascal_voc",
    download=True,
    transform=transform,
    target_transform=target_transform,
)
# An image or video folder works as well:
# from lightly.data import LightlyDataset
# dataset = LightlyDataset("path/to/folder", transform=transform)

dataloader = torch.utils.data.DataLoader(
    dataset,
    batch_size=64,
    shuffle=True,
    drop_last=True,
    num_workers=8,
)

accelerator = "gpu" if torch.cuda.is_available() else "cpu"

# EntropyMonitor measures the student's DINO head, softmax(output / 0.1) over the
# 65,536 prototypes, every 50 steps, logs entropy/student_head.dino_head/<metric>
# and warns if the student collapses.
monitor = EntropyMonitor(
    modules={"student_head.dino_head": EntropyMeter.for_loss(model.dino_criterion)}
)
trainer = pl.Trainer(
    max_epochs=50, devices=1, accelerator=accelerator, callbacks=[monitor]
)
trainer.fit(model=model, train_dataloaders=dataloader)
