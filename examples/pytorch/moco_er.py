# MoCo-ER in plain PyTorch: lightly's MoCo example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: NTXentLoss -> ERNTXentLoss, which keeps the
# memory bank: the entropy of the queries is estimated with the queued keys as extra
# kernel centers. MoCo's projection head has no ER version, so an EntropyMeter bound
# to the loss measures the queries instead.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import copy

import torch
import torchvision
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.moco_transform import MoCoV2Transform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_er.functional import min_sphere_entropy
from lightly_er.loss import ERNTXentLoss
from lightly_er.monitoring import EntropyMeter


class MoCo(nn.Module):
    def __init__(self, backbone):
        super().__init__()

        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(512, 512, 128)

        # The key encoder: an exponential moving average of the query encoder.
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x):
        query = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(query)

    def forward_momentum(self, x):
        key = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(key).detach()


resnet = torchvision.models.resnet18()
backbone = nn.Sequential(*list(resnet.children())[:-1])
model = MoCo(backbone)

device = "cuda" if torch.cuda.is_available() else "cpu"
model.to(device)

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

# The ER swap, with lightly's memory bank of 4096 keys of dimension 128.
criterion = ERNTXentLoss(memory_bank_size=(4096, 128))  # lightly: NTXentLoss(...)

# The epoch lines print ER = entropy + reconstruction in nats, the bound the
# loss maximizes (0 for a collapsed batch, at most log N), and the entropy gap
# H - H_min, the entropy above its floor (a collapsed batch), in [0, log N]. The
# raw terms each carry the constant -/+ log C_128(kappa) (hundreds of nats).
entropy_floor = min_sphere_entropy(128, criterion.kappa)
optimizer = torch.optim.SGD(model.parameters(), lr=0.06)

# A meter at the loss's kappa, for the queries (and the keys, for the alignment).
meter = EntropyMeter.for_loss(criterion)
measure_every_n_steps = 50

epochs = 10

print("Starting Training")
step = 0
for epoch in range(epochs):
    total_loss = 0
    total_er = 0
    total_entropy_gap = 0
    momentum_val = cosine_schedule(epoch, epochs, 0.996, 1)
    for batch in dataloader:
        x_query, x_key = batch[0]
        update_momentum(model.backbone, model.backbone_momentum, m=momentum_val)
        update_momentum(
            model.projection_head, model.projection_head_momentum, m=momentum_val
        )
        x_query = x_query.to(device)
        x_key = x_key.to(device)
        query = model(x_query)
        key = model.forward_momentum(x_key)
        loss = criterion(query, key)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        total_loss += loss.detach()
        _, entropy, reconstruction = criterion.last_components
        total_er += entropy + reconstruction
        total_entropy_gap += entropy - entropy_floor
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % measure_every_n_steps == 0:
            metrics = meter.update(query, key)
            if metrics is not None:
                print(
                    f"step: {step:>5}, "
                    f"collapse score: {metrics['collapse_score']:.3f}, "
                    f"entropy gap: {metrics['entropy_gap']:.3f}"
                )
        step += 1
    num_batches = len(dataloader)
    avg_loss = total_loss / num_batches
    avg_er = total_er / num_batches
    avg_entropy_gap = total_entropy_gap / num_batches
    print(
        f"epoch: {epoch:>02}, loss: {avg_loss:.5f}, ER: {avg_er:.3f}, "
        f"entropy gap: {avg_entropy_gap:.3f}"
    )
