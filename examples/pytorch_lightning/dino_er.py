# DINO-ER with PyTorch Lightning: lightly's DINO example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: DINOLoss -> ERDINOLoss, which keeps the
# teacher centering and adds an explicit entropy term (centering=False is the
# paper's variant), DINOProjectionHead ->
# ERDINOProjectionHead (same layers, same output, plus an entropy meter), the ER
# terms logged, and EntropyMonitor in the callbacks.
#
# Dependencies: lightly and lightly-er (`pip install .` in the lightly-er
# repository installs both).
#
# The settings are not the paper's: they are small enough to train on a small
# dataset with one GPU.

import copy

import pytorch_lightning as pl
import torch
import torchvision
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.dino_transform import DINOTransform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_er.loss import ERDINOLoss
from lightly_er.models.modules import ERDINOProjectionHead
from lightly_er.monitoring import EntropyMonitor


class DINO(pl.LightningModule):
    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18()
        backbone = nn.Sequential(*list(resnet.children())[:-1])
        input_dim = 512
        # The paper uses a vision transformer; one can replace the ResNet (a smaller
        # batch size may then be needed):
        # backbone = torch.hub.load(
        #     "facebookresearch/dino:main", "dino_vits16", pretrained=False
        # )
        # input_dim = backbone.embed_dim

        self.student_backbone = backbone
        self.student_head = ERDINOProjectionHead(
            input_dim, 512, 64, 2048, freeze_last_layer=1
        )
        # The teacher: an exponential moving average of the student, never trained
        # by the optimizer (EntropyMonitor skips it).
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = ERDINOProjectionHead(input_dim, 512, 64, 2048)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

        # lightly: DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5)
        self.criterion = ERDINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5)

    def forward(self, x):
        y = self.student_backbone(x).flatten(start_dim=1)
        return self.student_head(y)

    def forward_teacher(self, x):
        y = self.teacher_backbone(x).flatten(start_dim=1)
        return self.teacher_head(y)

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.current_epoch, 10, 0.996, 1)
        update_momentum(self.student_backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.student_head, self.teacher_head, m=momentum)
        views = batch[0]
        views = [view.to(self.device) for view in views]
        global_views = views[:2]
        teacher_out = [self.forward_teacher(view) for view in global_views]
        student_out = [self.forward(view) for view in views]
        loss = self.criterion(teacher_out, student_out, epoch=self.current_epoch)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        _, entropy, reconstruction = self.criterion.last_components
        # On prototypes the entropy's floor is 0 (all mass on one).
        entropy_gap = entropy
        self.log("train_loss", loss, prog_bar=True)
        self.log("er/er", entropy + reconstruction)
        self.log("er/entropy_gap", entropy_gap)
        return loss

    def on_after_backward(self):
        self.student_head.cancel_last_layer_gradients(current_epoch=self.current_epoch)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.001)


model = DINO()

transform = DINOTransform()


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
    batch_size=64,
    shuffle=True,
    drop_last=True,
    num_workers=8,
)

accelerator = "gpu" if torch.cuda.is_available() else "cpu"

# EntropyMonitor finds the student's ER head, measures softmax(output / 0.1), the
# student's distribution over the prototypes, every 50 steps, logs
# entropy/student_head/<metric> and warns if the student collapses.
trainer = pl.Trainer(
    max_epochs=10,
    devices=1,
    accelerator=accelerator,
    callbacks=[EntropyMonitor()],
)
trainer.fit(model=model, train_dataloaders=dataloader)
