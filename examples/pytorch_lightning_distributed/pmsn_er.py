# PMSN-ER with PyTorch Lightning and DDP: lightly's distributed PMSN example with the
# entropy and reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: PMSNLoss -> ERPMSNLoss (the entropy of the mean
# prediction relative to PMSN's power-law prior, -KL(mean || prior), in place of
# PMSN's KL(prior || mean)), the ER terms logged, and EntropyMonitor in the
# callbacks.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.
import copy

import pytorch_lightning as pl
import torch
import torchvision
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerTorchvision
from lightly.models.modules.heads import MSNProjectionHead
from lightly.transforms import MSNTransform
from torch import nn

from lightly_er.loss import ERPMSNLoss
from lightly_er.monitoring import EntropyMonitor


class PMSN(pl.LightningModule):
    def __init__(self):
        super().__init__()

        self.mask_ratio = 0.15
        # A ViT-S/16.
        vit = torchvision.models.VisionTransformer(
            image_size=224,
            patch_size=16,
            num_layers=12,
            num_heads=6,
            hidden_dim=384,
            mlp_dim=384 * 4,
        )
        # The target network: an exponential moving average of the anchor network.
        self.backbone = MaskedVisionTransformerTorchvision(vit=vit)
        self.projection_head = MSNProjectionHead(384)

        self.anchor_backbone = copy.deepcopy(self.backbone)
        self.anchor_projection_head = copy.deepcopy(self.projection_head)

        utils.deactivate_requires_grad(self.backbone)
        utils.deactivate_requires_grad(self.projection_head)

        self.prototypes = nn.Linear(256, 1024, bias=False).weight
        # lightly: PMSNLoss(gather_distributed=True). With gather_distributed the
        # entropy is that of the mean prediction over the batches of all GPUs, and
        # Sinkhorn sees them all, as in lightly.
        self.criterion = ERPMSNLoss(gather_distributed=True)

    def training_step(self, batch, batch_idx):
        utils.update_momentum(self.anchor_backbone, self.backbone, 0.996)
        utils.update_momentum(self.anchor_projection_head, self.projection_head, 0.996)

        views = batch[0]
        views = [view.to(self.device, non_blocking=True) for view in views]
        targets = views[0]
        anchors = views[1]
        anchors_focal = torch.concat(views[2:], dim=0)

        targets_out = self.backbone(images=targets)
        targets_out = self.projection_head(targets_out)
        anchors_out = self.encode_masked(anchors)
        anchors_focal_out = self.encode_masked(anchors_focal)
        anchors_out = torch.cat([anchors_out, anchors_focal_out], dim=0)

        loss = self.criterion(anchors_out, targets_out, self.prototypes.data)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        components = self.criterion.last_components
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)
        # ER in nats (the bound the loss maximizes) and PMSN-ER's entropy relative to
        # the power-law prior (at most 0, reached at the prior).
        self.log(
            "er/er", components.entropy + components.reconstruction, sync_dist=True
        )
        self.log("er/relative_entropy", components.entropy, sync_dist=True)
        return loss

    def encode_masked(self, anchors):
        batch_size, _, _, width = anchors.shape
        seq_length = (width // self.anchor_backbone.vit.patch_size) ** 2
        idx_keep, _ = utils.random_token_mask(
            size=(batch_size, seq_length),
            mask_ratio=self.mask_ratio,
            device=self.device,
        )
        out = self.anchor_backbone(images=anchors, idx_keep=idx_keep)
        return self.anchor_projection_head(out)

    def configure_optimizers(self):
        params = [
            *list(self.anchor_backbone.parameters()),
            *list(self.anchor_projection_head.parameters()),
            self.prototypes,
        ]
        return torch.optim.AdamW(params, lr=1.5e-4)


model = PMSN()

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

# Train with DDP on all GPUs; each GPU samples its own part of the dataset. The
# EntropyMonitor measures the anchors' embeddings gathered from all GPUs.
trainer = pl.Trainer(
    max_epochs=10,
    devices="auto",
    accelerator="gpu",
    strategy="ddp",
    use_distributed_sampler=True,
    callbacks=[EntropyMonitor(modules={"anchor_projection_head": "sphere"})],
)
trainer.fit(model=model, train_dataloaders=dataloader)
