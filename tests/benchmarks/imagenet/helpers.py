"""What the ImageNet benchmark tests share: a tiny image tree, the command lines of
a one-batch CPU run, the CSV logger's metrics, and a stub trainer."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.plugins.precision import Precision
from torch import Tensor, nn

NUM_CLASSES = 5
IMAGES_PER_CLASS = 4


def make_image_folder(root: Path) -> Path:
    """NUM_CLASSES class folders of IMAGES_PER_CLASS random 32x32 PNG images."""
    rng = np.random.default_rng(0)
    for c in range(NUM_CLASSES):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            pixels[..., c % 3] = 40 * c + 40  # a class-dependent color
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _run_args(data: Path, log_dir: Path, backbone: str, image_size: int) -> List[str]:
    """One batch of pretraining and of each evaluation, on the CPU, seeded."""
    return [
        "--train-dir", str(data), "--val-dir", str(data), "--log-dir", str(log_dir),
        "--accelerator", "cpu", "--strategy", "auto", "--precision", "32-true",
        "--num-workers", "0", "--batch-size-per-device", "4", "--epochs", "1",
        "--num-classes", str(NUM_CLASSES), "--knn-k", "3", "--backbone", backbone,
        "--image-size", str(image_size), "--limit-train-batches", "1",
        "--limit-val-batches", "1", "--linear-epochs", "1",
    ]  # fmt: skip


def resnet50_args(data: Path, log_dir: Path) -> List[str]:
    """The ResNet-50 benchmark on ResNet-18 at 32 px, without fine-tuning."""
    return _run_args(data, log_dir, "resnet18", 32) + [
        "--skip-finetune-eval",
        "--entropy-every-n-steps",
        "1",
        "--seed",
        "0",
    ]


def vitb16_args(data: Path, log_dir: Path) -> List[str]:
    """The ViT benchmark on the one-block test ViT at 56 px, one fine-tuning epoch."""
    return _run_args(data, log_dir, "vit_test", 56) + [
        "--finetune-epochs",
        "1",
        "--entropy-every-n-steps",
        "1",
        "--seed",
        "0",
    ]


def csv_metrics(stage_dir: Path) -> Dict[str, List[float]]:
    """metric -> logged values of the CSV logger's metrics.csv of one stage."""
    files = sorted(stage_dir.glob("version_*/metrics.csv"))
    assert files, f"no metrics.csv under {stage_dir}"
    out: Dict[str, List[float]] = {}
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value not in ("", None):
                    out.setdefault(key, []).append(float(value))
    return out


def linear_shapes(module: nn.Module) -> Tuple[Tuple[int, int], ...]:
    """(in, out) of every linear layer, in order."""
    return tuple(
        (m.in_features, m.out_features)
        for m in module.modules()
        if isinstance(m, nn.Linear)
    )


def stub_trainer(**overrides: Any) -> SimpleNamespace:
    """What configure_optimizers, the schedules and clip_gradients read of a Trainer."""
    values: Dict[str, Any] = {
        "world_size": 1,
        "num_devices": 1,
        "estimated_stepping_batches": 1000,
        "max_epochs": 100,
        "global_step": 0,
        "current_epoch": 0,
        "gradient_clip_val": None,
        "gradient_clip_algorithm": None,
        "precision_plugin": Precision(),
        "state": SimpleNamespace(stage="train"),
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def attach(model: pl.LightningModule, **overrides: Any) -> SimpleNamespace:
    """Attaches a stub trainer and silences logging (no Trainer runs the module)."""
    stub = stub_trainer(**overrides)
    model.trainer = stub  # type: ignore[assignment]
    model.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    model.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return stub


def state_of(module: nn.Module) -> Dict[str, Tensor]:
    """A detached copy of the module's state."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
