"""The monitor at its defaults on tiny BYOL runs, against a ground truth it does not
read (issue 33, item 3), and its rules' reach: heads, not backbones.

The ground truth is the alarm study's (``benchmarks/studies/rescue/collapse.py``,
computed here again): the projection head's outputs on a held-out batch, in eval
mode, every 50 steps; the head has collapsed where sqrt(d) times the mean
per-dimension standard deviation of the L2-normalized outputs is below 0.1 (Chen &
He), first met at the first snapshot after step 0 where it is, and held to the end.
The setting (synthetic clusters, an MLP, seed 11) was never used to choose a rule's
threshold (those came from Fashion-MNIST runs of seeds 0-5).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from pytorch_lightning import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightly_er.monitoring import EntropyMonitor
from lightly_er.monitoring.rules import AlarmRule, CollapseWarning

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*",
    "ignore:.*GPU available but not used.*",
    "ignore:EntropyMonitor has no log directory",
)
SEED, STEPS, EVERY = 11, 500, 50
SPREAD_THRESHOLD = 0.1


def clusters(per_cluster: int, seed: int) -> Tuple[Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(16, 16, generator=g)
    x = centres.repeat_interleave(per_cluster, dim=0)
    return x + 0.5 * torch.randn(x.shape, generator=g), g


class TinyBYOL(LightningModule):
    """BYOL on an MLP, named as lightly's examples name it; with or without its
    prediction head, at a constant EMA coefficient."""

    def __init__(self, predictor: bool, ema: float) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.projection_head = BYOLProjectionHead(32, 64, 16)
        self.prediction_head = BYOLPredictionHead(16, 64, 16) if predictor else None
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.ema = ema
        self.criterion = NegativeCosineSimilarity()

    def online(self, x: Tensor) -> Tensor:
        z: Tensor = self.projection_head(self.backbone(x))
        return z if self.prediction_head is None else self.prediction_head(z)

    def target(self, x: Tensor) -> Tensor:
        z: Tensor = self.projection_head_momentum(self.backbone_momentum(x))
        return z.detach()

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        update_momentum(self.backbone, self.backbone_momentum, self.ema)
        update_momentum(self.projection_head, self.projection_head_momentum, self.ema)
        x0, x1 = batch
        loss: Tensor = 0.5 * (
            self.criterion(self.online(x0), self.target(x1))
            + self.criterion(self.online(x1), self.target(x0))
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-3
        )


class GroundTruth(Callback):
    """The projection head's spread on the held-out batch, eval mode, every 50 steps
    (before the step's update) and at the end."""

    def __init__(self, held_out: Tensor) -> None:
        self.held_out = held_out
        self.spread: Dict[int, float] = {}

    def _read(self, step: int, model: Any) -> None:
        model.eval()
        with torch.no_grad():
            z = F.normalize(model.projection_head(model.backbone(self.held_out)), dim=1)
        model.train()
        self.spread[step] = float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))

    def on_train_batch_start(self, trainer: Trainer, model: Any, *args: Any) -> None:
        if trainer.global_step % EVERY == 0:
            self._read(trainer.global_step, model)

    def on_train_end(self, trainer: Trainer, model: Any) -> None:
        self._read(trainer.global_step, model)

    def first_met(self) -> Optional[int]:
        """The first snapshot after step 0 where the head reads collapsed, if the
        last one does; None otherwise."""
        steps = sorted(self.spread)
        if self.spread[steps[-1]] >= SPREAD_THRESHOLD:
            return None
        return next(s for s in steps[1:] if self.spread[s] < SPREAD_THRESHOLD)


def fit(predictor: bool, ema: float) -> Tuple[EntropyMonitor, GroundTruth]:
    torch.manual_seed(SEED)
    x, g = clusters(16, SEED)
    views = [x + 0.3 * torch.randn(x.shape, generator=g) for _ in range(2)]
    held_out, _ = clusters(4, SEED + 1)
    loader = DataLoader(
        TensorDataset(*views),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
    )
    monitor, truth = EntropyMonitor(), GroundTruth(held_out)  # at its defaults
    trainer = Trainer(
        accelerator="cpu", devices=1, max_steps=STEPS, logger=False,
        callbacks=[monitor, truth], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(TinyBYOL(predictor, ema), loader)
    return monitor, truth


def test_the_default_alarm_on_a_collapsing_head_and_a_healthy_one() -> None:
    # BYOL without its predictor at EMA 0: the head collapses.
    with pytest.warns(CollapseWarning):
        monitor, truth = fit(predictor=False, ema=0.0)
    first_met = truth.first_met()
    assert first_met == 200
    alarms = {a.module: a.step for a in monitor.alarms}
    # The student's head and its EMA copy (a teacher) alarm; the backbones are
    # watched but not judged.
    assert alarms == {"projection_head": 400, "projection_head_momentum": 400}
    assert {m for _, m, _, _ in monitor.history} >= {"backbone", "backbone_momentum"}
    alarm = min(alarms.values())
    # The alarm comes 200 steps after the ground truth here: at the defaults
    # (checks every 50 steps, patience 3) on training batches, not ahead of it.
    assert first_met - alarm == -200
    # Intact BYOL (predictor, EMA 0.99), same seed and setting: no collapse, silent.
    monitor, truth = fit(predictor=True, ema=0.99)
    assert truth.first_met() is None
    assert min(truth.spread.values()) > 0.4
    assert monitor.alarms == []


class ConstantBackbone(LightningModule):
    """A backbone pulled to a constant output by a squared loss (whitened inputs,
    lr = out_dim / 2: constant from the first update on)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(8, 16)
        self.register_buffer("target", torch.linspace(0.5, 2.0, 16))

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        (x,) = batch
        loss: Tensor = (self.backbone(x) - self.target).pow(2).mean()
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=8.0)


def _constant_run(monitor: EntropyMonitor) -> EntropyMonitor:
    torch.manual_seed(0)
    x = torch.randn(64, 8, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))
    x = (q * math.sqrt(64)).float()  # centered, unit covariance
    trainer = Trainer(
        accelerator="cpu", devices=1, max_steps=8, logger=False, callbacks=[monitor],
        enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(ConstantBackbone(), DataLoader(TensorDataset(x.repeat(8, 1)), 64))
    return monitor


def test_rules_skip_backbones_unless_told_to_read_them() -> None:
    monitor = _constant_run(EntropyMonitor(every_n_steps=2, patience=2))
    scores = [v for _, m, k, v in monitor.history if k == "dimension_score"]
    assert len(scores) == 4 and all(v < 1e-6 for v in scores[1:])  # measured
    assert monitor.alarms == []  # not judged
    rule = AlarmRule("dimension_score", 0.25, "sphere", modules="all")
    with pytest.warns(CollapseWarning, match="module 'backbone'"):
        monitor = _constant_run(
            EntropyMonitor(every_n_steps=2, patience=2, rules=[rule])
        )
    assert [(a.step, a.module) for a in monitor.alarms] == [(4, "backbone")]
