"""Plots of benchmark results: curves per epoch, and original vs ER over a sweep."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from lightly_er.benchmarking.results import RunResult, aggregate


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure_atomic(figure: Any, path: Path) -> None:
    """Saves a matplotlib figure as PNG, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _label(r: RunResult) -> str:
    ema = "" if r.ema is None else f" ema={r.ema:g}"
    objective = " ER" if r.objective == "er" else ""
    return f"{r.model}{objective} bs={r.batch_size}{ema} s={r.seed}"


def plot_curves(results: Sequence[RunResult], path: Path) -> None:
    """kNN top-1 and normalised entropy per epoch, one line per run."""
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    for r in results:
        style = "-" if r.objective == "er" else "--"
        epochs = range(1, len(r.knn_top1_per_epoch) + 1)
        (line,) = top.plot(epochs, r.knn_top1_per_epoch, style, label=_label(r))
        if r.entropy_per_epoch:
            bottom.plot(
                range(1, len(r.entropy_per_epoch) + 1),
                r.entropy_per_epoch,
                style,
                color=line.get_color(),
            )
    top.set_ylabel("kNN top-1")
    bottom.set_ylabel("normalised entropy")
    bottom.set_xlabel("epoch")
    top.set_title("solid: ER objective, dashed: original")
    top.legend(fontsize=6, ncol=2, loc="lower right")
    save_figure_atomic(figure, path)
    plt.close(figure)


Series = Dict[str, Tuple[List[Any], List[float], List[float]]]


def sweep_series(rows: Sequence[Dict[str, Any]], model: str, axis: str) -> Series:
    """The lines of one model's panel: label -> (x values, mean top-1, std top-1).

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
                (r[column], r["top1_mean"], r["top1_std"])
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


def plot_sweep(results: Sequence[RunResult], axis: str, path: Path) -> Optional[Path]:
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
    plt = _pyplot()
    figure, axes = plt.subplots(
        1, len(models), figsize=(3.6 * len(models), 3.4), squeeze=False
    )
    for ax, model in zip(axes[0], models, strict=True):
        for label, (xs, means, stds) in sweep_series(rows, model, axis).items():
            style = "--o" if label.startswith("original") else "-o"
            ax.errorbar(xs, means, yerr=stds, fmt=style, capsize=3, label=label)
        ax.set_title(model)
        ax.set_xlabel("batch size" if axis == "batch_size" else "EMA coefficient")
        if axis == "batch_size":
            ax.set_xscale("log", base=2)
        ax.set_ylabel("kNN top-1")
        ax.legend(fontsize=6)
    figure.tight_layout()
    save_figure_atomic(figure, path)
    plt.close(figure)
    return path
