"""The entropy monitor's files: its history as CSV and as a plot, written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

from lightly_er.utils.io import write_atomic

HistoryRow = Tuple[int, str, str, float]
"""(global step, module name, metric, value)."""

CSV_COLUMNS: Tuple[str, ...] = ("step", "module", "metric", "value")
PLOTTED: Tuple[Tuple[str, str], ...] = (
    ("dimension_score", "dimension score"),
    ("normalized_mutual_information", "I(X; C) / log K"),
    ("entropy_gap", "entropy gap (nats)"),
    ("normalized_entropy", "normalized entropy"),
    ("collapse_score", "collapse score"),
    ("effective_rank", "effective rank"),
)


def history_csv(history: Iterable[HistoryRow]) -> str:
    """The history as CSV text (exact float reprs)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for step, module, metric, value in history:
        writer.writerow((step, module, metric, repr(value)))
    return buffer.getvalue()


def write_csv(path: Path, history: Iterable[HistoryRow]) -> None:
    """Writes the history to path as CSV, atomically."""
    write_atomic(path, history_csv(history))


def logger_folders(loggers: Iterable[Any]) -> List[Path]:
    """The distinct local folders of the loggers, in order (where the CSV/PNG go).

    A logger's ``log_dir`` (TensorBoard's and CSV's version folder), else its
    ``save_dir``; a logger with neither (an online service) has no folder.
    """
    folders: List[Path] = []
    for logger in loggers:
        folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if folder is not None and Path(folder) not in folders:
            folders.append(Path(folder))
    return folders


def write_png(
    path: Path,
    history: Sequence[HistoryRow],
    alarm_steps: Sequence[Tuple[str, int]] = (),
    thresholds: Optional[Mapping[str, float]] = None,
) -> bool:
    """Plots every module's alarm metric, entropy, collapse score and rank over steps.

    One row per module that has a metric of :data:`PLOTTED`; the columns are the
    metrics of :data:`PLOTTED` the history has. Alarms are red dashed lines, the
    thresholds (metric -> value) gray lines.

    Returns:
        Whether a plot was written (not when the history has nothing to plot).

    Raises:
        ModuleNotFoundError: If matplotlib, an optional dependency, is missing.
    """
    try:
        # Optional, as in lightly: imported only when a plot is written.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"writing {path.name} needs matplotlib, an optional dependency: "
            "pip install matplotlib"
        ) from error

    plotted = {metric for metric, _ in PLOTTED}
    modules = list(dict.fromkeys(module for _, module, k, _ in history if k in plotted))
    panels = [
        (metric, label)
        for metric, label in PLOTTED
        if any(m == metric for _, _, m, _ in history)
    ]
    if not modules or not panels:
        return False
    figure = Figure(
        figsize=(3.6 * len(panels), 2.8 * len(modules)), layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(modules), len(panels), squeeze=False)
    for row, name in enumerate(modules):
        for column, (metric, label) in enumerate(panels):
            ax = axes[row][column]
            points = [(s, v) for s, m, k, v in history if m == name and k == metric]
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker=".")
            if thresholds is not None and metric in thresholds:
                ax.axhline(thresholds[metric], color="gray", linewidth=0.8)
            for module, step in alarm_steps:
                if module == name:
                    ax.axvline(step, color="red", linestyle="--")
            ax.set_title(f"{name}: {label}", fontsize=9)
            ax.set_xlabel("global step")
            ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_atomic(path, buffer.getvalue())
    return True


def write_pngs(
    paths: Sequence[Path],
    history: Sequence[HistoryRow],
    alarm_steps: Sequence[Tuple[str, int]] = (),
    thresholds: Optional[Mapping[str, float]] = None,
) -> Tuple[List[Path], Optional[str]]:
    """Writes the plot to every path (see write_png), if there is anything to plot.

    Returns:
        The paths written, and why none was where matplotlib is missing (else
        None): the plot is a convenience, the CSV has the data.
    """
    written: List[Path] = []
    for path in paths:
        try:
            if write_png(path, history, alarm_steps, thresholds):
                written.append(path)
        except ModuleNotFoundError as error:
            return written, str(error)
    return written, None


def wrote_message(paths: Sequence[Path]) -> str:
    """The one line that names the files the monitor wrote, with their paths."""
    return "EntropyMonitor wrote " + ", ".join(str(path) for path in paths)


__all__ = [
    "HistoryRow",
    "history_csv",
    "logger_folders",
    "write_csv",
    "write_png",
    "write_pngs",
    "wrote_message",
]
