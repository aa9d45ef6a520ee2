"""Tests of lightly_er.monitoring.callback.EntropyMonitor on tiny Lightning models.

The references are the estimators of lightly_er.functional applied to outputs the
models record themselves, and step numbers computed from the cadence and patience.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules.heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch import Tensor, nn
from torch.nn.functional import normalize
from torch.utils.data import DataLoader, TensorDataset

from lightly_er.functional import (
    alignment,
    collapse_score,
    dimension_score,
    discrete_entropy,
    mean_kl_divergence,
    min_sphere_entropy,
    sphere_entropy,
)
from lightly_er.loss import ERDINOLoss, ERNTXentLoss
from lightly_er.models.modules import ERDINOProjectionHead, ERSimCLRProjectionHead
from lightly_er.monitoring import DEFAULT_RULES, AlarmRule, EntropyMeter
from lightly_er.monitoring.callback import (
    CONVENTIONAL_HEADS,
    CollapseAlarm,
    CollapseWarning,
    EntropyMonitor,
)

SPHERE_RULE = next(r for r in DEFAULT_RULES if r.support == "sphere")
DISCRETE_RULE = next(r for r in DEFAULT_RULES if r.support == "discrete")

F64 = torch.float64

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*",
    "ignore:.*number of training batches.*",
    "ignore:.*GPU available but not used.*",
    "ignore:.*weight_norm.*is deprecated.*",
    "ignore:.*isinstance.treespec, LeafSpec.*",
    "ignore:.*weights_only.*",
    # Most toys run without a logger or log_dir; one test checks this warning.
    "ignore:EntropyMonitor has no log directory",
)


def _trainer(max_steps: int, callbacks: List[Any], **kwargs: Any) -> Trainer:
    options: Dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": max_steps,
        "logger": False,
        "callbacks": callbacks,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
    }
    options.update(kwargs)
    return Trainer(**options)


def _steps(monitor: EntropyMonitor, module: str) -> List[int]:
    return sorted({s for s, m, _, _ in monitor.history if m == module})


def _logged(monitor: EntropyMonitor, module: str) -> Dict[Tuple[int, str], float]:
    return {(s, k): v for s, m, k, v in monitor.history if m == module}


@contextlib.contextmanager
def _info_lines() -> Iterator[List[str]]:
    """The lines Lightning's rank-zero info log prints (rank_zero_info) meanwhile."""
    lines: List[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    handler, level = Keep(logging.INFO), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


# -- toy models ------------------------------------------------------------------------
def _whitened(n: int, d: int, seed: int) -> Tensor:
    """n centered rows with X^T X / n = I (up to rounding)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    q: Tensor = torch.linalg.qr(x - x.mean(dim=0))[0]
    return (math.sqrt(n) * q).float()


class Collapsing(LightningModule):
    """A linear head pulled to a constant output by a squared loss.

    On whitened, centered inputs one SGD step with lr = out_dim / 2 sets the weights
    to 0 and the bias to the target: global step 0 sees a healthy head (collapse
    score about 0.78), every later step the constant output (score about 0).
    """

    def __init__(self) -> None:
        super().__init__()
        self.projection_head = nn.Linear(8, 16)
        self.register_buffer("target", torch.linspace(0.5, 2.0, 16))

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        (x,) = batch
        loss: Tensor = (self.projection_head(x) - self.target).pow(2).mean()
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=8.0)


def _collapsing_data(batches: int) -> DataLoader[Tuple[Tensor, ...]]:
    x = _whitened(64, 8, seed=0)
    return DataLoader(TensorDataset(x.repeat(batches, 1)), batch_size=64)


def _cluster_views(n_per_cluster: int = 16, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(8, 16, generator=g)
    x = centres.repeat_interleave(n_per_cluster, dim=0)
    x = x + 0.5 * torch.randn(x.shape, generator=g)
    view0 = x + 0.2 * torch.randn(x.shape, generator=g)
    view1 = x + 0.2 * torch.randn(x.shape, generator=g)
    return TensorDataset(view0, view1)


def _views_loader(
    seed: int = 0, batch_size: int = 32
) -> DataLoader[Tuple[Tensor, ...]]:
    return DataLoader(
        _cluster_views(seed=seed),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )


class Contrastive(LightningModule):
    """SimCLR-like training on two views; records the head's outputs per step."""

    def __init__(self, head: Optional[nn.Module] = None, temperature: float = 0.2):
        super().__init__()
        self.projection_head = head or nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)
        )
        self.criterion = NTXentLoss(temperature=temperature)
        self.outputs: Dict[int, Tuple[Tensor, Tensor]] = {}

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        x0, x1 = batch
        z0, z1 = self.projection_head(x0), self.projection_head(x1)
        self.outputs.setdefault(
            self.global_step, (z0.detach().clone(), z1.detach().clone())
        )
        loss: Tensor = self.criterion(z0, z1)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Branch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(16, 16)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(16, 8))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.backbone(x))
        return out


class TeacherStudent(LightningModule):
    """A student and its EMA teacher, both with a submodule named ``head``.

    In every step the student's head runs once under torch.no_grad, the teacher's
    (no trainable parameters) with gradients enabled, then the student's head on
    the two views, then once more. Only the two view calls of the student may be
    measured; the teacher is observed on its one call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.student = Branch()
        self.teacher = copy.deepcopy(self.student)
        deactivate_requires_grad(self.teacher)
        self.outputs: Dict[int, Tuple[Tensor, Tensor]] = {}
        self.targets: Dict[int, Tensor] = {}

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        x0, x1 = batch
        with torch.no_grad():
            self.student.head(torch.zeros_like(x0))  # a no-grad call: skipped
        target = self.teacher(x0)  # a frozen copy, called with grad enabled
        z0, z1 = self.student(x0), self.student(x1)
        extra: Tensor = self.student(x0 + x1)  # a third call: beyond the two views
        self.outputs.setdefault(
            self.global_step, (z0.detach().clone(), z1.detach().clone())
        )
        self.targets.setdefault(self.global_step, target.detach().clone())
        update_momentum(self.student, self.teacher, m=0.9)
        loss: Tensor = (z0 - target).pow(2).mean() + (z0 - z1).pow(2).mean()
        return loss + 1e-3 * extra.pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.student.parameters(), lr=0.05)


class BYOL(LightningModule):
    """A BYOL LightningModule as lightly's examples write it, on an MLP backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.projection_head = BYOLProjectionHead(32, 64, 16)
        self.prediction_head = BYOLPredictionHead(16, 64, 16)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        p: Tensor = self.prediction_head(z)
        return p

    def forward_momentum(self, x: Tensor) -> Tensor:
        y = self.backbone_momentum(x).flatten(start_dim=1)
        z: Tensor = self.projection_head_momentum(y)
        return z.detach()

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        update_momentum(self.backbone, self.backbone_momentum, m=0.99)
        update_momentum(self.projection_head, self.projection_head_momentum, m=0.99)
        x0, x1 = batch
        p0, z0 = self.forward(x0), self.forward_momentum(x0)
        p1, z1 = self.forward(x1), self.forward_momentum(x1)
        loss: Tensor = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.06)


class DINO(LightningModule):
    """A DINO-like module: a student head, a frozen teacher head, DINOLoss."""

    def __init__(self, head: nn.Module, teacher: nn.Module, student_temp: float):
        super().__init__()
        self.backbone = nn.Linear(16, 16)
        self.student_head = head
        self.teacher_head = teacher  # weight-normed heads cannot be deep-copied
        deactivate_requires_grad(self.teacher_head)
        self.criterion: nn.Module = DINOLoss(output_dim=32, student_temp=student_temp)
        self.outputs: Dict[int, Tensor] = {}
        self.teacher_outputs: Dict[int, Tensor] = {}
        self.bounds: Dict[int, float] = {}

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        views = [self.backbone(x) for x in batch]
        with torch.no_grad():
            teacher = [self.teacher_head(v) for v in views]
        student = [self.student_head(v) for v in views]
        self.outputs.setdefault(self.global_step, student[0].detach().clone())
        self.teacher_outputs.setdefault(self.global_step, teacher[0].clone())
        loss: Tensor = self.criterion(teacher, student, epoch=self.current_epoch)
        bound = getattr(self.criterion, "last_bound", None)
        if bound is not None:
            self.bounds[self.global_step] = bound.item()
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


# -- the collapse alarm ----------------------------------------------------------------
def test_collapse_raises_the_alarm_at_the_computed_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    every, patience = 2, 3
    monitor = EntropyMonitor(every_n_steps=every, patience=patience, log_dir=tmp_path)
    trainer = _trainer(12, [monitor])
    with pytest.warns(CollapseWarning) as record:
        trainer.fit(Collapsing(), _collapsing_data(12))
    # Checks at 0 (healthy), then 2, 4, 6 flagged: the alarm at the third, 6.
    alarm_step = every + (patience - 1) * every
    assert alarm_step == 6
    alarms = [w for w in record if issubclass(w.category, CollapseWarning)]
    assert len(alarms) == 1  # one alarm per streak
    message = str(alarms[0].message)
    # What the rule saw: module, step, metric, value, threshold; the rule is not
    # validated; the backbone is not judged; no verdict of collapse.
    value = f"{monitor.alarms[0].value:.4g}"
    assert f"at global step {alarm_step}: student module 'projection_head'" in message
    assert f"dimension_score = {value} < {SPHERE_RULE.threshold:g}" in message
    assert "3 consecutive checks (every 2 steps)" in message
    assert "This rule is not validated; see docs/monitoring.md." in message
    assert "it does not judge the backbone's features" in message
    assert "collapse" not in message.lower()
    assert len(monitor.alarms) == 1
    alarm = monitor.alarms[0]
    assert (alarm.step, alarm.module, alarm.metric, alarm.threshold) == (
        alarm_step,
        "projection_head",
        "dimension_score",
        SPHERE_RULE.threshold,
    )
    assert 0.0 <= alarm.value < 1e-6
    assert trainer.global_step == 12  # "warn" does not stop
    scores = {
        s: v
        for (s, k), v in _logged(monitor, "projection_head").items()
        if k == "dimension_score"
    }
    assert sorted(scores) == [0, 2, 4, 6, 8, 10]
    # An 8-dimensional affine image in 16 dimensions: log 9 / log 17 at most.
    assert SPHERE_RULE.threshold < 0.6 < scores[0] <= math.log(9) / math.log(17)
    assert all(scores[s] < 1e-6 for s in (2, 4, 6, 8, 10))


def test_rank_threshold_alone_raises_the_alarm() -> None:
    monitor = EntropyMonitor(
        {"projection_head": "sphere"},
        every_n_steps=1,
        patience=2,
        rank_threshold=1.5,
        rules=(),
    )
    with pytest.warns(CollapseWarning, match="effective_rank = 1 < 1.5"):
        _trainer(4, [monitor]).fit(Collapsing(), _collapsing_data(4))
    assert [(a.step, a.metric) for a in monitor.alarms] == [(2, "effective_rank")]
    assert monitor.alarms[0].value == pytest.approx(1.0, abs=1e-4)


def test_stop_ends_training_with_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    monitor = EntropyMonitor(
        every_n_steps=2, patience=2, on_collapse="stop", log_dir=tmp_path
    )
    trainer = _trainer(20, [monitor, checkpoint], enable_checkpointing=True)
    with pytest.warns(
        CollapseWarning, match=r"Stopping training \(on_collapse='stop'\)"
    ):
        trainer.fit(Collapsing(), _collapsing_data(20))
    # Flagged checks at 2 and 4: the alarm at 4; its batch completes, training ends.
    assert [a.step for a in monitor.alarms] == [4]
    assert trainer.global_step == 5 and trainer.should_stop
    files = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert len(files) == 1
    saved = torch.load(files[0], weights_only=False)
    assert saved["global_step"] == 5
    (state,) = [v for k, v in saved["callbacks"].items() if "EntropyMonitor" in k]
    assert state["alarms"] == [
        {
            "step": 4,
            "module": "projection_head",
            "metric": "dimension_score",
            "value": monitor.alarms[0].value,
            "threshold": SPHERE_RULE.threshold,
        }
    ]
    assert (tmp_path / EntropyMonitor.CSV_NAME).exists()
    assert (tmp_path / EntropyMonitor.PNG_NAME).exists()


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume_keeps_the_alarm_streak(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = _collapsing_data(3)  # an epoch of 3 steps: checkpoints at epoch ends
    first = EntropyMonitor(every_n_steps=1, patience=3, log_dir=tmp_path)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1
    )
    _trainer(3, [first, checkpoint], enable_checkpointing=True).fit(Collapsing(), data)
    # Checks 0 (healthy), 1 and 2 flagged: a streak of 2, no alarm yet.
    assert first.alarms == [] and first.state_dict()["streaks"] == {
        "projection_head": 2
    }
    (path,) = (tmp_path / "ckpt").glob("*step=3*.ckpt")

    resumed = EntropyMonitor(every_n_steps=1, patience=3, log_dir=tmp_path)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1
    )
    trainer = _trainer(6, [resumed, checkpoint], enable_checkpointing=True)
    with pytest.warns(CollapseWarning, match="global step 3:"):
        trainer.fit(Collapsing(), data, ckpt_path=path)
    # The third flagged check is step 3, the first after the resume (a fresh streak
    # would have alarmed at step 5).
    assert [a.step for a in resumed.alarms] == [3]
    assert resumed.state_dict()["streaks"] == {"projection_head": 5}
    assert _steps(resumed, "projection_head") == [0, 1, 2, 3, 4, 5]
    assert resumed.history[: len(first.history)] == first.history
    with open(tmp_path / EntropyMonitor.CSV_NAME, newline="") as f:
        steps = sorted({int(r["step"]) for r in csv.DictReader(f)})
    assert steps == [0, 1, 2, 3, 4, 5]


def test_state_dict_round_trip_and_fresh_fit() -> None:
    monitor = EntropyMonitor()
    state = {
        "streaks": {"head": 2},
        "alarms": [
            {
                "step": 7,
                "module": "head",
                "metric": "collapse_score",
                "value": 0.1,
                "threshold": 0.5,
            }
        ],
        "history": [[7, "head", "collapse_score", 0.1]],
    }
    monitor.load_state_dict(state)
    assert monitor.alarms == [CollapseAlarm(7, "head", "collapse_score", 0.1, 0.5)]
    assert monitor.history == [(7, "head", "collapse_score", 0.1)]
    assert monitor.state_dict() == state
    # A new fit starts afresh.
    monitor.setup(None, None, "fit")  # type: ignore[arg-type]
    assert monitor.state_dict() == {"streaks": {}, "alarms": [], "history": []}


def test_healthy_training_does_not_alarm_and_logs_exact_values(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Contrastive(temperature=0.2)
    monitor = EntropyMonitor(every_n_steps=4, patience=1, log_dir=tmp_path)
    trainer = _trainer(12, [monitor])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        trainer.fit(model, _views_loader())
    assert monitor.alarms == []
    # kappa from the criterion, NTXentLoss(temperature=0.2): 1 / 0.2.
    meter = monitor.meters["projection_head"]
    assert meter.kappa == 5.0 and meter.support == "sphere"
    logged = _logged(monitor, "projection_head")
    assert _steps(monitor, "projection_head") == [0, 4, 8]
    for step in (0, 4, 8):
        z0, z1 = (normalize(z.double(), dim=1) for z in model.outputs[step])
        entropy = sphere_entropy(z0, 5.0).item()
        assert logged[step, "entropy"] == pytest.approx(entropy, rel=1e-5)
        gap = entropy - min_sphere_entropy(8, 5.0)
        assert logged[step, "entropy_gap"] == pytest.approx(gap, rel=1e-4)
        assert logged[step, "normalized_entropy"] == pytest.approx(
            gap / math.log(32), rel=1e-4
        )
        assert logged[step, "alignment"] == pytest.approx(
            alignment(z0, z1).item(), rel=1e-5
        )
        assert logged[step, "collapse_score"] == pytest.approx(
            collapse_score(z0).item(), abs=1e-5
        )
        assert logged[step, "collapse_score"] > 0.8
        assert logged[step, "dimension_score"] == pytest.approx(
            dimension_score(z0).item(), abs=1e-5
        )
        assert abs(entropy - sphere_entropy(z0, 10.0).item()) > 1.0  # kappa matters
    # On the progress bar: the alarm's metric of the last check, under a short name.
    assert trainer.progress_bar_metrics == {
        "proj.dim": pytest.approx(logged[8, "dimension_score"])
    }
    # The hooks are gone after fit.
    assert not model.projection_head._forward_hooks


# -- cadence and teachers --------------------------------------------------------------
@pytest.mark.parametrize(
    "steps, every, accumulate", [(7, 3, 1), (6, 3, 1), (4, 5, 1), (5, 1, 1), (5, 2, 2)]
)
def test_cadence_and_teachers(steps: int, every: int, accumulate: int) -> None:
    torch.manual_seed(0)
    model = TeacherStudent()
    monitor = EntropyMonitor(every_n_steps=every, kappa=4.0)
    trainer = _trainer(steps, [monitor], accumulate_grad_batches=accumulate)
    trainer.fit(model, _views_loader(batch_size=16))
    assert trainer.global_step == steps
    # Conventional names: the student's head and backbone, and the teacher's
    # copies, observed read-only.
    assert monitor.roles == {
        "student.backbone": "student",
        "student.head": "student",
        "teacher.backbone": "teacher",
        "teacher.head": "teacher",
    }
    expected_steps = list(range(0, steps, every))
    assert len(expected_steps) == math.ceil(steps / every)
    for name in monitor.roles:
        assert _steps(monitor, name) == expected_steps
        assert monitor.meters[name].num_updates == len(expected_steps)
    # What was measured: the two view calls of the student's first batch of the
    # step (not its no-grad call, not the third); the teacher's one call.
    logged = _logged(monitor, "student.head")
    teacher = _logged(monitor, "teacher.head")
    for step in expected_steps:
        z0, z1 = (normalize(z.double(), dim=1) for z in model.outputs[step])
        assert logged[step, "entropy"] == pytest.approx(
            sphere_entropy(z0, 4.0).item(), rel=1e-5
        )
        assert logged[step, "alignment"] == pytest.approx(
            alignment(z0, z1).item(), rel=1e-5, abs=1e-7
        )
        target = normalize(model.targets[step].double(), dim=1)
        assert teacher[step, "entropy"] == pytest.approx(
            sphere_entropy(target, 4.0).item(), rel=1e-5
        )
        assert (step, "alignment") not in teacher  # one call: no second view


def test_teachers_can_be_left_out() -> None:
    torch.manual_seed(0)
    monitor = EntropyMonitor(every_n_steps=1, watch_teachers=False)
    _trainer(2, [monitor]).fit(TeacherStudent(), _views_loader(batch_size=16))
    assert monitor.roles == {"student.backbone": "student", "student.head": "student"}
    assert {m for _, m, _, _ in monitor.history} == set(monitor.roles)


def test_every_step_measures_er_heads_at_the_resolved_kappa() -> None:
    def fit(head_kappa: Optional[float], kappa: Optional[float]) -> EntropyMonitor:
        torch.manual_seed(0)
        head = ERSimCLRProjectionHead(16, 32, 8, kappa=head_kappa)
        model = Contrastive(head, temperature=0.2)
        monitor = EntropyMonitor(every_n_steps=1, kappa=kappa)
        _trainer(5, [monitor]).fit(model, _views_loader())
        assert head.entropy_meter.num_updates == 0  # the monitor has its own meter
        assert not head._forward_hooks
        logged = _logged(monitor, "projection_head")
        meter = monitor.meters["projection_head"]
        z0 = normalize(model.outputs[4][0].double(), dim=1)
        assert logged[4, "entropy"] == pytest.approx(
            sphere_entropy(z0, meter.effective_kappa).item(), rel=1e-5
        )
        return monitor

    from_loss = fit(None, None)
    assert list(from_loss.meters) == ["projection_head"]
    assert _steps(from_loss, "projection_head") == [0, 1, 2, 3, 4]
    assert from_loss.meters["projection_head"].num_updates == 5
    assert from_loss.meters["projection_head"].kappa == 5.0  # NTXentLoss(0.2)
    assert fit(3.0, None).meters["projection_head"].kappa == 3.0  # the head's
    assert fit(3.0, 7.0).meters["projection_head"].kappa == 7.0  # the callback's


# -- discovery -------------------------------------------------------------------------
def test_auto_discovery_on_an_unmodified_lightly_byol(tmp_path: Path) -> None:
    def fit(callbacks: List[Any]) -> BYOL:
        torch.manual_seed(0)
        model = BYOL()
        _trainer(6, callbacks).fit(model, _views_loader(seed=1))
        return model

    monitor = EntropyMonitor(every_n_steps=2, log_dir=tmp_path)
    monitored = fit([monitor])
    assert monitor.roles == {
        "backbone": "student",
        "projection_head": "student",
        "prediction_head": "student",
        "backbone_momentum": "teacher",
        "projection_head_momentum": "teacher",
    }
    for name, meter in monitor.meters.items():
        assert (meter.support, meter.kappa) == ("sphere", 10.0)  # NegativeCosine
        assert _steps(monitor, name) == [0, 2, 4]
    metrics = {k for _, m, k, _ in monitor.history if m == "prediction_head"}
    assert "alignment" in metrics  # the two views were paired
    # Watching changes nothing in training.
    plain = fit([])
    for a, b in zip(monitored.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)
    for module in monitored.modules():
        assert not module._forward_hooks


@pytest.mark.parametrize(
    "er_head, callback_temperature, expected",
    [(False, None, 0.2), (True, None, 0.3), (True, 0.5, 0.5)],
)
def test_auto_discovery_of_a_discrete_head(
    er_head: bool, callback_temperature: Optional[float], expected: float
) -> None:
    torch.manual_seed(0)
    head: nn.Module = (
        ERDINOProjectionHead(16, 32, 8, 32, temperature=0.3)
        if er_head
        else DINOProjectionHead(16, 32, 8, 32)
    )
    model = DINO(head, DINOProjectionHead(16, 32, 8, 32), student_temp=0.2)
    monitor = EntropyMonitor(every_n_steps=2, temperature=callback_temperature)
    _trainer(3, [monitor]).fit(model, _views_loader())
    assert monitor.roles == {
        "backbone": "student",
        "student_head": "student",
        "teacher_head": "teacher",
    }
    meter = monitor.meters["student_head"]
    assert (meter.support, meter.temperature) == ("discrete", expected)
    logged = _logged(monitor, "student_head")
    assert _steps(monitor, "student_head") == [0, 2]
    for step in (0, 2):
        p = torch.softmax(model.outputs[step].double() / expected, dim=1)
        assert logged[step, "entropy"] == pytest.approx(
            discrete_entropy(p).item(), rel=1e-5
        )
        assert logged[step, "normalized_entropy"] == pytest.approx(
            discrete_entropy(p).item() / math.log(32), rel=1e-5
        )


@pytest.mark.parametrize("criterion", ["lightly", "er-centering", "er"])
def test_a_dino_teacher_is_observed_as_the_loss_sees_it(criterion: str) -> None:
    """At the teacher temperature, after the center the loss subtracts, and
    compared with its student: KL(teacher || student) on the same view."""
    torch.manual_seed(0)
    model = DINO(
        DINOProjectionHead(16, 32, 8, 32), DINOProjectionHead(16, 32, 8, 32), 0.2
    )
    if criterion != "lightly":
        model.criterion = ERDINOLoss(
            output_dim=32,
            student_temp=0.2,
            teacher_temp=0.07,
            warmup_teacher_temp=0.07,
            centering=criterion == "er-centering",
        )
    # A center that is not zero from the first step on.
    loss: Any = model.criterion
    loss.center.copy_(torch.randn(1, 1, 32))
    centers: Dict[int, Tensor] = {}

    class CenterBefore(Callback):
        def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
            centers[trainer.global_step] = loss.center.reshape(-1).clone()

    monitor = EntropyMonitor(every_n_steps=1)
    _trainer(3, [CenterBefore(), monitor]).fit(model, _views_loader())
    # lightly's warmup schedule is a float32 tensor: 0.04 to float32 rounding.
    tau = 0.04 if criterion == "lightly" else 0.07
    assert monitor.meters["teacher_head"].temperature == pytest.approx(tau, rel=1e-7)
    teacher = _logged(monitor, "teacher_head")
    student = _logged(monitor, "student_head")
    for step in (0, 1, 2):
        logits = model.teacher_outputs[step].double()
        if criterion != "er":  # DINOLoss always centers, ERDINOLoss if asked
            logits = logits - centers[step].double()
        log_p = torch.log_softmax(logits / tau, dim=1)
        p = log_p.exp()
        assert teacher[step, "entropy"] == pytest.approx(
            discrete_entropy(p).item(), rel=1e-4
        )
        conditional = -(p * log_p).sum(dim=1).mean().item()
        assert teacher[step, "conditional_entropy"] == pytest.approx(
            conditional, rel=1e-4, abs=1e-6
        )
        log_q = torch.log_softmax(model.outputs[step].double() / 0.2, dim=1)
        assert student[step, "kl_teacher_student"] == pytest.approx(
            mean_kl_divergence(log_p, log_q).item(), rel=1e-4
        )
    if criterion != "lightly":
        # The ER criterion's terms and, for DINO-ER, the lower bound.
        criterion_rows = _logged(monitor, "criterion")
        assert set(k for _, k in criterion_rows) == {
            "entropy",
            "reconstruction",
            "er",
            "bound",
        }
        assert criterion_rows[2, "bound"] == pytest.approx(
            model.bounds[2], rel=1e-5, abs=1e-6
        )


def test_watching_nothing_warns() -> None:
    class Plain(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Linear(8, 16)
            self.projector = nn.Linear(16, 4)  # not a lightly head name

        def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
            (x,) = batch
            loss: Tensor = self.projector(self.encoder(x)).pow(2).mean()
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    assert "projector" not in CONVENTIONAL_HEADS
    monitor = EntropyMonitor(every_n_steps=1)
    with pytest.warns(UserWarning, match="EntropyMonitor watches no module") as record:
        _trainer(2, [monitor]).fit(Plain(), _collapsing_data(2))
    assert monitor.meters == {} and monitor.history == []
    # The warning shows the fix, with the model's own module names; it works.
    (message,) = [str(w.message) for w in record if "watches no" in str(w.message)]
    fix = "EntropyMonitor(modules={'encoder': 'sphere', 'projector': 'sphere'})"
    assert fix in message
    fixed = EntropyMonitor(modules={"encoder": "sphere", "projector": "sphere"})
    _trainer(2, [fixed]).fit(Plain(), _collapsing_data(2))
    assert {m for _, m, _, _ in fixed.history} == {"encoder", "projector"}


def test_named_modules_and_given_meters() -> None:
    meter = EntropyMeter("discrete", temperature=1.0)
    monitor = EntropyMonitor(
        {"projection_head": meter}, every_n_steps=1, patience=5, rules=()
    )
    _trainer(3, [monitor]).fit(Collapsing(), _collapsing_data(3))
    assert monitor.meters == {"projection_head": meter}
    assert meter.num_updates == 3
    logged = _logged(monitor, "projection_head")
    assert {k for _, k in logged} == {
        "entropy",
        "normalized_entropy",
        "conditional_entropy",
        "mutual_information",
        "normalized_mutual_information",
        "prototype_usage",
        "collapse_score",
        "effective_rank",
        "std",
    }
    # From step 1 every row is softmax(target / 1): one distribution.
    p = torch.softmax(torch.linspace(0.5, 2.0, 16, dtype=F64), dim=0)
    assert logged[2, "entropy"] == pytest.approx(-(p * p.log()).sum().item(), rel=1e-4)
    assert logged[2, "effective_rank"] == pytest.approx(1.0, abs=1e-4)
    assert logged[0, "effective_rank"] > 2.0


def test_discrete_heads_alarm_on_the_information_not_the_collapse_score() -> None:
    """The collapse score is not a discrete rule (healthy DINO reads 0.20-0.55 on it
    in the stability study); the mutual information is, and ``rank_threshold``
    adds a rule on the effective rank."""
    collapsing = EntropyMonitor(
        {"projection_head": "discrete"}, every_n_steps=1, patience=2, temperature=1.0
    )
    with pytest.warns(CollapseWarning, match="normalized_mutual_information"):
        _trainer(3, [collapsing]).fit(Collapsing(), _collapsing_data(3))
    assert [(a.step, a.metric) for a in collapsing.alarms] == [
        (2, "normalized_mutual_information")
    ]
    scores = [v for _, _, m, v in collapsing.history if m == "collapse_score"]
    assert len(scores) == 3 and scores[-1] < 0.01  # collapsed on it too
    only_score = EntropyMonitor(
        {"projection_head": "discrete"},
        every_n_steps=1,
        patience=1,
        temperature=1.0,
        collapse_threshold=0.5,
        rules=(),
    )
    _trainer(3, [only_score]).fit(Collapsing(), _collapsing_data(3))
    assert only_score.alarms == []
    by_rank = EntropyMonitor(
        {"projection_head": "discrete"},
        every_n_steps=1,
        patience=1,
        temperature=1.0,
        rank_threshold=1.5,
        rules=(),
    )
    with pytest.warns(CollapseWarning, match="effective_rank"):
        _trainer(3, [by_rank]).fit(Collapsing(), _collapsing_data(3))
    assert [a.metric for a in by_rank.alarms] == ["effective_rank"]


def test_a_missing_module_is_reported() -> None:
    monitor = EntropyMonitor({"projector": "sphere"})
    with pytest.raises(ValueError, match=r"no submodule 'projector'.*projection_head"):
        _trainer(1, [monitor]).fit(Collapsing(), _collapsing_data(1))


# -- files -----------------------------------------------------------------------------
def test_no_log_dir_and_no_logger_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monitor = EntropyMonitor(every_n_steps=1, patience=10)
    with (
        pytest.warns(
            UserWarning,
            match=r"no log directory .* pass EntropyMonitor\(log_dir='logs'\)",
        ),
        _info_lines() as lines,
    ):
        _trainer(3, [monitor]).fit(Collapsing(), _collapsing_data(3))
    assert not any("EntropyMonitor wrote" in line for line in lines)
    assert _steps(monitor, "projection_head") == [0, 1, 2]  # it did measure
    assert monitor.csv_path is None and monitor.png_path is None
    assert list(tmp_path.rglob("entropy_monitor*")) == []
    assert list(tmp_path.rglob(".entropy_monitor*")) == []


def test_files_go_to_the_loggers_directory(tmp_path: Path) -> None:
    monitor = EntropyMonitor(every_n_steps=2, patience=10)
    logger = CSVLogger(tmp_path)
    with _info_lines() as lines:
        _trainer(4, [monitor], logger=logger).fit(Collapsing(), _collapsing_data(4))
    directory = Path(logger.log_dir)
    assert directory == tmp_path / "lightning_logs" / "version_0"
    assert monitor.csv_path == directory / EntropyMonitor.CSV_NAME
    assert monitor.png_path == directory / EntropyMonitor.PNG_NAME
    with open(monitor.csv_path, newline="") as f:
        rows = [
            (int(r["step"]), r["module"], r["metric"], float(r["value"]))
            for r in csv.DictReader(f)
        ]
    assert rows == monitor.history and len(rows) == 2 * 9
    assert monitor.png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert list(directory.glob(".entropy_monitor*")) == []
    # One line names the files written, with their paths.
    wrote = [line for line in lines if "EntropyMonitor wrote" in line]
    assert wrote == [f"EntropyMonitor wrote {monitor.csv_path}, {monitor.png_path}"]
    # The compact default: the alarm's metric and the entropy gap, nothing else.
    with open(directory / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert {h for h in header if h.startswith("entropy/")} == {
        "entropy/projection_head/dimension_score",
        "entropy/projection_head/entropy_gap",
    }


def _tensorboard_scalars(directory: Path) -> Dict[str, List[Tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(str(directory))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


@pytest.mark.filterwarnings("ignore:.*tensorboardX.*", "ignore:.*hparams.*")
def test_every_value_reaches_every_logger_at_its_measured_step(tmp_path: Path) -> None:
    """Measured at 0, 3, 6, 9, 12 over two epochs of 8 batches, with Lightning's
    default flush every 50 steps: every value is in metrics.csv and TensorBoard,
    labeled with the step it was measured at, none dropped at the epoch end or at
    the end of fit."""
    pytest.importorskip("tensorboard")
    torch.manual_seed(0)
    csv_logger = CSVLogger(tmp_path / "csv")
    tb_logger = TensorBoardLogger(tmp_path / "tb")
    monitor = EntropyMonitor(every_n_steps=3, metrics="all")
    trainer = _trainer(
        13, [monitor], logger=[csv_logger, tb_logger], log_every_n_steps=50
    )
    trainer.fit(Contrastive(), _views_loader(batch_size=16))
    assert trainer.num_training_batches == 8  # the run crossed an epoch end
    measured: Dict[str, Dict[int, float]] = {}
    for step, module, metric, value in monitor.history:
        measured.setdefault(f"entropy/{module}/{metric}", {})[step] = value
    assert {s for values in measured.values() for s in values} == {0, 3, 6, 9, 12}
    assert len(measured) == 11  # 11 metrics of the projection head, two views
    with open(Path(csv_logger.log_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for tag, values in measured.items():
        in_csv = {int(r["step"]): float(r[tag]) for r in rows if r.get(tag)}
        assert in_csv == pytest.approx(values, rel=1e-6), tag
    scalars = _tensorboard_scalars(Path(tb_logger.log_dir))
    for tag, values in measured.items():
        assert dict(scalars[tag]) == pytest.approx(values, rel=1e-6), tag
    # The CSV and plot of the monitor are in both loggers' folders.
    folders = {Path(csv_logger.log_dir), Path(tb_logger.log_dir)}
    assert len(folders) == 2
    assert {p.parent for p in monitor.csv_paths} == folders
    assert {p.parent for p in monitor.png_paths} == folders
    for path in monitor.csv_paths:
        with open(path, newline="") as f:
            assert len(list(csv.DictReader(f))) == len(monitor.history)


def _logger_series(logger: CSVLogger) -> set[str]:
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as f:
        return {h for h in next(csv.reader(f)) if h.startswith("entropy/")}


def test_compact_default_and_every_series_on_request(tmp_path: Path) -> None:
    """An unmodified lightly BYOL, teachers included: by default two series per
    watched module go to the logger; metrics="all" brings back every one; the
    history (and CSV) keep every value either way."""

    def fit(metrics: Any, name: str) -> Tuple[EntropyMonitor, set[str]]:
        torch.manual_seed(0)
        monitor = EntropyMonitor(every_n_steps=2, metrics=metrics)
        logger = CSVLogger(tmp_path, name=name)
        _trainer(4, [monitor], logger=logger).fit(BYOL(), _views_loader(seed=1))
        return monitor, _logger_series(logger)

    compact, compact_series = fit("compact", "compact")
    modules = set(compact.roles)
    assert len(modules) == 5 and "projection_head_momentum" in modules
    assert compact_series == {
        f"entropy/{m}/{k}" for m in modules for k in ("dimension_score", "entropy_gap")
    }
    full, full_series = fit("all", "all")
    recorded = {f"entropy/{m}/{k}" for _, m, k, _ in full.history}
    assert full_series == recorded and len(recorded) > 40
    assert {(m, k) for _, m, k, _ in compact.history} == {
        (m, k) for _, m, k, _ in full.history
    }
    assert full.metrics == "all" and compact.metrics == "compact"


def test_a_list_of_metrics_and_the_criterion_terms(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Contrastive()
    model.criterion = ERNTXentLoss(temperature=0.2)
    monitor = EntropyMonitor(every_n_steps=1, metrics=["collapse_score", "criterion"])
    logger = CSVLogger(tmp_path)
    _trainer(2, [monitor], logger=logger).fit(model, _views_loader())
    assert monitor.metrics == ("collapse_score", "criterion")
    assert _logger_series(logger) == {
        "entropy/projection_head/collapse_score",
        "entropy/criterion/entropy",
        "entropy/criterion/reconstruction",
        "entropy/criterion/er",
    }


def test_a_validated_rule_says_so() -> None:
    rule = AlarmRule("dimension_score", 0.25, "sphere", validated=True)
    monitor = EntropyMonitor(every_n_steps=1, patience=1, rules=[rule])
    with pytest.warns(CollapseWarning) as record:
        _trainer(2, [monitor]).fit(Collapsing(), _collapsing_data(2))
    (message,) = [str(w.message) for w in record if w.category is CollapseWarning]
    assert "This rule is validated; docs/monitoring.md has its table." in message
    assert "not validated" not in message
    assert "for 1 check (every step)" in message


def test_what_a_small_batch_cannot_measure_is_not_recorded() -> None:
    torch.manual_seed(0)
    monitor = EntropyMonitor(every_n_steps=1)
    with pytest.warns(UserWarning, match="at least 4 rows for dimension_score"):
        _trainer(2, [monitor]).fit(Contrastive(), _views_loader(batch_size=3))
    metrics = {k for _, m, k, _ in monitor.history if m == "projection_head"}
    assert {"entropy_gap", "lidar"} <= metrics
    assert not metrics & {"dimension_score", "participation_ratio"}
    assert all(math.isfinite(v) for *_, v in monitor.history)
    assert _steps(monitor, "projection_head") == [0, 1]


def test_an_output_the_meter_cannot_read_names_the_module() -> None:
    class OneScore(Collapsing):
        def __init__(self) -> None:
            super().__init__()
            self.projection_head = nn.Linear(8, 1)

        def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
            loss: Tensor = self.projection_head(batch[0]).pow(2).mean()
            return loss

    monitor = EntropyMonitor({"projection_head": "discrete"}, every_n_steps=1)
    with pytest.raises(
        ValueError,
        match=r"could not measure the output of module 'projection_head'.*2 columns",
    ):
        _trainer(1, [monitor]).fit(OneScore(), _collapsing_data(1))


def test_one_message_per_alarm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    monitor = EntropyMonitor(every_n_steps=1, patience=2, log_dir=tmp_path)
    with pytest.warns(CollapseWarning) as record, caplog.at_level("INFO"):
        _trainer(6, [monitor]).fit(Collapsing(), _collapsing_data(6))
    assert len(monitor.alarms) == 1
    messages = [
        str(w.message) for w in record if issubclass(w.category, CollapseWarning)
    ]
    assert len(messages) == 1 and "EntropyMonitor alarm" in messages[0]
    # Not printed a second time through logging or on the console.
    assert not any("EntropyMonitor alarm" in r.getMessage() for r in caplog.records)
    assert "EntropyMonitor alarm" not in capsys.readouterr().out


def test_without_matplotlib_the_csv_is_written_and_the_plot_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # matplotlib is optional: a None entry in sys.modules makes its import fail.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monitor = EntropyMonitor(every_n_steps=2, patience=10, log_dir=tmp_path)
    with pytest.warns(UserWarning, match="wrote no plot: .*pip install matplotlib"):
        _trainer(4, [monitor]).fit(Collapsing(), _collapsing_data(4))
    with open(tmp_path / EntropyMonitor.CSV_NAME, newline="") as f:
        assert len(list(csv.DictReader(f))) == len(monitor.history) == 2 * 9
    assert not (tmp_path / EntropyMonitor.PNG_NAME).exists()
    assert list(tmp_path.glob(".entropy_monitor*")) == []


def test_a_failing_run_still_writes_its_csv(tmp_path: Path) -> None:
    class Failing(Collapsing):
        def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
            if self.global_step == 5:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    model = Failing()
    monitor = EntropyMonitor(every_n_steps=2, log_dir=tmp_path / "out")
    with pytest.raises(RuntimeError, match="boom"), warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        with _info_lines() as lines:
            _trainer(10, [monitor]).fit(model, _collapsing_data(10))
    path = tmp_path / "out" / EntropyMonitor.CSV_NAME
    with open(path, newline="") as f:
        steps = sorted({int(r["step"]) for r in csv.DictReader(f)})
    assert steps == [0, 2, 4]
    assert [line for line in lines if "EntropyMonitor" in line] == [
        f"EntropyMonitor wrote {path}"
    ]
    assert not model.projection_head._forward_hooks


@pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")
def test_validation_after_fit_keeps_the_history(tmp_path: Path) -> None:
    class WithValidation(Collapsing):
        def validation_step(self, batch: List[Tensor], batch_idx: int) -> None:
            self.projection_head(batch[0])

    monitor = EntropyMonitor(every_n_steps=1, patience=10, log_dir=tmp_path)
    trainer = _trainer(2, [monitor], limit_val_batches=0)
    model = WithValidation()
    trainer.fit(model, _collapsing_data(2))
    history = list(monitor.history)
    assert len(history) == 2 * 9
    trainer.validate(model, _collapsing_data(1))
    assert monitor.history == history


# -- arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"modules": {"head": "ball"}}, ValueError, r"modules\['head'\] must be"),
        ({"modules": {"head": 1}}, TypeError, r"modules\['head'\] must be"),
        ({"modules": ["head"]}, TypeError, "modules must be a mapping"),
        ({"modules": {1: "sphere"}}, TypeError, "the keys of modules"),
        ({"metrics": "everything"}, ValueError, "metrics must be 'compact', 'all'"),
        ({"metrics": "entropy"}, ValueError, r"metrics=\['entropy'\]"),
        ({"metrics": ["entropy", "bogus"]}, ValueError, "metrics lists 'bogus'"),
        ({"metrics": 3}, TypeError, "metrics must be"),
        ({"every_n_steps": 0}, ValueError, "every_n_steps"),
        ({"every_n_steps": 2.0}, TypeError, "every_n_steps"),
        ({"patience": 0}, ValueError, "patience"),
        ({"on_collapse": "raise"}, ValueError, "on_collapse"),
        ({"collapse_threshold": math.nan}, ValueError, "collapse_threshold"),
        ({"rank_threshold": "1"}, TypeError, "rank_threshold"),
        ({"kappa": -1.0}, ValueError, "kappa"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"estimator": "kde"}, ValueError, "estimator"),
    ],
)
def test_bad_arguments_are_rejected(
    kwargs: Dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        EntropyMonitor(**kwargs)


def test_estimator_follows_the_loss_unless_given() -> None:
    torch.manual_seed(0)
    model = Contrastive(ERSimCLRProjectionHead(16, 32, 8))
    model.criterion = ERNTXentLoss(temperature=0.2, estimator="joe")
    monitor = EntropyMonitor(every_n_steps=1)
    _trainer(1, [monitor]).fit(model, _views_loader())
    assert monitor.meters["projection_head"].estimator == "joe"
    given = EntropyMonitor(every_n_steps=1, estimator="plugin")
    _trainer(1, [given]).fit(model, _views_loader())
    assert given.meters["projection_head"].estimator == "plugin"


def test_an_er_head_named_with_another_support_is_refused() -> None:
    model = Contrastive(ERSimCLRProjectionHead(16, 32, 8))
    monitor = EntropyMonitor({"projection_head": "discrete"})
    with pytest.raises(
        ValueError, match=r"'sphere' support; got modules\['projection_head'\] = 'disc"
    ):
        _trainer(1, [monitor]).fit(model, _views_loader())


def test_two_monitors_in_one_trainer_keep_their_own_state(tmp_path: Path) -> None:
    fast, slow = EntropyMonitor(every_n_steps=1), EntropyMonitor(every_n_steps=2)
    assert fast.state_key != slow.state_key
    torch.manual_seed(0)
    trainer = _trainer(3, [fast, slow])
    trainer.fit(Contrastive(), _views_loader())
    path = tmp_path / "both.ckpt"
    trainer.save_checkpoint(path)
    states = torch.load(path, weights_only=False)["callbacks"]
    assert len(states[fast.state_key]["history"]) == len(fast.history) > 0
    assert len(states[slow.state_key]["history"]) == len(slow.history)
    assert len(fast.history) > len(slow.history)
