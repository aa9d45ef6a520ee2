# DINO-ER on scikit-learn's 8x8 digits: no download, about 30 s on 2 CPU cores.
# lightly's DINO with ERDINOLoss in place of DINOLoss: the default keeps DINO's
# centering and adds the entropy term (centering=False is the paper's variant).
# EntropyMonitor writes the heads' entropy to entropy_monitor.csv/.png in --log-dir.
import argparse
import copy

import pytorch_lightning as pl
import torch
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.benchmarking import knn_predict
from lightly.utils.scheduler import cosine_schedule
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

from lightly_er.loss import ERDINOLoss
from lightly_er.monitoring import EntropyMonitor

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--log-dir", default="digits_logs")
args = parser.parse_args()


def augment(x):  # a random rotation, scaling and shift of each image, plus noise
    n = len(x)
    angle, scale = 0.5 * (torch.rand(n) - 0.5), 0.9 + 0.2 * torch.rand(n)
    shift = 0.4 * (torch.rand(n, 2) - 0.5)
    cos, sin = scale * angle.cos(), scale * angle.sin()
    theta = torch.stack([cos, -sin, shift[:, 0], sin, cos, shift[:, 1]], 1).view(
        n, 2, 3
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False) + 0.1 * torch.randn_like(x)


class DINO(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 128))  # fmt: skip
        self.student_head = DINOProjectionHead(128, 256, 32, 256, batch_norm=True)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        # A new head, as in lightly's example (its weight norm cannot be deep-copied).
        self.teacher_head = DINOProjectionHead(128, 256, 32, 256, batch_norm=True)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = ERDINOLoss(output_dim=256)  # lightly: DINOLoss(output_dim=256)

    def training_step(self, batch, batch_idx):
        m = cosine_schedule(self.current_epoch, args.epochs, 0.9, 1)
        update_momentum(self.backbone, self.teacher_backbone, m=m)
        update_momentum(self.student_head, self.teacher_head, m=m)
        views = [augment(batch), augment(batch)]
        teacher_out = [self.teacher_head(self.teacher_backbone(v)) for v in views]
        student_out = [self.student_head(self.backbone(v)) for v in views]
        return self.criterion(teacher_out, student_out, epoch=self.current_epoch)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


@torch.no_grad()
def knn_accuracy(backbone):  # kNN top-1 on the last 497 digits, against the first 1,300
    bank, query = F.normalize(backbone.eval()(images), dim=1).split([1300, 497])
    predicted = knn_predict(query, bank.T, labels[:1300], 10, knn_k=20)[:, 0]
    backbone.train()
    return float((predicted == labels[1300:]).float().mean())


digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
labels = torch.tensor(digits.target)
torch.manual_seed(0)
model = DINO()
print(f"kNN accuracy before training {knn_accuracy(model.backbone):.3f}")
loader = torch.utils.data.DataLoader(images[:1300], 128, shuffle=True, drop_last=True)
monitor = EntropyMonitor(every_n_steps=10, log_dir=args.log_dir)
trainer = pl.Trainer(max_epochs=args.epochs, logger=False, callbacks=[monitor])
trainer.fit(model, loader)
print(f"kNN accuracy after training {knn_accuracy(model.backbone):.3f}")
