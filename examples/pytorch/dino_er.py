# DINO-ER in plain PyTorch: lightly's DINO example with the entropy and
# reconstruction (ER) objective of Rodriguez-Galvez et al. (ICML 2023).
# The change from lightly's script: DINOLoss -> ERDINOLoss, which keeps the
# teacher centering and adds an explicit entropy term (centering=False is the
# paper's variant), DINOProjectionHead ->
# ERDINOProjectionHead (same layers, same output, plus an entropy meter), and the ER
# terms printed next to the loss.
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
from lightly.transforms.dino_transform import DINOTransform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lightly_er.loss import ERDINOLoss
from lightly_er.models.modules import ERDINOProjectionHead


class DINO(torch.nn.Module):
    def __init__(self, backbone, input_dim):
        super().__init__()
        self.student_backbone = backbone
        self.student_head = ERDINOProjectionHead(
            input_dim, 512, 64, 2048, freeze_last_layer=1
        )
        # The teacher: an exponential moving average of the student, never trained
        # by the optimizer (its meter stays unused).
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = ERDINOProjectionHead(input_dim, 512, 64, 2048)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def forward(self, x):
        y = self.student_backbone(x).flatten(start_dim=1)
        return self.student_head(y)

    def forward_teacher(self, x):
        y = self.teacher_backbone(x).flatten(start_dim=1)
        return self.teacher_head(y)


resnet = torchvision.models.resnet18()
backbone = nn.Sequential(*list(resnet.children())[:-1])
input_dim = 512
# The paper uses a vision transformer; one can replace the ResNet (a smaller batch
# size may then be needed):
# backbone = torch.hub.load(
#     "facebookresearch/dino:main", "dino_vits16", pretrained=False
# )
# input_dim = backbone.embed_dim

model = DINO(backbone, input_dim)

device = "cuda" if torch.cuda.is_available() else "cpu"
model.to(device)

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

# The ER swap: the entropy of the student's mean prediction is added to DINO's
# centering (centering=False replaces the centering, the paper's DINO-ER).
criterion = ERDINOLoss(  # lightly: DINOLoss(...)
    output_dim=2048,
    warmup_teacher_temp_epochs=5,
)
# The loss holds buffers: move it to the device too.
criterion = criterion.to(device)

# The epoch lines print ER = entropy + reconstruction in nats, the bound the loss
# maximizes, and the entropy gap: the entropy above its floor, which on prototypes
# is 0 (all mass on one prototype), so here the entropy itself.
entropy_floor = 0.0

optimizer = torch.optim.Adam(model.parameters(), lr=0.001)

# The student head's meter measures softmax(output / 0.1), the student's
# distribution over the 2048 prototypes that the loss sees.
meter = model.student_head.entropy_meter
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
        views = batch[0]
        update_momentum(model.student_backbone, model.teacher_backbone, m=momentum_val)
        update_momentum(model.student_head, model.teacher_head, m=momentum_val)
        views = [view.to(device) for view in views]
        global_views = views[:2]
        teacher_out = [model.forward_teacher(view) for view in global_views]
        student_out = [model.forward(view) for view in views]
        loss = criterion(teacher_out, student_out, epoch=epoch)
        # loss = -(entropy + reconstruction); both terms in nats, higher is better.
        total_loss += loss.detach()
        _, entropy, reconstruction = criterion.last_components
        total_er += entropy + reconstruction
        total_entropy_gap += entropy - entropy_floor
        loss.backward()
        # Only the student head's last layer is frozen in the first epoch.
        model.student_head.cancel_last_layer_gradients(current_epoch=epoch)
        optimizer.step()
        optimizer.zero_grad()
        if step % measure_every_n_steps == 0:
            metrics = meter.update(student_out[0])
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
