"""The run record of the benchmarks and studies: one JSON file per finished run.

Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run leaves either the old file or the new one, never
half of one. A run's JSON is written only when the run has finished, which is what a
resumed sweep checks to skip it. The format is that of record version 2, which the
records of earlier releases already on disk use (a test loads one written then);
the fields added since have defaults, so those records still load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

RECORD_VERSION = 2


@dataclass
class RunResult:
    """Settings and metrics of one finished pretraining run.

    Attributes:
        method: Method name, e.g. ``"byol_er"``.
        model: Display name of the method, e.g. ``"BYOL"``.
        objective: ``"original"`` or ``"er"``.
        dataset: Dataset name.
        batch_size: Batch size.
        ema: Teacher EMA coefficient, or None for methods without a teacher.
        epochs: Epochs trained.
        seed: Random seed.
        knn_top1: Best kNN top-1 accuracy over the epochs, in [0, 1] (lightly's).
        knn_top1_final: kNN top-1 after the last epoch.
        knn_top1_per_epoch: kNN top-1 after every epoch.
        kappa: The kappa at which the run's loss is measured (sphere support; from
            the loss, :meth:`lightly_er.monitoring.EntropyMeter.for_loss`); None on
            a discrete support.
        estimator: The sphere entropy estimator, or None on a discrete support.
        entropy_weight: The ER loss's entropy weight; None for an original run.
        er_entropy_kind: ``"gap"`` (H - H_min in nats, sphere) or ``"normalized"``
            (H / log K, discrete).
        er_entropy_per_epoch: The ER entropy of the objective output on the
            held-out batch after every epoch.
        output_collapse_score_per_epoch: The collapse score of that output.
        collapse_score_per_epoch: The collapse score of the backbone features.
        rankme_per_epoch: RankMe of the backbone features.
        runtime_s: Wall-clock seconds of pretraining and evaluation, summed over
            the processes that trained the run (it resumes after an interruption).
        runtime_parts_s: The seconds of each of those processes, in order (a
            killed process's up to its last checkpoint); empty in older records.
        rebuilt_from_checkpoint: True when the process that wrote the record
            trained nothing: the run's ``last.ckpt`` was complete (its record had
            been lost), and the record was rebuilt from it.
        peak_gpu_memory_gb: Peak GPU memory in GiB, or None on the CPU.
        settings: Every other setting of the run.
        record_version: The record format (records of another version are rerun).
    """

    method: str
    model: str
    objective: str
    dataset: str
    batch_size: int
    ema: Optional[float]
    epochs: int
    seed: int
    knn_top1: float
    knn_top1_final: float
    knn_top1_per_epoch: List[float] = field(default_factory=list)
    kappa: Optional[float] = None
    estimator: Optional[str] = None
    entropy_weight: Optional[float] = None
    er_entropy_kind: str = "gap"
    er_entropy_per_epoch: List[float] = field(default_factory=list)
    output_collapse_score_per_epoch: List[float] = field(default_factory=list)
    collapse_score_per_epoch: List[float] = field(default_factory=list)
    rankme_per_epoch: List[float] = field(default_factory=list)
    runtime_s: float = 0.0
    runtime_parts_s: List[float] = field(default_factory=list)
    rebuilt_from_checkpoint: bool = False
    peak_gpu_memory_gb: Optional[float] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    record_version: int = RECORD_VERSION

    @property
    def run_id(self) -> str:
        """The run's identifier, the stem of its record and of its Lightning folder."""
        return run_id(self.method, self.batch_size, self.ema, self.epochs, self.seed)

    def save(self, path: Path) -> None:
        """Writes the record as JSON, atomically."""
        save_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> RunResult:
        """Reads a record written by :meth:`save`.

        Raises:
            ValueError: If the file is not a complete run record of this version.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            result = cls(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path} is not a run record: {error}") from error
        if result.record_version != RECORD_VERSION:
            raise ValueError(
                f"{path} is a run record of version {result.record_version}, not "
                f"{RECORD_VERSION}"
            )
        return result


def save_json(path: Path, data: Dict[str, Any]) -> None:
    """Writes data as indented JSON with sorted keys, atomically: every record and
    results file of the benchmarks."""
    from lightly_er.utils.io import write_atomic  # loads torch: not at --help

    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def run_id(
    method: str, batch_size: int, ema: Optional[float], epochs: int, seed: int
) -> str:
    """A file-name-safe identifier of one run of a sweep."""
    ema_part = "" if ema is None else f"-ema{ema:g}"
    return f"{method}-bs{batch_size}{ema_part}-ep{epochs}-seed{seed}"


def load_results(directory: Path) -> List[RunResult]:
    """Every run record in directory (``runs/*.json``), sorted by file name."""
    return [RunResult.load(p) for p in sorted((directory / "runs").glob("*.json"))]
