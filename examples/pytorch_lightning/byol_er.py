# BYOL-ER with PyTorch Lightning: lightly's BYOL example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: NegativeCosineSimilarity ->
# ERNegativeCosineSimilarity, BYOLProjectionHead/BYOLPredictionHead -> their ER
# versions (same layers, same outputs, plus an entropy meter), the ER terms logged,
# and EntropyMonitor in the callbacks.
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
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.byol_transform import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
)
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_er.functional import min_sphere_entropy
from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.models.modules import ERBYOLPredictionHead, ERBYOLProjectionHead
from lightly_er.monitoring import EntropyMonitor


class BYOL(pl.LightningModule):
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = ERBYOLProjectionHead(512, 1024, 256)
        self.prediction_head = ERBYOLPredictionHead(256, 1024, 256)

        # The target network: an exponential moving average of the online one.
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

        # kappa = 10 by default; the loss is divided by kappa, so that without the
        # entropy term its gradient is that of NegativeCosineSimilarity.
        # lightly: NegativeCosineSimilarity()
        self.criterion = ERNegativeCosineSimilarity(prediction="x0")  # criterion(p, z)

    def forward(self, x):
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        return self.prediction_head(z)

    def forward_momentum(self, x):
        y = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(y).detach()

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        (x0, x1) = batch[0]
        p0 = self.forward(x0)
        z0 = self.forward_momentum(x0)
        p1 = self.forward(x1)
        z1 = self.forward_momentum(x1)
        loss = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        # Each term is -(entropy + reconstruction) / kappa, in nats; the components
        # logged are those of the last call, criterion(p1, z0).
        _, entropy, reconstruction = self.criterion.last_components
        # The entropy above its floor (a collapsed batch), free of the
        # constant -log C_d(kappa) that the raw entropy carries.
        entropy_gap = entropy - min_sphere_entropy(256, self.criterion.kappa)
        self.log("train_loss", loss, prog_bar=True)
        self.log("er/er", entropy + reconstruction)
        self.log("er/entropy_gap", entropy_gap)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


model = BYOL()

# No Gaussian blur for the 32x32 CIFAR-10 images.
transform = BYOLTransform(
    view_1_transform=BYOLView1Transform(input_size=32, gaussian_blur=0.0),
    view_2_transform=BYOLView2Transform(input_size=32, gaussian_blur=0.0),
)
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

# EntropyMonitor finds both ER heads and measures them every 50 steps, logs
# entropy/<head>/<metric> and warns if a representation collapses. The frozen
# momentum copy of the projection head is never measured.
trainer = pl.Trainer(
    max_epochs=10,
    devices=1,
    accelerator=accelerator,
    callbacks=[EntropyMonitor()],
)
trainer.fit(model=model, train_dataloaders=dataloader)
