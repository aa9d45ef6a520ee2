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
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from lightly_er.utils.io import write_atomic

TABLE_COLUMNS: Tuple[str, ...] = (
    "Model",
    "Objective",
    "Batch Size",
    "EMA",
    "Epochs",
    "kNN Top-1 (best)",
    "kNN Top-1 (final)",
    "κ",
    "Estimator",
    "Entropy Weight",
    "ER Entropy (final)",
    "Collapse Score (final)",
    "Runs",
    "Runtime",
    "Peak GPU Memory",
)
"""lightly's columns (best kNN as its "KNN Test Accuracy") plus the ER ones."""

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
        kappa: The run's kappa (sphere support), by the one rule; None otherwise.
        estimator: The sphere entropy estimator, or None on a discrete support.
        entropy_weight: The ER loss's entropy weight; None for an original run.
        er_entropy_kind: ``"gap"`` (H - H_min in nats, sphere) or ``"normalized"``
            (H / log K, discrete).
        er_entropy_per_epoch: The ER entropy of the objective output on the
            held-out batch after every epoch.
        output_collapse_score_per_epoch: The collapse score of that output.
        collapse_score_per_epoch: The collapse score of the backbone features.
        rankme_per_epoch: RankMe of the backbone features.
        runtime_s: Wall-clock seconds of pretraining and evaluation.
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
    peak_gpu_memory_gb: Optional[float] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    record_version: int = RECORD_VERSION

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


def _last(values: Sequence[float]) -> Optional[float]:
    return values[-1] if values and math.isfinite(values[-1]) else None


def _fmean_or_none(values: Iterable[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _format(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def aggregate(results: Iterable[RunResult]) -> List[Dict[str, Any]]:
    """One row per (method, dataset, batch size, EMA, epochs), seeds aggregated.

    Each row holds the display columns of TABLE_COLUMNS plus raw numbers
    (``top1_mean``, ``top1_std``, ``final_mean``, ``final_std``, ...) for plots.
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
        final_mean, final_std = _mean_std([r.knn_top1_final for r in runs])
        runtime = statistics.fmean(r.runtime_s for r in runs)
        memories = [r.peak_gpu_memory_gb for r in runs if r.peak_gpu_memory_gb]
        er_entropy = _fmean_or_none(_last(r.er_entropy_per_epoch) for r in runs)
        collapse = _fmean_or_none(_last(r.collapse_score_per_epoch) for r in runs)
        first = runs[0]
        kind = " nats" if first.er_entropy_kind == "gap" else " of log K"
        rows.append(
            {
                "Model": model,
                "Objective": "ER" if objective == "er" else "original",
                "Batch Size": batch_size,
                "EMA": "-" if ema is None else f"{ema:g}",
                "Epochs": epochs,
                "kNN Top-1 (best)": f"{top1_mean:.3f} ± {top1_std:.3f}",
                "kNN Top-1 (final)": f"{final_mean:.3f} ± {final_std:.3f}",
                "κ": "-" if first.kappa is None else f"{first.kappa:g}",
                "Estimator": first.estimator or "-",
                "Entropy Weight": (
                    "-" if first.entropy_weight is None else f"{first.entropy_weight:g}"
                ),
                "ER Entropy (final)": (
                    "-" if er_entropy is None else f"{er_entropy:.3f}{kind}"
                ),
                "Collapse Score (final)": _format(collapse),
                "Runs": len(runs),
                "Runtime": f"{runtime / 60:.1f} Min",
                "Peak GPU Memory": (
                    f"{max(memories):.1f} GByte" if memories else "- (CPU)"
                ),
                "dataset": dataset,
                "ema": ema,
                "objective": objective,
                "top1_mean": top1_mean,
                "top1_std": top1_std,
                "final_mean": final_mean,
                "final_std": final_std,
                "er_entropy": er_entropy,
                "collapse_score": collapse,
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


CSV_COLUMNS: Tuple[str, ...] = (
    "model",
    "objective",
    "dataset",
    "batch_size",
    "ema",
    "epochs",
    "knn_top1_best_mean",
    "knn_top1_best_std",
    "knn_top1_final_mean",
    "knn_top1_final_std",
    "kappa",
    "estimator",
    "entropy_weight",
    "er_entropy_final",
    "collapse_score_final",
    "runs",
    "runtime_min",
    "peak_gpu_memory_gb",
)


def csv_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as CSV with numeric columns (no ± formatting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
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
                f"{row['final_mean']:.6f}",
                f"{row['final_std']:.6f}",
                "" if row["κ"] == "-" else row["κ"],
                "" if row["Estimator"] == "-" else row["Estimator"],
                "" if row["Entropy Weight"] == "-" else row["Entropy Weight"],
                "" if row["er_entropy"] is None else f"{row['er_entropy']:.6f}",
                "" if row["collapse_score"] is None else f"{row['collapse_score']:.6f}",
                row["Runs"],
                row["Runtime"].removesuffix(" Min"),
                "" if "CPU" in row["Peak GPU Memory"] else row["Peak GPU Memory"],
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
