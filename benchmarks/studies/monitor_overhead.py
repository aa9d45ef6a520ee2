"""Training-step time with and without ``EntropyMonitor``, side by side in one run.

A lightly BYOL module (lightly's CIFAR ResNet-9 at half width, 16x16 crops of
scikit-learn's digits) trains for --steps steps with the callback at its defaults
(every 50 steps; it watches the backbone, projection and prediction heads and the
two EMA copies) and without it, alternating, --repeats times each. Target: <= 2%
overhead at the default interval.

Two figures are reported. The direct one times the callback's own per-batch hooks
(where it measures and logs) inside the monitored runs, as a fraction of their step
time: it is exact to the timer's resolution. The end-to-end one compares the mean step
time of the monitored and plain runs; on a shared machine its run-to-run noise is
larger than the effect, so read it as a bound on what noise does. The monitored runs
keep their ``entropy_monitor.csv`` and ``.png`` in --log-dir.

    python benchmarks/studies/monitor_overhead.py
    python benchmarks/studies/monitor_overhead.py --steps 300 --every-n-steps 10 --log-dir runs/monitor
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytorch_lightning as pl
import torch
from lightly.models import ResNetGenerator
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.cifar.data import (
    ImageArrayDataset,
    eval_transform,
    load_dataset,
    train_transform,
)
from benchmarks.cifar.methods import BYOL
from benchmarks.common.tables import markdown_table
from lightly_er.monitoring import EntropyMonitor


class StepTimer(Callback):
    """Wall-clock time of every training batch, hooks and callbacks included."""

    def __init__(self) -> None:
        self.times: List[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.times.append(time.perf_counter() - self._start)


class TimedEntropyMonitor(EntropyMonitor):
    """EntropyMonitor that adds up the seconds spent in its per-batch hooks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = 0.0

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        super().on_train_batch_start(*args, **kwargs)
        self.seconds += time.perf_counter() - start

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        super().on_train_batch_end(*args, **kwargs)
        self.seconds += time.perf_counter() - start


def train(
    steps: int, monitor: Optional[EntropyMonitor], log_dir: Path, seed: int
) -> List[float]:
    """Trains BYOL for the given steps; returns the time of every step."""
    pl.seed_everything(seed, workers=True)
    data = load_dataset("digits")
    ssl = DataLoader(
        ImageArrayDataset(
            data.train_images, data.train_labels, train_transform("byol", 16)
        ),
        batch_size=64,
        shuffle=True,
        drop_last=True,
    )
    knn = DataLoader(
        ImageArrayDataset(data.train_images, data.train_labels, eval_transform(16)),
        batch_size=256,
    )
    resnet = ResNetGenerator("resnet-9", width=0.5)
    backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1))
    model = BYOL(backbone, 256, knn, 10, max_epochs=100, batch_size=64)
    timer = StepTimer()
    callbacks: List[Callback] = [timer] + ([monitor] if monitor is not None else [])
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=CSVLogger(str(log_dir)),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        log_every_n_steps=10,
    )
    trainer.fit(model, ssl)
    return timer.times


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Runs the comparison and prints a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=105)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--every-n-steps", type=int, default=50)
    parser.add_argument("--log-dir", type=Path, default=Path("runs/monitor_overhead"))
    args = parser.parse_args(argv)
    if args.steps <= 5 or args.repeats < 1 or args.every_n_steps < 1:
        parser.error("--steps must be > 5, --repeats and --every-n-steps >= 1")

    plain: List[float] = []
    monitored: List[float] = []
    monitor_seconds = 0.0
    monitored_seconds = 0.0
    for repeat in range(args.repeats):
        # The first 5 steps of each run are warm-up for the end-to-end comparison.
        plain += train(args.steps, None, args.log_dir / "plain", seed=repeat)[5:]
        monitor = TimedEntropyMonitor(
            every_n_steps=args.every_n_steps,
            log_dir=args.log_dir / f"monitored-{repeat}",
        )
        times = train(args.steps, monitor, args.log_dir / "monitored", seed=repeat)
        monitored += times[5:]
        monitor_seconds += monitor.seconds
        monitored_seconds += sum(times)
    base, watched = statistics.fmean(plain), statistics.fmean(monitored)
    direct = monitor_seconds / monitored_seconds
    print(
        f"torch {torch.__version__}, CPU {torch.get_num_threads()} threads, "
        f"{args.repeats} x {args.steps} steps each, every_n_steps={args.every_n_steps}, "
        f"watched: {', '.join(monitor.roles)}"
    )
    print()
    rows = [
        ("time in the monitor's hooks / step time", f"{100 * direct:.3f}%"),
        ("mean step without the monitor (end to end)", f"{1e3 * base:.1f} ms"),
        ("mean step with the monitor (end to end)", f"{1e3 * watched:.1f} ms"),
        (
            "end-to-end difference (noise included)",
            f"{100 * (watched / base - 1):+.2f}%",
        ),
    ]
    print(markdown_table(("Measure", "value"), rows, "lr"), end="")


if __name__ == "__main__":
    main()
