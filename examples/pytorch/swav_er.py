# SwAV-ER in plain PyTorch: lightly's SwAV example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: SwaVLoss -> ERSwaVLoss, which keeps
# Sinkhorn and adds an explicit entropy term (use_sinkhorn=False is the paper's
# variant), SwaVProjectionHead and
# SwaVPrototypes -> their ER versions (same layers, same outputs, plus an entropy
# meter), and the ER terms printed next to the loss.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import torch
import torchvision
from lightly.transforms.swav_transform import SwaVTransform
from torch import nn

from lightly_er.loss import ERSwaVLoss
from lightly_er.models.modules import ERSwaVProjectionHead, ERSwaVPrototypes


class SwaV(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.projection_head = ERSwaVProjectionHead(512, 512, 128)
        self.prototypes = ERSwaVPrototypes(128, n_prototypes=512)

    def forward(self, x):
        x = self.backbone(x).flatten(start_dim=1)
        x = self.projection_head(x)
        x = nn.functional.normalize(x, dim=1, p=2)
        return self.prototypes(x)


resnet = torchvision.models.resnet18()
backbone = nn.Sequential(*list(resnet.children())[:-1])
model = SwaV(backbone)

device = "cuda" if torch.cuda.is_available() else "cpu"
model.to(device)

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

# The ER swap: the entropy of the mean prediction is added to SwAV's Sinkhorn
# (use_sinkhorn=False replaces Sinkhorn, the paper's SwAV-ER).
criterion = ERSwaVLoss()  # lightly: SwaVLoss()

# The epoch lines print ER = entropy + reconstruction in nats, the bound the
# loss maximizes, and the entropy gap: the entropy above its floor, which on
# prototypes is 0 (all mass on one prototype), so here the entropy itself.
entropy_floor = 0.0
optimizer = torch.optim.Adam(model.parameters(), lr=0.001)

# The prototypes' meter measures softmax(scores / 0.1), the prediction that the
# loss sees.
meter = model.prototypes.entropy_meter
measure_every_n_steps = 50

print("Starting Training")
step = 0
for epoch in range(10):
    total_loss = 0
    total_er = 0
    total_entropy_gap = 0
    for batch in dataloader:
        views = batch[0]
        model.prototypes.normalize()
        multi_crop_features = [model(view.to(device)) for view in views]
        high_resolution = multi_crop_features[:2]
        low_resolution = multi_crop_features[2:]
        loss = criterion(high_resolution, low_resolution)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        total_loss += loss.detach()
        _, entropy, reconstruction = criterion.last_components
        total_er += entropy + reconstruction
        total_entropy_gap += entropy - entropy_floor
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % measure_every_n_steps == 0:
            metrics = meter.update(high_resolution[0])
            if metrics is not None:
                print(
                    f"step: {step:>5}, "
                    f"collapse score: {metrics['collapse_score']:.3f}, "
                    f"normalized entropy: {metrics['normalized_entropy']:.3f}"
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
