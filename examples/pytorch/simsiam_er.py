# SimSiam-ER in plain PyTorch: lightly's SimSiam example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: NegativeCosineSimilarity ->
# ERNegativeCosineSimilarity, and the ER terms printed next to the loss. SimSiam's
# heads have no ER version, so an EntropyMeter bound to the loss measures the
# predictions instead.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import torch
import torchvision
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from lightly.transforms import SimSiamTransform
from torch import nn

from lightly_er.functional import min_sphere_entropy
from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.monitoring import EntropyMeter


class SimSiam(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(512, 512, 128)
        self.prediction_head = SimSiamPredictionHead(128, 64, 128)

    def forward(self, x):
        f = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        # The projections are the targets: no gradient flows through them.
        return z.detach(), p


resnet = torchvision.models.resnet18()
backbone = nn.Sequential(*list(resnet.children())[:-1])
model = SimSiam(backbone)

device = "cuda" if torch.cuda.is_available() else "cpu"
model.to(device)

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

# The ER swap. kappa = 10 by default; the loss is divided by kappa, so that without
# the entropy term its gradient is that of NegativeCosineSimilarity. The entropy is
# that of the input with gradient, the predictions, in either argument order.
criterion = ERNegativeCosineSimilarity(
    prediction="x1"
)  # lightly: NegativeCosineSimilarity()

# The epoch lines print ER = entropy + reconstruction in nats, the bound the
# loss maximizes (0 for a collapsed batch, at most log N), and the entropy gap
# H - H_min, the entropy above its floor (a collapsed batch), in [0, log N]. The
# raw terms each carry the constant -/+ log C_128(kappa) (hundreds of nats).
entropy_floor = min_sphere_entropy(128, criterion.kappa)
optimizer = torch.optim.SGD(model.parameters(), lr=0.06)

# A meter at the loss's kappa, for the predictions of both views.
meter = EntropyMeter.for_loss(criterion)
measure_every_n_steps = 50

print("Starting Training")
step = 0
for epoch in range(10):
    total_loss = 0
    total_er = 0
    total_entropy_gap = 0
    for batch in dataloader:
        x0, x1 = batch[0]
        x0 = x0.to(device)
        x1 = x1.to(device)
        z0, p0 = model(x0)
        z1, p1 = model(x1)
        loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
        # Each term is -(entropy + reconstruction) / kappa, in nats; the components
        # kept are those of the last call, criterion(z1, p0).
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
