# DINOv2-ER in plain PyTorch: lightly's DINOv2 example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: DINOLoss -> ERDINOLoss, which keeps the
# teacher centering and adds an explicit entropy term (centering=False is the
# paper's variant), KoLeoLoss -> ERKoLeoLoss, KoLeo as
# the Kozachenko-Leonenko entropy of the class tokens in nats (KoLeo's gradient,
# so its weight 0.1 stays), and the ER terms printed next to the loss. iBOT's loss
# is unchanged. lightly's example trains 50 epochs; 10 here, as the other examples.
#
# Dependencies: lightly, timm and lightly-er (`pip install .` in the lightly-er
# repository installs lightly).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.
import copy
from functools import partial

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
from lightly_er.monitoring import EntropyMeter


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


class DINOv2(Module):
    def __init__(self, ibot_separate_head=False):
        super().__init__()

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

    def forward(self, x):
        return self.teacher_backbone(x)

    def forward_teacher(self, x):
        features = self.teacher_backbone.encode(x)
        return features[:, 0], features

    def forward_student(self, x, mask):
        features = self.student_backbone.encode(x, mask=mask)
        masked_features = None if mask is None else features[mask]
        return features[:, 0], masked_features


model = DINOv2()

transform = DINOTransform(
    global_crop_scale=(0.32, 1),
    local_crop_scale=(0.05, 0.32),
    n_local_views=8,
)


# The detection annotations of Pascal VOC are not needed: every target becomes 0.
def target_transform(t):
    return 0


device = "cuda" if torch.cuda.is_available() else "cpu"
model.to(device)

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

# The ER swap: lightly's DINOLoss() and KoLeoLoss().
dino_criterion = ERDINOLoss()
ibot_criterion = IBOTPatchLoss()
koleo_criterion = ERKoLeoLoss()
criterion = dino_criterion  # the loss whose ER terms are printed

# The losses hold buffers: move them to the device too.
dino_criterion = dino_criterion.to(device)
ibot_criterion = ibot_criterion.to(device)
koleo_criterion = koleo_criterion.to(device)

optimizer = AdamW(model.parameters(), lr=0.001)

# The student's DINO head gives scores over 65,536 prototypes: a discrete meter at
# the loss's student temperature measures the collapse score every 50 steps.
meter = EntropyMeter.for_loss(dino_criterion)
measure_every_n_steps = 50

epochs = 10
num_batches = len(dataloader)
total_steps = epochs * num_batches

print("Starting Training")
step = 0
for epoch in range(epochs):
    total_loss = 0
    total_entropy = 0
    total_reconstruction = 0
    for batch_idx, batch in enumerate(dataloader):
        views = [view.to(device) for view in batch[0]]
        global_views = torch.cat(views[:2])
        local_views = torch.cat(views[2:])

        # Random block masks over the patches of the global crops (not the class
        # token).
        B = len(global_views)
        sequence_length = model.teacher_backbone.sequence_length
        mask = global_views.new_zeros((B, sequence_length), dtype=torch.bool)
        H, W = model.teacher_backbone.vit.patch_embed.grid_size
        block_mask = random_block_mask(size=(B, H, W), device=mask.device)
        mask[:, 1:] = block_mask.flatten(start_dim=1)

        with torch.no_grad():
            teacher_cls_token, teacher_features = model.forward_teacher(global_views)
            teacher_cls_out = model.teacher_head.dino_head(teacher_cls_token)
            teacher_masked_out = model.teacher_head.ibot_head(teacher_features[mask])

        student_global_cls_token, student_global_masked_features = (
            model.forward_student(global_views, mask=mask)
        )
        student_global_cls_out = model.student_head.dino_head(student_global_cls_token)
        student_global_masked_out = model.student_head.ibot_head(
            student_global_masked_features
        )
        student_local_cls_token, _ = model.forward_student(local_views, mask=None)
        student_local_cls_out = model.student_head.dino_head(student_local_cls_token)
        student_cls_out = torch.cat([student_global_cls_out, student_local_cls_out])

        global_step = epoch * num_batches + batch_idx
        teacher_temp = linear_warmup_schedule(
            step=global_step,
            warmup_steps=int(30 / epochs * total_steps),
            start_value=0.04,
            end_value=0.07,
        )
        dino_loss = dino_criterion(
            teacher_out=teacher_cls_out.chunk(2),
            student_out=student_cls_out.chunk(len(views)),
            teacher_temp=teacher_temp,
        )
        ibot_loss = ibot_criterion(
            teacher_out=teacher_masked_out,
            student_out=student_global_masked_out,
            mask=block_mask,
            teacher_temp=teacher_temp,
        )
        koleo_loss = 0.1 * sum(
            koleo_criterion(t) for t in student_global_cls_token.chunk(2)
        )
        loss = dino_loss + ibot_loss + koleo_loss
        # DINO-ER's terms, in nats (higher is better): loss has -(entropy +
        # reconstruction) in it; koleo_criterion.last_components.entropy is the
        # class tokens' entropy.
        total_loss += loss.detach()
        total_entropy += dino_criterion.last_components.entropy
        total_reconstruction += dino_criterion.last_components.reconstruction
        loss.backward()

        # The last layer of the heads is frozen in the first epoch, as in lightly.
        if epoch < 1:
            for param_group in optimizer.param_groups:
                if "last_layer" in param_group:
                    param_group["lr"] = 0.0

        weight_decay = cosine_schedule(
            step=global_step,
            max_steps=total_steps,
            start_value=0.04,
            end_value=0.4,
        )
        for group in optimizer.param_groups:
            if group["weight_decay"] != 0.0:
                group["weight_decay"] = weight_decay

        optimizer.step()
        optimizer.zero_grad()

        momentum = cosine_schedule(
            step=global_step,
            max_steps=total_steps,
            start_value=0.992,
            end_value=1.0,
        )
        update_momentum(model.student_backbone, model.teacher_backbone, m=momentum)
        update_momentum(model.student_head, model.teacher_head, m=momentum)

        if step % measure_every_n_steps == 0:
            metrics = meter.update(student_global_cls_out)
            if metrics is not None:
                print(
                    f"step: {step:>5}, "
                    f"collapse score: {metrics['collapse_score']:.3f}, "
                    f"normalized entropy: {metrics['normalized_entropy']:.3f}"
                )
        step += 1

    avg_loss = total_loss / num_batches
    avg_entropy = total_entropy / num_batches
    avg_reconstruction = total_reconstruction / num_batches
    # ER = entropy + reconstruction in nats, the bound the loss maximizes, and the
    # entropy gap: the entropy above its floor, which on prototypes is 0 (all mass on
    # one prototype), so here the entropy itself.
    avg_er = avg_entropy + avg_reconstruction
    print(
        f"epoch: {epoch:>02}, loss: {avg_loss:.5f}, ER: {avg_er:.3f}, "
        f"entropy gap: {avg_entropy:.3f}"
    )
