"""What a run keeps across an interruption besides its weights: its clock and its logs.

A run resumed from its ``last.ckpt`` is one run trained by several processes.
:class:`RunClock` keeps the wall-clock seconds of every process in the checkpoint, so
the record's runtime is their sum, and tells a resumed run from one whose checkpoint
was already complete (its record is then rebuilt from the checkpoint, not trained).
:class:`AppendingCSVLogger` is Lightning's CSV logger without the deletion of an
earlier ``metrics.csv``: a resumed run appends to it, after dropping the rows of the
epochs it trains again; :class:`RunClock` writes the log out with every checkpoint,
so what a killed process logged up to its checkpoint is on disk.
"""

from __future__ import annotations

import csv
import io
import os
import time
from typing import Any, Dict, List, Optional

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from lightly_er.utils.io import write_atomic


class RunClock(Callback):
    """Wall-clock seconds of a run, summed over the processes that trained it.

    :meth:`start` before ``trainer.fit``; the seconds since then are saved with every
    checkpoint (with those of earlier processes), so a process killed after an
    epoch passes its time on to the one that resumes. Time after the last checkpoint
    of a killed process is lost with the work it did.

    Attributes:
        earlier: Seconds of each earlier process, read from the checkpoint.
        resumed: Whether a checkpoint was loaded.
        epochs_here: Training epochs begun in this process.
    """

    def __init__(self) -> None:
        self.earlier: List[float] = []
        self.resumed = False
        self.epochs_here = 0
        self._start: Optional[float] = None

    def start(self) -> None:
        """Starts this process's share of the clock."""
        self._start = time.perf_counter()

    def parts(self) -> List[float]:
        """Seconds of every process, this one's (so far) last."""
        here = 0.0 if self._start is None else time.perf_counter() - self._start
        return [*self.earlier, here]

    def total(self) -> float:
        """The run's seconds so far, all processes."""
        return sum(self.parts())

    @property
    def rebuilt(self) -> bool:
        """A checkpoint was loaded and nothing was left to train."""
        return self.resumed and self.epochs_here == 0

    def on_train_epoch_start(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        self.epochs_here += 1

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: Dict[str, Any]
    ) -> None:
        # The log up to the checkpoint reaches the disk with it: a process killed
        # later (kill -9 skips Lightning's last flush) loses no logged epoch.
        for logger in trainer.loggers:
            logger.save()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The epochs after the checkpoint are trained again: their rows go.
        for logger in trainer.loggers:
            if isinstance(logger, AppendingCSVLogger):
                logger.drop_epochs_from(trainer.current_epoch)

    def state_dict(self) -> Dict[str, Any]:
        return {"parts_s": self.parts()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.earlier = [float(s) for s in state_dict.get("parts_s", [])]
        self.resumed = True


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, appending to an existing ``metrics.csv``."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        header = _read_rows(self.metrics_file_path)[0]
        self.metrics_keys = list(header)

    def _check_log_dir_exists(self) -> None:
        """Keeps what is there (Lightning's deletes the old metrics.csv)."""


class AppendingCSVLogger(CSVLogger):
    """Lightning's CSVLogger whose ``metrics.csv`` survives a resume.

    Args:
        As ``pytorch_lightning.loggers.CSVLogger``.
    """

    @property
    def experiment(self) -> _AppendingWriter:
        if not isinstance(self._experiment, _AppendingWriter):
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment

    def drop_epochs_from(self, epoch: int) -> None:
        """Removes the rows of ``epoch`` and later (rows without an epoch stay)."""
        path = os.path.join(self.log_dir, ExperimentWriter.NAME_METRICS_FILE)
        header, rows = _read_rows(path)
        keep = [row for row in rows if not _epoch_at_least(row.get("epoch"), epoch)]
        if len(keep) == len(rows):
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(keep)
        write_atomic(path, out.getvalue())


def _read_rows(path: str) -> tuple[List[str], List[Dict[str, str]]]:
    if not os.path.isfile(path):
        return [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _epoch_at_least(value: Optional[str], epoch: int) -> bool:
    try:
        return value is not None and value != "" and int(float(value)) >= epoch
    except ValueError:
        return False


__all__ = ["AppendingCSVLogger", "RunClock"]
