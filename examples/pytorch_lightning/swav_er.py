# SwAV-ER with PyTorch Lightning: lightly's SwAV example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: SwaVLoss -> ERSwaVLoss, which keeps
# Sinkhorn and adds an explicit entropy term (use_sinkhorn=False is the paper's
# variant), SwaVProjectionHead and
# SwaVPrototypes -> their ER versions (same layers, same outputs, plus an entropy
# meter), the ER terms logged, and EntropyMonitor in the callbacks.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import pytorch_lightning as pl
import torch
import torchvision
from lightly.transforms.swav_transform import SwaVTransform
from torch import nn

from lightly_er.loss import ERSwaVLoss
from lightly_er.models.modules import ERSwaVProjectionHead, ERSwaVPrototypes
from lightly_er.monitoring import EntropyMonitor


class SwaV(pl.LightningModule):
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = ERSwaVProjectionHead(512, 512, 128)
        self.prototypes = ERSwaVPrototypes(128, n_prototypes=512)
        self.criterion = ERSwaVLoss()  # lightly: SwaVLoss()

    def forward(self, x):
        x = self.backbone(x).flatten(start_dim=1)
        x = self.projection_head(x)
        x = nn.functional.normalize(x, dim=1, p=2)
        return self.prototypes(x)

    def training_step(self, batch, batch_idx):
        self.prototypes.normalize()
        views = batch[0]
        multi_crop_features = [self.forward(view.to(self.device)) for view in views]
        high_resolution = multi_crop_features[:2]
        low_resolution = multi_crop_features[2:]
        loss = self.criterion(high_resolution, low_resolution)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        _, entropy, reconstruction = self.criterion.last_components
        # On prototypes the entropy's floor is 0 (all mass on one).
        entropy_gap = entropy
        self.log("train_loss", loss, prog_bar=True)
        self.log("er/er", entropy + reconstruction)
        self.log("er/entropy_gap", entropy_gap)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.001)


model = SwaV()

transform = SwaVTransform()


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
    batch_size=128,
    shuffle=True,
    drop_last=True,
    num_workers=8,
)

accelerator = "gpu" if torch.cuda.is_available() else "cpu"

# EntropyMonitor finds both ER modules and measures them every 50 steps: the
# projections on the sphere, the prototype scores as softmax(scores / 0.1). It logs
# entropy/<module>/<metric> and warns if a representation collapses.
trainer = pl.Trainer(
    max_epochs=10,
    devices=1,
    accelerator=accelerator,
    callbacks=[EntropyMonitor()],
)
trainer.fit(model=model, train_dataloaders=dataloader)
