# BYOL-ER in plain PyTorch: lightly's BYOL example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: NegativeCosineSimilarity ->
# ERNegativeCosineSimilarity, BYOLProjectionHead/BYOLPredictionHead -> their ER
# versions (same layers, same outputs, plus an entropy meter), and the ER terms
# printed next to the loss.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import copy

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


class BYOL(nn.Module):
    def __init__(self, backbone):
        super().__init__()

        self.backbone = backbone
        self.projection_head = ERBYOLProjectionHead(512, 1024, 256)
        self.prediction_head = ERBYOLPredictionHead(256, 1024, 256)

        # The target network: an exponential moving average of the online one.
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x):
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        return self.prediction_head(z)

    def forward_momentum(self, x):
        y = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(y).detach()


resnet = torchvision.models.resnet18()
backbone = nn.Sequential(*list(resnet.children())[:-1])
model = BYOL(backbone)

device = "cuda" if torch.cuda.is_available() else "cpu"
model.to(device)

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

# The ER swap. kappa = 10 by default; the loss is divided by kappa, so that without
# the entropy term its gradient is that of NegativeCosineSimilarity.
criterion = ERNegativeCosineSimilarity(
    prediction="x0"
)  # lightly: NegativeCosineSimilarity()

# The epoch lines print ER = entropy + reconstruction in nats, the bound the
# loss maximizes (0 for a collapsed batch, at most log N), and the entropy gap
# H - H_min, the entropy above its floor (a collapsed batch), in [0, log N]. The
# raw terms each carry the constant -/+ log C_256(kappa) (hundreds of nats).
entropy_floor = min_sphere_entropy(256, criterion.kappa)
optimizer = torch.optim.SGD(model.parameters(), lr=0.06)

# The prediction head's meter (kappa 10, as the loss) measures the predictions,
# whose entropy the loss maximizes.
meter = model.prediction_head.entropy_meter
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
        x0, x1 = batch[0]
        update_momentum(model.backbone, model.backbone_momentum, m=momentum_val)
        update_momentum(
            model.projection_head, model.projection_head_momentum, m=momentum_val
        )
        x0 = x0.to(device)
        x1 = x1.to(device)
        p0 = model(x0)
        z0 = model.forward_momentum(x0)
        p1 = model(x1)
        z1 = model.forward_momentum(x1)
        loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
        # Each term is -(entropy + reconstruction) / kappa, in nats; the components
        # kept are those of the last call, criterion(p1, z0).
        total_loss += loss.detach()
        _, entropy, reconstruction = criterion.last_components
        total_er += entropy + reconstruction
        total_entropy_gap += entropy - entropy_floor
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % measure_every_n_steps == 0:
            metrics = meter.update(p0, p1)
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
