# MSN-ER with PyTorch Lightning: lightly's MSN example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: MSNLoss -> ERMSNLoss (MSN's loss in nats,
# without its constant log K: MSN's ME-MAX is the entropy term), the ER terms
# logged, and EntropyMonitor in the callbacks.
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
from lightly.transforms.msn_transform import MSNTransform
from torch import nn

from lightly_er.loss import ERMSNLoss
from lightly_er.monitoring import EntropyMonitor


class MSN(pl.LightningModule):
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
        # lightly: MSNLoss(); loss + log(1024) is lightly's MSN loss.
        self.criterion = ERMSNLoss()

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
        self.log("train_loss", loss, prog_bar=True)
        # ER in nats (the bound the loss maximizes) and the entropy gap: on prototypes
        # the entropy's floor is 0 (all mass on one prototype), so the entropy itself.
        self.log("er/er", components.entropy + components.reconstruction)
        self.log("er/entropy_gap", components.entropy)
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


model = MSN()

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

accelerator = "gpu" if torch.cuda.is_available() else "cpu"

# EntropyMonitor measures the anchors' embeddings (the trained projection head's
# output) on the sphere every 50 steps, logs entropy/anchor_projection_head/<metric>
# and warns if they collapse.
trainer = pl.Trainer(
    max_epochs=10,
    devices=1,
    accelerator=accelerator,
    callbacks=[EntropyMonitor(modules={"anchor_projection_head": "sphere"})],
)
trainer.fit(model=model, train_dataloaders=dataloader)
