"""Every script in examples/ trains for a few steps on a tiny in-memory dataset.

Each script runs as written, in this process, through
``runpy.run_path(path, run_name="__main__")``. Its code is not touched; only what it
reaches for outside is replaced, for the duration of one test (monkeypatch):

- ``torchvision.datasets.CIFAR10`` and ``torchvision.datasets.VOCDetection``: a
  dataset of a few random PIL images with the same interface (the constructor's
  ``transform`` and ``target_transform``; items are ``(image, target)`` with both
  applied, the VOC target an annotation dict), so nothing is downloaded.
- ``torch.utils.data.DataLoader``: a subclass that caps ``batch_size`` at
  ``BATCH_SIZE`` (2) and sets ``num_workers=0``, and keeps every other argument
  (``shuffle``, ``drop_last``). lightly's examples load batches of 256 (DINO 64,
  SwAV 128) with ``drop_last=True``; a fake dataset that big would take minutes per
  step on a CPU with DINO's and SwAV's 224-pixel crops, and eight worker processes
  would only compete for the two cores. This is the least intrusive lever: the
  scripts' batch size is a literal inside their DataLoader call.
- ``pytorch_lightning.Trainer``: a subclass that forces one epoch of
  ``limit_train_batches=2`` on one CPU device with ``strategy="auto"``, without a
  logger, checkpoints, progress bar or model summary, and keeps the other arguments
  (the callbacks: the script's EntropyMonitor). For the distributed examples this
  replaces DDP on all GPUs by one CPU process; their losses' ``gather_distributed``
  then gathers from one process.

Each test checks that the script trains with its method's ER loss and ER heads, that
the plain PyTorch scripts print ER and the entropy gap every epoch (free of the
normalizer's constant: checked against the loss's terms and an independent H_min) and
a collapse score at step 0, and that the Lightning scripts log ER and the entropy gap
and their EntropyMonitor watched and measured at least one module.

The fake dataset holds exactly one batch for the plain PyTorch scripts (their
10 epochs are then 10 steps) and two for the Lightning scripts (two steps). Torch
runs on one thread: two threads on the two shared cores are slower.

The offline examples (examples/offline/, scikit-learn's digits) run unpatched, for
``OFFLINE_EPOCHS`` epochs instead of their 30 (``--epochs``): each must train its
steps to a finite loss, print a kNN accuracy far above chance (0.1) and an entropy
of the held-out embeddings that training raised, and leave the monitor's CSV with
rows for its heads.
"""

from __future__ import annotations

import csv
import math
import re
import runpy
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.utils.data
import torchvision
from PIL import Image
from torch.nn import functional as F

from lightly_er.functional import discrete_entropy, min_sphere_entropy, sphere_entropy
from lightly_er.loss import (
    ERDINOLoss,
    ERMSNLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERPMSNLoss,
    ERSwaVLoss,
)
from lightly_er.monitoring import EntropyMonitor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FOLDERS = ("pytorch", "pytorch_lightning", "pytorch_lightning_distributed")
METHODS = ("simclr", "moco", "byol", "simsiam", "dino", "swav", "msn", "pmsn", "dinov2")
SCRIPTS = [f"{folder}/{method}_er.py" for folder in FOLDERS for method in METHODS]
ER_LOSSES = {
    "simclr": ERNTXentLoss,
    "moco": ERNTXentLoss,
    "byol": ERNegativeCosineSimilarity,
    "simsiam": ERNegativeCosineSimilarity,
    "dino": ERDINOLoss,
    "swav": ERSwaVLoss,
    "msn": ERMSNLoss,
    "pmsn": ERPMSNLoss,
    "dinov2": ERDINOLoss,
}
"""The ER loss class each method's scripts must train with."""
ER_HEADS = {
    "simclr": ["projection_head"],
    "moco": [],
    "byol": ["projection_head", "prediction_head"],
    "simsiam": [],
    "dino": ["student_head"],
    "swav": ["projection_head", "prototypes"],
    "msn": [],
    "pmsn": [],
    "dinov2": [],
}
"""The heads each method's scripts must take from lightly-er (MoCo's and SimSiam's
have no ER version)."""

CRITERIA = {"dinov2": "dino_criterion"}
"""The Lightning module's attribute that holds the ER loss, where not ``criterion``
(DINOv2 has three losses; its ER terms are DINO-ER's)."""

BATCH_SIZE = 2
LIGHTNING_BATCHES = 2
PYTORCH_EPOCHS = 10
"""The epochs of the plain PyTorch scripts, as lightly's examples have them."""

NUMBER = r"(-?(?:\d+\.\d*|nan|inf))"
EPOCH_LINE = re.compile(
    rf"^epoch: (\d+), loss: {NUMBER}, ER: {NUMBER}, entropy gap: {NUMBER}$",
    flags=re.MULTILINE,
)
RELATIVE_EPOCH_LINE = re.compile(
    rf"^epoch: (\d+), loss: {NUMBER}, ER: {NUMBER}, relative entropy: {NUMBER}$",
    flags=re.MULTILINE,
)
"""PMSN-ER's line: its entropy is relative to the prior (at most 0), not above a floor."""
RELATIVE = {"pmsn"}
SPHERE_DIMS = {"simclr": 128, "moco": 128, "byol": 256, "simsiam": 128}
"""The output dimension of the plain PyTorch scripts' sphere losses (DINO and SwAV
are on prototypes, where the entropy's floor is 0)."""
STEP_LINE = re.compile(rf"^step: +0, collapse score: {NUMBER}, ", flags=re.MULTILINE)


class _FakeImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Random RGB images of one size, labeled as CIFAR-10 or Pascal VOC would be."""

    num_images = BATCH_SIZE
    image_size = 32
    voc_targets = False

    def __init__(
        self,
        root: str,
        *args: Any,
        transform: Any = None,
        target_transform: Any = None,
        **kwargs: Any,
    ) -> None:
        rng = np.random.default_rng(0)
        shape = (self.image_size, self.image_size, 3)
        self.images = [
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
            for _ in range(self.num_images)
        ]
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image: Any = self.images[index]
        target: Any = index % 10
        if self.voc_targets:
            target = {"annotation": {"filename": f"{index:06d}.jpg", "object": []}}
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class _SmallBatchLoader(torch.utils.data.DataLoader):  # type: ignore[type-arg]
    """DataLoader with batch_size capped at BATCH_SIZE and no worker processes."""

    def __init__(self, dataset: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["batch_size"] = min(kwargs.get("batch_size", 1), BATCH_SIZE)
        kwargs["num_workers"] = 0
        super().__init__(dataset, *args, **kwargs)


def _quick_trainer(root: Path) -> type[pl.Trainer]:
    class QuickTrainer(pl.Trainer):
        """pl.Trainer on one CPU device for LIGHTNING_BATCHES steps, writing nothing."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.update(
                max_epochs=1,
                limit_train_batches=LIGHTNING_BATCHES,
                accelerator="cpu",
                devices=1,
                strategy="auto",
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                default_root_dir=str(root),
            )
            super().__init__(*args, **kwargs)

    return QuickTrainer


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run(
    script: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Dict[str, Any]:
    lightning = not script.startswith("pytorch/")
    num_images = BATCH_SIZE * (LIGHTNING_BATCHES if lightning else 1)
    cifar = type("FakeCIFAR10", (_FakeImages,), {"num_images": num_images})
    voc = type(
        "FakeVOCDetection",
        (_FakeImages,),
        {"num_images": num_images, "image_size": 64, "voc_targets": True},
    )
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", cifar)
    monkeypatch.setattr(torchvision.datasets, "VOCDetection", voc)
    monkeypatch.setattr(torch.utils.data, "DataLoader", _SmallBatchLoader)
    monkeypatch.setattr(pl, "Trainer", _quick_trainer(tmp_path))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    return runpy.run_path(str(EXAMPLES / script), run_name="__main__")


def _finite(value: Any) -> bool:
    return math.isfinite(float(value))


def _min_sphere_entropy(dim: int, kappa: float) -> float:
    """-log C_d(kappa) - kappa, from scipy's scaled Bessel function (independent of
    lightly_er.functional)."""
    from scipy.special import ive

    order = dim / 2 - 1
    log_bessel = math.log(ive(order, kappa)) + kappa
    log_c = order * math.log(kappa) - dim / 2 * math.log(2 * math.pi) - log_bessel
    return -log_c - kappa


def _check_plain_pytorch(method: str, namespace: Dict[str, Any], out: str) -> None:
    """The epoch lines print ER and the entropy gap, free of the constants, and the
    meter measured step 0."""
    epochs = (RELATIVE_EPOCH_LINE if method in RELATIVE else EPOCH_LINE).findall(out)
    assert [int(e[0]) for e in epochs] == list(range(PYTORCH_EPOCHS)), out
    assert all(_finite(v) for epoch in epochs for v in epoch[1:]), out
    step = STEP_LINE.search(out)
    assert step is not None and 0.0 <= float(step.group(1)) <= 1.0, out
    criterion = namespace[CRITERIA.get(method, "criterion")]
    components = criterion.last_components
    assert components is not None and all(_finite(t) for t in components)
    # One batch per epoch: the last epoch's line is the last step's terms.
    _, er, gap = (float(v) for v in epochs[-1][1:])
    entropy, reconstruction = (
        float(components.entropy),
        float(components.reconstruction),
    )
    assert er == pytest.approx(entropy + reconstruction, abs=2e-3)
    if method in RELATIVE:
        # The entropy relative to the prior is at most 0 (0 at the prior).
        assert gap == pytest.approx(entropy, abs=2e-3)
        assert gap <= 1e-3
        return
    if method in SPHERE_DIMS:
        floor = _min_sphere_entropy(SPHERE_DIMS[method], criterion.kappa)
        assert abs(floor) > 100  # the constant the line leaves out
        # ER in [-2 kappa, log N]; the gap in [0, log N] (MoCo: N counts the bank).
        assert -2 * criterion.kappa - 1e-3 <= er <= math.log(BATCH_SIZE + 4096)
    else:
        floor = 0.0  # prototypes: all mass on one has entropy 0
        assert er <= gap + 1e-3  # the reconstruction is a negative cross-entropy
    assert gap == pytest.approx(entropy - floor, abs=2e-3)
    # At most log N on the sphere; on prototypes at most log K (DINO's center holds K).
    center = getattr(criterion, "center", None)
    ceiling = BATCH_SIZE + 4096 if center is None else max(center.shape[-1], 4098)
    assert -1e-3 <= gap <= math.log(ceiling)


def _check_lightning(method: str, namespace: Dict[str, Any]) -> None:
    """The Trainer ran its steps, logged finite ER terms, and the monitor measured."""
    trainer = namespace["trainer"]
    assert trainer.state.finished and trainer.global_step == LIGHTNING_BATCHES
    metrics = trainer.callback_metrics
    second = "er/relative_entropy" if method in RELATIVE else "er/entropy_gap"
    for name in ("train_loss", "er/er", second):
        assert _finite(metrics[name]), (name, metrics)
    # Free of the constant -/+ log C_d(kappa) (126 nats at d = 128, kappa = 10).
    assert abs(float(metrics["er/er"])) < 50
    if method in RELATIVE:
        assert -50 < float(metrics[second]) <= 1e-3
    else:
        assert -1e-3 <= float(metrics[second]) < 50
    monitors = [cb for cb in trainer.callbacks if isinstance(cb, EntropyMonitor)]
    assert len(monitors) == 1
    monitor = monitors[0]
    assert monitor.meters, "EntropyMonitor watched no module"
    assert monitor.history, "EntropyMonitor measured nothing"
    assert all(_finite(value) for *_, value in monitor.history)
    # The monitor logs to the loggers directly (not through callback_metrics): every
    # module it watches has rows in its history (and an ER criterion its terms).
    modules = {module for _, module, _, _ in monitor.history}
    assert modules - {"criterion"} == set(monitor.meters)


@pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning")
@pytest.mark.filterwarnings("ignore:EntropyMonitor has no log directory:UserWarning")
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_trains(
    script: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    one_thread: None,
) -> None:
    namespace = _run(script, monkeypatch, tmp_path)
    out = capsys.readouterr().out
    folder, name = script.split("/")
    method = name.removesuffix("_er.py")
    plain = folder == "pytorch"
    model = namespace["model"]
    attribute = CRITERIA.get(method, "criterion")
    criterion = namespace["criterion"] if plain else getattr(model, attribute)
    assert type(criterion) is ER_LOSSES[method]
    for head in ER_HEADS[method]:
        assert hasattr(getattr(model, head), "entropy_meter"), head
    if plain:
        _check_plain_pytorch(method, namespace, out)
    else:
        _check_lightning(method, namespace)


OFFLINE = ["offline/byol_er_digits.py", "offline/dino_er_digits.py"]
OFFLINE_EPOCHS = 3
OFFLINE_STEPS = OFFLINE_EPOCHS * 10
"""10 steps an epoch: 1,300 training digits in batches of 128, the last dropped."""
OFFLINE_HEADS = {
    "byol": {"projection_head", "prediction_head"},
    "dino": {"student_head"},
}
OFFLINE_LOSSES: Dict[str, Any] = {
    "byol": ERNegativeCosineSimilarity,
    "dino": ERDINOLoss,
}
OFFLINE_MAX_ENTROPY = {"byol": math.log(497), "dino": math.log(256)}
"""At most log N for the 497 held-out digits on the sphere; log K on K prototypes."""
MIN_ENTROPY_GAIN = 0.5
"""The entropy of the held-out outputs (BYOL: the prediction on the sphere, nats above
a collapsed batch; DINO: the student's mean prediction over the prototypes), computed
here: see test_offline_example_learns for the values measured."""


@torch.no_grad()
def _held_out_entropy(method: str, model: Any, images: torch.Tensor) -> float:
    model.eval()
    x = images[1300:]
    if method == "byol":
        p = F.normalize(model.prediction_head(model.projection_head(model.backbone(x))))
        kappa = model.criterion.kappa
        value = sphere_entropy(p, kappa) - min_sphere_entropy(p.shape[1], kappa)
    else:
        logits = model.student_head(model.backbone(x)) / model.criterion.student_temp
        value = discrete_entropy(F.softmax(logits, dim=1))
    model.train()
    return float(value)


@pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning")
@pytest.mark.parametrize("script", OFFLINE)
def test_offline_example_learns(
    script: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    one_thread: None,
) -> None:
    """Measured after 3 epochs (2-core CPU, 2026-12-07): held-out entropy 0.06 ->
    3.66 nats (BYOL-ER), 4.39 -> 5.36 (DINO-ER)."""
    pytest.importorskip("sklearn")
    method = script.split("/")[1].split("_")[0]
    log_dir = tmp_path / "logs"
    argv = [script, "--epochs", str(OFFLINE_EPOCHS), "--log-dir", str(log_dir)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(EXAMPLES / script), run_name="__main__")

    model, images = namespace["model"], namespace["images"]
    assert type(model.criterion) is OFFLINE_LOSSES[method]
    if method == "dino":
        assert model.criterion.centering is True
    trainer = namespace["trainer"]
    assert trainer.state.finished and trainer.global_step == OFFLINE_STEPS
    # The script's untrained model is the one seed 0 builds.
    torch.manual_seed(0)
    untrained = namespace[method.upper()]()
    before = _held_out_entropy(method, untrained, images)
    after = _held_out_entropy(method, model, images)
    for value in (before, after):
        assert -1e-3 <= value <= OFFLINE_MAX_ENTROPY[method] + 1e-3
    assert after >= before + MIN_ENTROPY_GAIN, (before, after)

    # The monitor measured the heads during training and wrote its CSV.
    with open(log_dir / EntropyMonitor.CSV_NAME, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["step", "module", "metric", "value"]
    heads = [row for row in rows if row["module"] in OFFLINE_HEADS[method]]
    assert {row["module"] for row in heads} == OFFLINE_HEADS[method]
    assert all(_finite(row["value"]) for row in heads)
    # Every 10 steps (the scripts' every_n_steps), the first step included.
    assert {int(row["step"]) for row in heads} == set(range(0, OFFLINE_STEPS, 10))
