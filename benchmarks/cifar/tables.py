"""The results table of a CIFAR-10 sweep: run records aggregated over seeds.

One row per (method, dataset, batch size, EMA, epochs), written as ``results.md``
(lightly's columns plus the ER ones and the code commit of the runs) and
``results.csv`` (numbers, no ± formatting).
A row of one seed has no spread: its accuracy shows without ± and its CSV standard
deviation is empty.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from benchmarks.common.code import code_summary
from benchmarks.common.records import RunResult
from benchmarks.common.tables import csv_table as write_csv
from benchmarks.common.tables import markdown_table as write_markdown
from lightly_er.utils.io import write_atomic

TABLE_COLUMNS: Tuple[str, ...] = (
    "Model",
    "Objective",
    "ER Variant",
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
    "Code",
)
"""lightly's columns (best kNN as its "KNN Test Accuracy") plus the ER ones (with
which variant of the ER loss the row runs, read from the run's loss), and the code
commit of the row's runs."""


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _last(values: Sequence[float]) -> Optional[float]:
    return values[-1] if values and math.isfinite(values[-1]) else None


def _fmean_or_none(values: Iterable[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _mean_pm(mean: float, std: float, runs: int) -> str:
    """``0.750 ± 0.071`` over several seeds; ``0.750`` for one (no spread to show)."""
    return f"{mean:.3f} ± {std:.3f}" if runs > 1 else f"{mean:.3f}"


def _format(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _code_cell(runs: Sequence[RunResult]) -> str:
    """The commit of the runs (``code_summary`` when they differ): which code made them."""
    labels = {"unknown" if r.code is None else r.code.describe() for r in runs}
    if len(labels) == 1:
        return labels.pop()
    return code_summary([r.code for r in runs])


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
                # Records written before the column existed do not say.
                "ER Variant": first.settings.get("er_variant", "not recorded"),
                "Batch Size": batch_size,
                "EMA": "-" if ema is None else f"{ema:g}",
                "Epochs": epochs,
                "kNN Top-1 (best)": _mean_pm(top1_mean, top1_std, len(runs)),
                "kNN Top-1 (final)": _mean_pm(final_mean, final_std, len(runs)),
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
                "Code": _code_cell(runs),
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
    # Model, objective and ER variant are text; every other column is a number.
    align = "lll" + "r" * (len(TABLE_COLUMNS) - 3)
    return write_markdown(
        TABLE_COLUMNS, ([row[c] for c in TABLE_COLUMNS] for row in rows), align
    )


CSV_COLUMNS: Tuple[str, ...] = (
    "model",
    "objective",
    "er_variant",
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
    "code",
)


def csv_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as CSV with numeric columns (no ± formatting)."""
    return write_csv(
        CSV_COLUMNS,
        (
            [
                row["Model"],
                row["Objective"],
                "" if row["ER Variant"] == "-" else row["ER Variant"],
                row["dataset"],
                row["Batch Size"],
                "" if row["ema"] is None else row["ema"],
                row["Epochs"],
                f"{row['top1_mean']:.6f}",
                f"{row['top1_std']:.6f}" if row["Runs"] > 1 else "",
                f"{row['final_mean']:.6f}",
                f"{row['final_std']:.6f}" if row["Runs"] > 1 else "",
                "" if row["κ"] == "-" else row["κ"],
                "" if row["Estimator"] == "-" else row["Estimator"],
                "" if row["Entropy Weight"] == "-" else row["Entropy Weight"],
                "" if row["er_entropy"] is None else f"{row['er_entropy']:.6f}",
                "" if row["collapse_score"] is None else f"{row['collapse_score']:.6f}",
                row["Runs"],
                row["Runtime"].removesuffix(" Min"),
                "" if "CPU" in row["Peak GPU Memory"] else row["Peak GPU Memory"],
                row["Code"],
            ]
            for row in rows
        ),
    )


def write_tables(directory: Path, results: Sequence[RunResult]) -> str:
    """Writes results.md and results.csv to directory; returns the Markdown table."""
    rows = aggregate(results)
    table = markdown_table(rows)
    write_atomic(directory / "results.md", table)
    write_atomic(directory / "results.csv", csv_table(rows))
    return table
