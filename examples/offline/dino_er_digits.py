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


def augment(x):  # per image: a random rotation, scaling and shift, plus noise
    n = len(x)
    a, s, t = 0.5 * (torch.rand(n) - 0.5), 0.9 + 0.2 * torch.rand(n), 0.4 * (torch.rand(n, 2) - 0.5)  # fmt: skip
    theta = torch.stack([s * a.cos(), -s * a.sin(), t[:, 0], s * a.sin(), s * a.cos(), t[:, 1]], 1)  # fmt: skip
    grid = F.affine_grid(theta.view(n, 2, 3), list(x.shape), align_corners=False)
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


images = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16
torch.manual_seed(0)
model = DINO()
# The last 497 digits are held out (the tests measure the heads on them).
loader = torch.utils.data.DataLoader(images[:1300], 128, shuffle=True, drop_last=True)
monitor = EntropyMonitor(every_n_steps=10, log_dir=args.log_dir)
trainer = pl.Trainer(max_epochs=args.epochs, logger=False, callbacks=[monitor])
trainer.fit(model, loader)
