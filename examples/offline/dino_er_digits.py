# DINO-ER on scikit-learn's 8x8 digits: no download, about 30 s on a laptop CPU.
# lightly's DINO (head, momentum update) with ERDINOLoss in place of DINOLoss and
# EntropyMonitor in the Trainer's callbacks. centering=True keeps DINO's centering
# and adds the entropy term (centering=False is the paper's variant). Prints the kNN
# accuracy of the backbone on held-out digits and the entropy of the student's mean
# prediction over the prototypes (nats, at most log 256) before and after training.
#
#   python examples/offline/dino_er_digits.py [--epochs 30] [--log-dir digits_logs]

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

from lightly_er.functional import discrete_entropy
from lightly_er.loss import ERDINOLoss
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


class DINO(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Linear(256, 128),
        )  # fmt: skip
        self.student_head = DINOProjectionHead(128, 256, 32, 256, batch_norm=True)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        # A new head, as in lightly's example (its weight norm cannot be deep-copied).
        self.teacher_head = DINOProjectionHead(128, 256, 32, 256, batch_norm=True)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        # lightly: DINOLoss(output_dim=256)
        self.criterion = ERDINOLoss(output_dim=256, centering=True)

    def forward(self, x):
        return self.student_head(self.backbone(x))

    def forward_teacher(self, x):
        return self.teacher_head(self.teacher_backbone(x))

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, args.epochs, 0.9, 1)
        update_momentum(self.backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.student_head, self.teacher_head, m=momentum)
        views = [augment(batch[0]), augment(batch[0])]
        teacher_out = [self.forward_teacher(view) for view in views]
        student_out = [self.forward(view) for view in views]
        loss = self.criterion(teacher_out, student_out, epoch=self.current_epoch)
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
    p = F.softmax(model(images[test]) / model.criterion.student_temp, dim=1)
    entropy = discrete_entropy(p)
    print(f"{name}: kNN accuracy {accuracy:.3f}, entropy {entropy:.3f} nats")
    model.train()


torch.manual_seed(0)
model = DINO()
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
