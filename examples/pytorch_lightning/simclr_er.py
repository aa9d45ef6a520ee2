# SimCLR-ER with PyTorch Lightning: lightly's SimCLR example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: NTXentLoss -> ERNTXentLoss and
# SimCLRProjectionHead -> ERSimCLRProjectionHead (same layers, same output, plus an
# entropy meter), the ER terms logged, and EntropyMonitor in the callbacks.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import pytorch_lightning as pl
import torch
import torchvision
from lightly.transforms.simclr_transform import SimCLRTransform
from torch import nn

from lightly_er.functional import min_sphere_entropy
from lightly_er.loss import ERNTXentLoss
from lightly_er.models.modules import ERSimCLRProjectionHead
from lightly_er.monitoring import EntropyMonitor


class SimCLR(pl.LightningModule):
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = ERSimCLRProjectionHead(512, 2048, 2048)
        # kappa defaults to 1 / temperature: 2 with the default temperature 0.5.
        self.criterion = ERNTXentLoss()  # lightly: NTXentLoss()

    def forward(self, x):
        features = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(features)

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        loss = self.criterion(z0, z1)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        _, entropy, reconstruction = self.criterion.last_components
        # The entropy above its floor (a collapsed batch), free of the
        # constant -log C_d(kappa) that the raw entropy carries.
        entropy_gap = entropy - min_sphere_entropy(2048, self.criterion.kappa)
        self.log("train_loss", loss, prog_bar=True)
        self.log("er/er", entropy + reconstruction)
        self.log("er/entropy_gap", entropy_gap)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


model = SimCLR()

transform = SimCLRTransform(input_size=32)
dataset = torchvision.datasets.CIFAR10(
    "datasets/cifar10", download=True, transform=transform
)
# An image or video folder works as well:
# from lightly.data import LightlyDataset
# dataset = LightlyDataset("path/to/folder", transform=transform)

dataloader = torch.utils.data.DataLoader(
    dataset,
    batch_size=256,
    shuffle=True,
    drop_last=True,
    num_workers=8,
)

accelerator = "gpu" if torch.cuda.is_available() else "cpu"

# EntropyMonitor finds the ER head, measures its output every 50 steps at the loss's
# kappa, logs entropy/projection_head/<metric> and warns if the projections
# collapse.
trainer = pl.Trainer(
    max_epochs=10,
    devices=1,
    accelerator=accelerator,
    callbacks=[EntropyMonitor()],
)
trainer.fit(model=model, train_dataloaders=dataloader)
