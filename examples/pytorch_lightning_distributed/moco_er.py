# MoCo-ER with PyTorch Lightning and DDP: lightly's distributed MoCo example
# with the entropy and reconstruction (ER) objective of Rodriguez-Galvez et al.
# (ICML 2023).
# The change from lightly's script: NTXentLoss -> ERNTXentLoss, which keeps the
# memory bank (the queued keys are extra kernel centers of the entropy estimate),
# the ER terms logged, and EntropyMonitor in the callbacks. MoCo's projection head
# has no ER version: the monitor recognizes it by its name.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset; the script trains on all GPUs of one machine with DDP.

import copy

import pytorch_lightning as pl
import torch
import torchvision
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.moco_transform import MoCoV2Transform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_er.functional import min_sphere_entropy
from lightly_er.loss import ERNTXentLoss
from lightly_er.monitoring import EntropyMonitor


class MoCo(pl.LightningModule):
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = MoCoProjectionHead(512, 512, 128)

        # The key encoder: an exponential moving average of the query encoder.
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

        # As in lightly's example, each GPU estimates the entropy from its own
        # queries and the memory bank. gather_distributed=True would also put
        # the keys of all GPUs in the bank, as NTXentLoss does.
        # lightly: NTXentLoss(memory_bank_size=(4096, 128))
        self.criterion = ERNTXentLoss(memory_bank_size=(4096, 128))

    def forward(self, x):
        query = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(query)

    def forward_momentum(self, x):
        key = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(key).detach()

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        x_query, x_key = batch[0]
        query = self.forward(x_query)
        key = self.forward_momentum(x_key)
        loss = self.criterion(query, key)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        _, entropy, reconstruction = self.criterion.last_components
        # The entropy above its floor (a collapsed batch), free of the
        # constant -log C_d(kappa) that the raw entropy carries.
        entropy_gap = entropy - min_sphere_entropy(128, self.criterion.kappa)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)
        self.log("er/er", entropy + reconstruction, sync_dist=True)
        self.log("er/entropy_gap", entropy_gap, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


model = MoCo()

transform = MoCoV2Transform(input_size=32)
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

# DDP on all GPUs of the machine, with synchronized batch norm (statistics over
# the global batch) and a distributed sampler that hands every process its own
# share of the data (replace_sampler_ddp=True before Lightning 2.0).
# EntropyMonitor measures the queries every 50 steps at the loss's kappa, logs
# entropy/projection_head/<metric> and warns if they collapse. The frozen momentum
# copy is never measured. With DDP it measures the outputs gathered from all
# processes.
trainer = pl.Trainer(
    max_epochs=10,
    devices="auto",
    accelerator="gpu",
    strategy="ddp",
    sync_batchnorm=True,
    use_distributed_sampler=True,
    callbacks=[EntropyMonitor()],
)
trainer.fit(model=model, train_dataloaders=dataloader)
