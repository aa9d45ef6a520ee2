# PMSN-ER in plain PyTorch: lightly's PMSN example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: PMSNLoss -> ERPMSNLoss, whose entropy term is
# the entropy of the mean prediction relative to PMSN's power-law prior,
# -KL(mean || prior), maximal where PMSN's KL(prior || mean) is minimal; its terms
# are printed next to the loss.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.
import copy

import torch
import torchvision
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerTorchvision
from lightly.models.modules.heads import MSNProjectionHead
from lightly.transforms import MSNTransform
from torch import nn

from lightly_er.loss import ERPMSNLoss
from lightly_er.monitoring import EntropyMeter


class PMSN(nn.Module):
    def __init__(self, vit):
        super().__init__()

        self.mask_ratio = 0.15
        # The target network: an exponential moving average of the anchor network.
        self.backbone = MaskedVisionTransformerTorchvision(vit=vit)
        self.projection_head = MSNProjectionHead(input_dim=384)

        self.anchor_backbone = copy.deepcopy(self.backbone)
        self.anchor_projection_head = copy.deepcopy(self.projection_head)

        utils.deactivate_requires_grad(self.backbone)
        utils.deactivate_requires_grad(self.projection_head)

        self.prototypes = nn.Linear(256, 1024, bias=False).weight

    def forward(self, images):
        out = self.backbone(images=images)
        return self.projection_head(out)

    def forward_masked(self, images):
        batch_size, _, _, width = images.shape
        seq_length = (width // self.anchor_backbone.vit.patch_size) ** 2
        idx_keep, _ = utils.random_token_mask(
            size=(batch_size, seq_length),
            mask_ratio=self.mask_ratio,
            device=images.device,
        )
        out = self.anchor_backbone(images=images, idx_keep=idx_keep)
        return self.anchor_projection_head(out)


# A ViT-S/16.
vit = torchvision.models.VisionTransformer(
    image_size=224,
    patch_size=16,
    num_layers=12,
    num_heads=6,
    hidden_dim=384,
    mlp_dim=384 * 4,
)
model = PMSN(vit)
# A torchvision ViT works as well:
# vit = torchvision.models.vit_b_32(pretrained=False)
# model = PMSN(vit)

device = "cuda" if torch.cuda.is_available() else "cpu"
model.to(device)

transform = MSNTransform()


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

# The ER swap: the prior-matching term becomes an entropy relative to the prior.
criterion = ERPMSNLoss()  # lightly: PMSNLoss()

params = [
    *list(model.anchor_backbone.parameters()),
    *list(model.anchor_projection_head.parameters()),
    model.prototypes,
]
optimizer = torch.optim.AdamW(params, lr=1.5e-4)

# A meter of the anchors' embeddings on the sphere: their collapse score (0 when
# they collapse to one point) every 50 steps.
meter = EntropyMeter("sphere")
measure_every_n_steps = 50

print("Starting Training")
step = 0
for epoch in range(10):
    total_loss = 0
    total_entropy = 0
    total_reconstruction = 0
    for batch in dataloader:
        views = batch[0]
        utils.update_momentum(model.anchor_backbone, model.backbone, 0.996)
        utils.update_momentum(
            model.anchor_projection_head, model.projection_head, 0.996
        )

        views = [view.to(device, non_blocking=True) for view in views]
        targets = views[0]
        anchors = views[1]
        anchors_focal = torch.concat(views[2:], dim=0)

        targets_out = model.backbone(targets)
        targets_out = model.projection_head(targets_out)
        anchors_out = model.forward_masked(anchors)
        anchors_focal_out = model.forward_masked(anchors_focal)
        anchors_out = torch.cat([anchors_out, anchors_focal_out], dim=0)

        loss = criterion(anchors_out, targets_out, model.prototypes.data)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        total_loss += loss.detach()
        total_entropy += criterion.last_components.entropy
        total_reconstruction += criterion.last_components.reconstruction
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % measure_every_n_steps == 0:
            metrics = meter.update(anchors_out)
            if metrics is not None:
                print(
                    f"step: {step:>5}, "
                    f"collapse score: {metrics['collapse_score']:.3f}, "
                    f"effective rank: {metrics['effective_rank']:.1f}"
                )
        step += 1

    num_batches = len(dataloader)
    avg_loss = total_loss / num_batches
    avg_entropy = total_entropy / num_batches
    avg_reconstruction = total_reconstruction / num_batches
    # ER = entropy + reconstruction in nats, the bound the loss maximizes; PMSN-ER's
    # entropy is relative to the power-law prior: at most 0, reached at the prior.
    avg_er = avg_entropy + avg_reconstruction
    print(
        f"epoch: {epoch:>02}, loss: {avg_loss:.5f}, ER: {avg_er:.3f}, "
        f"relative entropy: {avg_entropy:.3f}"
    )
