# BYOL-ER on scikit-learn's 8x8 digits: no download, about 30 s on 2 CPU cores.
# lightly's BYOL with ERNegativeCosineSimilarity in place of NegativeCosineSimilarity;
# EntropyMonitor writes the heads' entropy to entropy_monitor.csv/.png in --log-dir.
import argparse
import copy

import pytorch_lightning as pl
import torch
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.monitoring import EntropyMonitor

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--log-dir", default="digits_logs")
args = parser.parse_args()


def augment(x):  # per image: a random rotation, scaling and shift, plus noise
    n = len(x)
    a, s, t = 0.5 * (torch.rand(n) - 0.5), 0.9 + 0.2 * torch.rand(n), 0.4 * (torch.rand(n, 2) - 0.5)  # fmt: skip
    theta = torch.stack([s * a.cos(), -s * a.sin(), t[:, 0], s * a.sin(), s * a.cos(), t[:, 1]], 1)  # fmt: skip
    grid = F.affine_grid(theta.view(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False) + 0.1 * torch.randn_like(x)


class BYOL(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 128))  # fmt: skip
        self.projection_head = BYOLProjectionHead(128, 256, 64)
        self.prediction_head = BYOLPredictionHead(64, 256, 64)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        # lightly: NegativeCosineSimilarity(); BYOL calls criterion(prediction, target)
        self.criterion = ERNegativeCosineSimilarity(prediction="x0")

    def training_step(self, batch, batch_idx):
        update_momentum(self.backbone, self.backbone_momentum, m=0.99)
        update_momentum(self.projection_head, self.projection_head_momentum, m=0.99)
        x0, x1 = augment(batch), augment(batch)
        p0, p1 = (self.prediction_head(self.projection_head(self.backbone(x))) for x in (x0, x1))  # fmt: skip
        with torch.no_grad():
            z0, z1 = (self.projection_head_momentum(self.backbone_momentum(x)) for x in (x0, x1))  # fmt: skip
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


images = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16
torch.manual_seed(0)
model = BYOL()
# The last 497 digits are held out (the tests measure the heads on them).
loader = torch.utils.data.DataLoader(images[:1300], 128, shuffle=True, drop_last=True)
monitor = EntropyMonitor(every_n_steps=10, log_dir=args.log_dir)
trainer = pl.Trainer(max_epochs=args.epochs, logger=False, callbacks=[monitor])
trainer.fit(model, loader)
