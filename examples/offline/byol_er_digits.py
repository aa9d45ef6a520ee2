# BYOL-ER on scikit-learn's 8x8 digits: no download, about 30 s on a laptop CPU.
# lightly's BYOL (heads, momentum update) with ERNegativeCosineSimilarity in place
# of NegativeCosineSimilarity and EntropyMonitor in the Trainer's callbacks. Prints
# the kNN accuracy of the backbone on held-out digits and the entropy of their
# predictions (nats above a collapsed batch) before and after training.
#
#   python examples/offline/byol_er_digits.py [--epochs 30] [--log-dir digits_logs]

import argparse
import copy

import pytorch_lightning as pl
import torch
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.benchmarking import knn_predict
from lightly.utils.scheduler import cosine_schedule
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

from lightly_er.functional import min_sphere_entropy, sphere_entropy
from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.monitoring import EntropyMonitor

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--log-dir", default="digits_logs")  # entropy_monitor.csv/.png
args = parser.parse_args()


def augment(x):
    # A random rotation, scaling and shift of each image, plus pixel noise.
    n = len(x)
    angle, scale = 0.5 * (torch.rand(n) - 0.5), 0.9 + 0.2 * torch.rand(n)
    shift = 0.4 * (torch.rand(n, 2) - 0.5)
    cos, sin = scale * angle.cos(), scale * angle.sin()
    theta = torch.stack([cos, -sin, shift[:, 0], sin, cos, shift[:, 1]], 1)
    grid = F.affine_grid(theta.view(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False) + 0.1 * torch.randn_like(x)


class BYOL(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Linear(256, 128),
        )  # fmt: skip
        self.projection_head = BYOLProjectionHead(128, 256, 64)
        self.prediction_head = BYOLPredictionHead(64, 256, 64)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        # lightly: NegativeCosineSimilarity()
        self.criterion = ERNegativeCosineSimilarity(prediction="x0")  # criterion(p, z)

    def forward(self, x):
        return self.prediction_head(self.projection_head(self.backbone(x)))

    def forward_momentum(self, x):
        return self.projection_head_momentum(self.backbone_momentum(x)).detach()

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, args.epochs, 0.99, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        x0, x1 = augment(batch[0]), augment(batch[0])
        p0, p1 = self.forward(x0), self.forward(x1)
        z0, z1 = self.forward_momentum(x0), self.forward_momentum(x1)
        loss = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
labels = torch.tensor(digits.target)
train, test = slice(0, 1300), slice(1300, None)  # 1,300 to train on, 497 to test


@torch.no_grad()
def evaluate(model, name):
    model.eval()
    bank, query = (F.normalize(model.backbone(images[s]), dim=1) for s in (train, test))
    predicted = knn_predict(query, bank.T, labels[train], 10, knn_k=20)[:, 0]
    accuracy = (predicted == labels[test]).float().mean()
    p = F.normalize(model(images[test]), dim=1)
    kappa = model.criterion.kappa
    entropy = sphere_entropy(p, kappa) - min_sphere_entropy(p.shape[1], kappa)
    print(f"{name}: kNN accuracy {accuracy:.3f}, entropy {entropy:.3f} nats")
    model.train()


torch.manual_seed(0)
model = BYOL()
evaluate(model, "before training")
dataset = torch.utils.data.TensorDataset(images[train])
dataloader = torch.utils.data.DataLoader(
    dataset, batch_size=128, shuffle=True, drop_last=True
)
trainer = pl.Trainer(
    max_epochs=args.epochs,
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    callbacks=[EntropyMonitor(every_n_steps=10, log_dir=args.log_dir)],
)
trainer.fit(model=model, train_dataloaders=dataloader)
print(f"final loss {float(trainer.callback_metrics['train_loss']):.3f}")
evaluate(model, "after training")
