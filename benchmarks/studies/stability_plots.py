"""The stability study's plots: kNN top-1 against the EMA and the batch size, and
per-epoch curves of kNN top-1, the ER entropy and the backbone collapse score."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from benchmarks.common.figures import pyplot, save_figure_atomic
from benchmarks.common.records import RunResult
from benchmarks.studies.stability_report import (
    BATCH_METHODS,
    BATCHES,
    DEFAULT_BATCH,
    EMAS,
    TEACHER_METHODS,
    cell,
    display_name,
    setting_of,
    teacher_ema,
)


def plot_study(results: Sequence[RunResult], directory: Path) -> List[Path]:
    """kNN vs EMA, kNN vs batch (best and final), and per-epoch entropy curves."""
    plt = pyplot()
    paths = []
    for axis, bases, values in (
        ("ema", TEACHER_METHODS, EMAS),
        ("batch", BATCH_METHODS, BATCHES),
    ):
        figure, axes = plt.subplots(
            2, len(bases), figsize=(4 * len(bases), 6.4), squeeze=False
        )
        for column, base in enumerate(bases):
            for row, metric in enumerate(("best", "final")):
                ax = axes[row][column]
                for method, style in ((base, "--o"), (f"{base}_er", "-o")):
                    xs, means, stds = [], [], []
                    for value in values:
                        batch, ema = setting_of(axis, value, base)
                        c = cell(results, method, batch, ema, metric)
                        if c is not None:
                            xs.append(value)
                            means.append(c.mean)
                            stds.append(c.std)
                    label = "ER" if method.endswith("_er") else "original"
                    if xs:
                        ax.errorbar(
                            xs, means, yerr=stds, fmt=style, capsize=3, label=label
                        )
                if axis == "batch":
                    ax.set_xscale("log", base=2)
                ax.set_title(f"{display_name(base)}: kNN top-1 ({metric})", fontsize=9)
                ax.set_xlabel("EMA coefficient" if axis == "ema" else "batch size")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
        figure.tight_layout()
        path = directory / f"stability_knn_vs_{axis}.png"
        save_figure_atomic(figure, path)
        plt.close(figure)
        paths.append(path)
    figure, axes = plt.subplots(
        3, len(TEACHER_METHODS) + 1, figsize=(13, 8.5), squeeze=False
    )
    for column, base in enumerate((*TEACHER_METHODS, "simclr")):
        for row, (attribute, label) in enumerate(
            (
                ("knn_top1_per_epoch", "kNN top-1"),
                ("er_entropy_per_epoch", "ER entropy of the output"),
                ("collapse_score_per_epoch", "backbone collapse score"),
            )
        ):
            ax = axes[row][column]
            for method, style in ((base, "--"), (f"{base}_er", "-")):
                for batch, ema, colour in (
                    (DEFAULT_BATCH, teacher_ema(base), "C0"),
                    (DEFAULT_BATCH, 0.0 if base in TEACHER_METHODS else None, "C3"),
                    (16, teacher_ema(base), "C2"),
                ):
                    if (
                        base not in TEACHER_METHODS
                        and ema is None
                        and batch == DEFAULT_BATCH
                        and colour == "C3"
                    ):
                        continue
                    runs = [
                        r
                        for r in results
                        if r.method == method and r.batch_size == batch and r.ema == ema
                    ]
                    for i, r in enumerate(runs):
                        values = getattr(r, attribute)
                        name = (
                            f"{'ER' if method.endswith('_er') else 'orig.'} bs{batch}"
                            + (f" ema{ema:g}" if ema is not None else "")
                        )
                        ax.plot(
                            range(1, len(values) + 1),
                            values,
                            style,
                            color=colour,
                            lw=0.9,
                            alpha=0.8,
                            label=name if i == 0 else None,
                        )
            ax.set_title(f"{display_name(base)}: {label}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == 2:
                ax.set_xlabel("epoch")
        if axes[0][column].get_legend_handles_labels()[0]:
            axes[0][column].legend(fontsize=6)
    figure.suptitle(
        "dashed: original, solid: ER; blue: batch 128 EMA 0.99, red: EMA 0, green: batch 16",
        fontsize=9,
    )
    figure.tight_layout()
    path = directory / "stability_curves.png"
    save_figure_atomic(figure, path)
    plt.close(figure)
    paths.append(path)
    return paths
