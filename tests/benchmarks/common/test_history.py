"""EpochHistory: lightly's MetricCallback, read after the module's epoch end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import pytorch_lightning as pl
import torch
from lightly.utils.benchmarking import MetricCallback
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common.history import EpochHistory, best_metrics


class _EpochLogger(pl.LightningModule):
    """Logs ``val_step`` in validation_step and ``epoch`` in its epoch-end hook, as
    lightly's BenchmarkModule logs kNN_accuracy there."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss: Tensor = self.layer(batch[0]).pow(2).mean()
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_step", 10.0 * self.current_epoch)

    def on_validation_epoch_end(self) -> None:
        self.log("epoch", float(self.current_epoch))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path: Path, *callbacks: pl.Callback, epochs: int = 3) -> None:
    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=list(callbacks),
    )
    trainer.fit(_EpochLogger(), data, data)


def test_reads_each_epoch_after_the_modules_epoch_end(tmp_path: Path) -> None:
    seen: Dict[str, list] = {"probe": []}

    def probe(trainer: pl.Trainer, module: pl.LightningModule) -> Dict[str, float]:
        seen["probe"].append(module.current_epoch)
        return {"twice": 2.0 * module.current_epoch}

    history = EpochHistory(probe)
    lightly = MetricCallback()
    _fit(tmp_path, history, lightly)
    assert history.val_metrics["epoch"] == [0.0, 1.0, 2.0]  # this epoch's value
    assert history.val_metrics["val_step"] == [0.0, 10.0, 20.0]
    assert history.val_metrics["twice"] == [0.0, 2.0, 4.0]
    assert seen["probe"] == [0, 1, 2]  # not in the sanity check
    # lightly's own callback reads before the module's hook: one epoch late there.
    assert lightly.val_metrics["epoch"] == [0.0, 1.0]
    assert best_metrics(history, ["val_", "twice"]) == {"val_step": 20.0, "twice": 4.0}


def test_an_epoch_the_probe_declines_is_not_recorded(tmp_path: Path) -> None:
    def odd_only(trainer: pl.Trainer, module: pl.LightningModule) -> Optional[Dict]:
        return {} if module.current_epoch % 2 else None

    history = EpochHistory(odd_only)
    _fit(tmp_path, history)
    assert history.val_metrics["epoch"] == [1.0]


def test_state_round_trip_and_checkpoints_of_before_the_move() -> None:
    history = EpochHistory()
    history.val_metrics = {"knn_top1": [0.5, 0.625]}
    history.train_metrics = {"loss": [1.0]}
    restored = EpochHistory()
    restored.load_state_dict(history.state_dict())
    assert restored.val_metrics == history.val_metrics
    assert restored.train_metrics == history.train_metrics
    # The CIFAR-10 benchmark's checkpoints kept the held-out history alone.
    old = {"knn_top1": [0.5], "er_entropy": [1.25], "rankme": [30.0]}
    restored.load_state_dict(old)
    assert restored.val_metrics == old and restored.train_metrics == {}
