"""Plots of benchmark results: curves per epoch, and original vs ER over a sweep."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

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


def plot_sweep(results: Sequence[RunResult], axis: str, path: Path) -> Optional[Path]:
    """kNN top-1 (mean ± std over seeds) against ``"batch_size"`` or ``"ema"``.

    One panel per model, original (dashed) vs ER (solid). Returns None and writes
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
        1, len(models), figsize=(3.2 * len(models), 3.2), squeeze=False
    )
    for ax, model in zip(axes[0], models, strict=True):
        for objective, style in (("original", "--o"), ("ER", "-o")):
            series: Dict[Any, List[Dict[str, Any]]] = {}
            for r in rows:
                if r["Model"] == model and r["Objective"] == objective:
                    series.setdefault(r[column], []).append(r)
            if not series:
                continue
            xs = sorted(series)
            # Several rows share an x when the other axis varies: average them.
            means = [
                sum(r["top1_mean"] for r in series[x]) / len(series[x]) for x in xs
            ]
            stds = [max(r["top1_std"] for r in series[x]) for x in xs]
            ax.errorbar(xs, means, yerr=stds, fmt=style, capsize=3, label=objective)
        ax.set_title(model)
        ax.set_xlabel("batch size" if axis == "batch_size" else "EMA coefficient")
        if axis == "batch_size":
            ax.set_xscale("log", base=2)
        ax.set_ylabel("kNN top-1")
        ax.legend(fontsize=7)
    save_figure_atomic(figure, path)
    plt.close(figure)
    return path
