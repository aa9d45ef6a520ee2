"""Plots of a CIFAR-10 sweep: curves per epoch, and original vs ER over a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.cifar.tables import aggregate
from benchmarks.common.figures import pyplot, save_figure_atomic
from benchmarks.common.records import RunResult


def _label(r: RunResult) -> str:
    ema = "" if r.ema is None else f" ema={r.ema:g}"
    objective = " ER" if r.objective == "er" else ""
    return f"{r.model}{objective} bs={r.batch_size}{ema} s={r.seed}"


CURVES: Tuple[Tuple[str, str], ...] = (
    ("knn_top1_per_epoch", "kNN top-1"),
    ("er_entropy_per_epoch", "ER entropy of the output"),
    ("collapse_score_per_epoch", "backbone collapse score"),
    ("rankme_per_epoch", "backbone RankMe"),
)
"""The per-epoch curves of a run: (RunResult field, label)."""


def plot_curves(results: Sequence[RunResult], path: Path) -> None:
    """Per-epoch kNN top-1 next to the entropy metrics, one column per model.

    Rows: kNN top-1, the ER entropy of the objective output on the held-out batch
    (the gap H - H_min in nats on the sphere, H / log K on a discrete support), and
    the collapse score and RankMe of the backbone features. One line per run; solid
    for the ER objective, dashed for the original.
    """
    plt = pyplot()
    models = sorted({r.model for r in results})
    figure, axes = plt.subplots(
        len(CURVES),
        len(models),
        figsize=(4.2 * len(models), 2.6 * len(CURVES)),
        squeeze=False,
        sharex="col",
    )
    for column, model in enumerate(models):
        runs = [r for r in results if r.model == model]
        for row, (attribute, label) in enumerate(CURVES):
            ax = axes[row][column]
            for r in runs:
                values = getattr(r, attribute)
                style = "-" if r.objective == "er" else "--"
                ax.plot(range(1, len(values) + 1), values, style, label=_label(r), lw=1)
            if row == 0:
                ax.set_title(f"{model} (solid: ER, dashed: original)", fontsize=9)
            if attribute == "er_entropy_per_epoch" and runs:
                unit = "nats" if runs[0].er_entropy_kind == "gap" else "H / log K"
                label = f"{label} ({unit})"
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1][column].set_xlabel("epoch")
        if len(runs) <= 12:
            axes[0][column].legend(fontsize=5, loc="lower right")
    figure.tight_layout()
    save_figure_atomic(figure, path)
    plt.close(figure)


Series = Dict[str, Tuple[List[Any], List[float], List[float]]]


def sweep_series(
    rows: Sequence[Dict[str, Any]], model: str, axis: str, value: str = "top1"
) -> Series:
    """The lines of one model's panel: label -> (x values, mean, std over seeds).

    ``value`` is ``"top1"`` (best kNN top-1) or ``"final"`` (final kNN top-1).

    ``rows`` come from :func:`aggregate`. There is one line per objective and, when
    the model's rows hold several values of the other axis (EMA when sweeping the
    batch size, and the reverse), one per value of it: a point is never an average
    over settings, only over seeds.
    """
    column = "Batch Size" if axis == "batch_size" else "ema"
    other = "ema" if axis == "batch_size" else "Batch Size"
    mine = [r for r in rows if r["Model"] == model and r[column] is not None]
    several = len({r[other] for r in mine}) > 1
    series: Series = {}
    for objective in ("original", "ER"):
        for fixed in sorted({r[other] for r in mine}, key=lambda v: (v is None, v)):
            points = sorted(
                (r[column], r[f"{value}_mean"], r[f"{value}_std"])
                for r in mine
                if r["Objective"] == objective and r[other] == fixed
            )
            if not points:
                continue
            name = "bs" if other == "Batch Size" else "ema"
            label = f"{objective} {name}={fixed:g}" if several else objective
            xs, means, stds = (list(v) for v in zip(*points, strict=True))
            series[label] = (xs, means, stds)
    return series


def plot_sweep(
    results: Sequence[RunResult], axis: str, path: Path, value: str = "top1"
) -> Optional[Path]:
    """kNN top-1 (mean ± std over seeds) against ``"batch_size"`` or ``"ema"``.

    One panel per model, original (dashed) vs ER (solid), one line per value of the
    other axis where it varies (see :func:`sweep_series`). Returns None and writes
    nothing when the sweep has fewer than two values of the axis.

    Raises:
        ValueError: If axis is not ``"batch_size"`` or ``"ema"``.
    """
    if axis not in ("batch_size", "ema"):
        raise ValueError(f"axis must be 'batch_size' or 'ema', got {axis!r}")
    rows = aggregate(results)
    column = "Batch Size" if axis == "batch_size" else "ema"
    rows = [r for r in rows if r[column] is not None]
    if len({r[column] for r in rows}) < 2:
        return None
    models = sorted({r["Model"] for r in rows})
    plt = pyplot()
    figure, axes = plt.subplots(
        1, len(models), figsize=(3.6 * len(models), 3.4), squeeze=False
    )
    for ax, model in zip(axes[0], models, strict=True):
        for label, (xs, means, stds) in sweep_series(rows, model, axis, value).items():
            style = "--o" if label.startswith("original") else "-o"
            ax.errorbar(xs, means, yerr=stds, fmt=style, capsize=3, label=label)
        ax.set_title(model)
        ax.set_xlabel("batch size" if axis == "batch_size" else "EMA coefficient")
        if axis == "batch_size":
            ax.set_xscale("log", base=2)
        ax.set_ylabel("kNN top-1 (best)" if value == "top1" else "kNN top-1 (final)")
        ax.legend(fontsize=6)
    figure.tight_layout()
    save_figure_atomic(figure, path)
    plt.close(figure)
    return path
