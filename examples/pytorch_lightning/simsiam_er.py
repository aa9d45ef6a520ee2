# SimSiam-ER with PyTorch Lightning: lightly's SimSiam example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: NegativeCosineSimilarity ->
# ERNegativeCosineSimilarity, the ER terms logged, and EntropyMonitor in the
# callbacks. SimSiam's heads have no ER version: the monitor recognizes them by
# their names.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import pytorch_lightning as pl
import torch
import torchvision
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from lightly.transforms import SimSiamTransform
from torch import nn

from lightly_er.functional import min_sphere_entropy
from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.monitoring import EntropyMonitor


class SimSiam(pl.LightningModule):
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = SimSiamProjectionHead(512, 512, 128)
        self.prediction_head = SimSiamPredictionHead(128, 64, 128)
        # kappa = 10 by default; the loss is divided by kappa, so that without the
        # entropy term its gradient is that of NegativeCosineSimilarity.
        # lightly: NegativeCosineSimilarity()
        self.criterion = ERNegativeCosineSimilarity(prediction="x1")  # criterion(z, p)

    def forward(self, x):
        f = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        # The projections are the targets: no gradient flows through them.
        return z.detach(), p

    def training_step(self, batch, batch_idx):
        (x0, x1) = batch[0]
        z0, p0 = self.forward(x0)
        z1, p1 = self.forward(x1)
        loss = 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))
        # Each term is -(entropy + reconstruction) / kappa, in nats, the entropy
        # that of the predictions; the components logged are those of the last
        # call, criterion(z1, p0).
        _, entropy, reconstruction = self.criterion.last_components
        # The entropy above its floor (a collapsed batch), free of the
        # constant -log C_d(kappa) that the raw entropy carries.
        entropy_gap = entropy - min_sphere_entropy(128, self.criterion.kappa)
        self.log("train_loss", loss, prog_bar=True)
        self.log("er/er", entropy + reconstruction)
        self.log("er/entropy_gap", entropy_gap)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


model = SimSiam()

transform = SimSiamTransform(input_size=32)
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

# EntropyMonitor measures both heads every 50 steps at the loss's kappa, logs
# entropy/<head>/<metric> and warns if a representation collapses.
trainer = pl.Trainer(
    max_epochs=10,
    devices=1,
    accelerator=accelerator,
    callbacks=[EntropyMonitor()],
)
trainer.fit(model=model, train_dataloaders=dataloader)
