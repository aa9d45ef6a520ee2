"""Benchmark results: one JSON record per run, aggregated into Markdown and CSV tables.

Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run leaves either the old file or the new one, never
half of one. A run's JSON is written only when the run has finished, which is what a
resumed sweep checks to skip it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

TABLE_COLUMNS: Tuple[str, ...] = (
    "Model",
    "Objective",
    "Batch Size",
    "EMA",
    "Epochs",
    "kNN Top-1",
    "Runs",
    "Runtime",
    "Peak GPU Memory",
    "Final Entropy",
)


def write_atomic(path: Path, text: str) -> None:
    """Writes text to path atomically: readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        knn_top1: Best kNN top-1 accuracy over the epochs, in [0, 1].
        knn_top1_per_epoch: kNN top-1 after every epoch.
        entropy_per_epoch: Mean normalised embedding entropy of every epoch, in [0, 1].
        runtime_s: Wall-clock seconds of pretraining and evaluation.
        peak_gpu_memory_gb: Peak GPU memory in GiB, or None on the CPU.
        settings: Every other setting of the run.
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
    knn_top1_per_epoch: List[float] = field(default_factory=list)
    entropy_per_epoch: List[float] = field(default_factory=list)
    runtime_s: float = 0.0
    peak_gpu_memory_gb: Optional[float] = None
    settings: Dict[str, Any] = field(default_factory=dict)

    @property
    def final_entropy(self) -> Optional[float]:
        """The normalised entropy of the last epoch, if it was measured."""
        return self.entropy_per_epoch[-1] if self.entropy_per_epoch else None

    @property
    def run_id(self) -> str:
        """The run's identifier, the stem of its record and of its Lightning folder."""
        return run_id(self.method, self.batch_size, self.ema, self.epochs, self.seed)

    def save(self, path: Path) -> None:
        """Writes the record as JSON, atomically."""
        write_atomic(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunResult:
        """Reads a record written by :meth:`save`.

        Raises:
            ValueError: If the file is not a complete run record.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path} is not a run record: {error}") from error


def run_id(
    method: str, batch_size: int, ema: Optional[float], epochs: int, seed: int
) -> str:
    """A file-name-safe identifier of one run of a sweep."""
    ema_part = "" if ema is None else f"-ema{ema:g}"
    return f"{method}-bs{batch_size}{ema_part}-ep{epochs}-seed{seed}"


def load_results(directory: Path) -> List[RunResult]:
    """Every run record in directory (``runs/*.json``), sorted by file name."""
    return [RunResult.load(p) for p in sorted((directory / "runs").glob("*.json"))]


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def aggregate(results: Iterable[RunResult]) -> List[Dict[str, Any]]:
    """One row per (method, dataset, batch size, EMA, epochs), seeds aggregated.

    Each row holds the display columns of TABLE_COLUMNS plus raw numbers
    (``top1_mean``, ``top1_std``, ``runs``) for plots.
    """
    groups: Dict[Tuple[Any, ...], List[RunResult]] = {}
    for r in results:
        key = (r.model, r.objective, r.dataset, r.batch_size, r.ema, r.epochs)
        groups.setdefault(key, []).append(r)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], k[4] or 0, k[5])):
        runs = groups[key]
        model, objective, dataset, batch_size, ema, epochs = key
        top1_mean, top1_std = _mean_std([r.knn_top1 for r in runs])
        runtime = statistics.fmean(r.runtime_s for r in runs)
        memories = [r.peak_gpu_memory_gb for r in runs if r.peak_gpu_memory_gb]
        entropies = [e for r in runs if (e := r.final_entropy) is not None]
        rows.append(
            {
                "Model": model,
                "Objective": "ER" if objective == "er" else "original",
                "Batch Size": batch_size,
                "EMA": "-" if ema is None else f"{ema:g}",
                "Epochs": epochs,
                "kNN Top-1": f"{top1_mean:.3f} ± {top1_std:.3f}",
                "Runs": len(runs),
                "Runtime": f"{runtime / 60:.1f} Min",
                "Peak GPU Memory": (
                    f"{max(memories):.1f} GByte" if memories else "- (CPU)"
                ),
                "Final Entropy": (
                    f"{statistics.fmean(entropies):.3f}" if entropies else "-"
                ),
                "dataset": dataset,
                "ema": ema,
                "top1_mean": top1_mean,
                "top1_std": top1_std,
            }
        )
    return rows


def markdown_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as a Markdown table with lightly's columns plus the ER ones."""
    lines = [
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|"
        + "|".join(
            "---" if c in ("Model", "Objective") else "---:" for c in TABLE_COLUMNS
        )
        + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as CSV with numeric columns (no ± formatting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "model",
            "objective",
            "dataset",
            "batch_size",
            "ema",
            "epochs",
            "knn_top1_mean",
            "knn_top1_std",
            "runs",
            "runtime",
            "peak_gpu_memory",
            "final_entropy",
        ]
    )
    for row in rows:
        writer.writerow(
            [
                row["Model"],
                row["Objective"],
                row["dataset"],
                row["Batch Size"],
                "" if row["ema"] is None else row["ema"],
                row["Epochs"],
                f"{row['top1_mean']:.6f}",
                f"{row['top1_std']:.6f}",
                row["Runs"],
                row["Runtime"],
                row["Peak GPU Memory"],
                row["Final Entropy"],
            ]
        )
    return buffer.getvalue()


def write_tables(directory: Path, results: Sequence[RunResult]) -> str:
    """Writes results.md and results.csv to directory; returns the Markdown table."""
    rows = aggregate(results)
    table = markdown_table(rows)
    write_atomic(directory / "results.md", table)
    write_atomic(directory / "results.csv", csv_table(rows))
    return table
