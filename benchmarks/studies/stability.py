"""The stability study: the paper's claims tested with pre-registered criteria.

The protocol and the criteria are fixed in ``benchmarks/stability_preregistration.md``
before any run; this module implements them. :func:`study_specs` lists the runs,
:func:`verdicts` applies the criteria to the run records, and :func:`write_report`
writes one table per hypothesis, the plots and the verdicts.

Hypotheses (the paper's claims, Rodriguez-Galvez et al., ICML 2023):

- H1: at the default batch size and EMA, ER is competitive with the original.
- H2: a smaller EMA coefficient hurts ER less than the original (BYOL, DINO).
- H3: a smaller batch hurts ER less than the original (BYOL, DINO, SimCLR).
- H4: BYOL and DINO keep a stable entropy during training.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.cifar.run import RunSpec, SweepConfig, run_specs
from benchmarks.common.records import RunResult, load_results, write_tables
from lightly_er.utils.dist import global_rank
from lightly_er.utils.io import write_atomic

TEACHER_METHODS: Tuple[str, ...] = ("byol", "dino")
BATCH_METHODS: Tuple[str, ...] = ("byol", "dino", "simclr")
DEFAULT_BATCH = 128
DEFAULT_EMA = 0.99
EMAS: Tuple[float, ...] = (0.0, 0.5, 0.9, 0.99)
BATCHES: Tuple[int, ...] = (16, 32, 128)
MARGIN = 0.02
"""H1's non-inferiority margin in kNN top-1 (2 points)."""
STABLE_DEVIATION = 0.2
"""H4: the largest relative deviation of the entropy from its median that is stable."""

STUDY_CONFIG: Dict[str, Any] = dict(
    dataset="fashion-mnist",
    backbone="small",
    image_size=16,
    train_subset=1024,  # protocol v2 (fits 2 hours); v1 had 2048
    test_subset=1000,
    seeds=[0, 1, 2],
    epochs=30,  # by the pre-registered pilot rule (20 unless DINO/BYOL/SimCLR rise)
    num_workers=1,
    knn_k=200,
    knn_t=0.1,
    accelerator="cpu",
    precision="32-true",
    jobs=2,  # two runs at once, one per core of the 2-core machine
)
"""The study's settings (everything else is lightly's CIFAR-10 benchmark)."""


@dataclass
class StudyConfig(SweepConfig):
    """The settings of the stability study; its runs come from :func:`study_specs`."""


def study_config(**overrides: Any) -> StudyConfig:
    """The study's config; methods, batch sizes and EMAs come from the specs."""
    settings = {**STUDY_CONFIG, **overrides}
    return StudyConfig(
        methods=[m for base in BATCH_METHODS for m in (base, f"{base}_er")],
        batch_sizes=list(BATCHES),
        emas=list(EMAS),
        **settings,
    )


def study_specs(
    config: SweepConfig, methods: Optional[Sequence[str]] = None
) -> List[RunSpec]:
    """Every run of the study, in the order they run.

    The EMA sweep (batch 128) for BYOL and DINO, the batch sweep (EMA 0.99) for BYOL,
    DINO and SimCLR; the default setting (batch 128, EMA 0.99) is shared. Original and
    ER runs of one setting and seed are adjacent. ``methods`` restricts the list.
    """
    settings: List[Tuple[str, int, Optional[float]]] = []
    for base in BATCH_METHODS:
        teacher = base in TEACHER_METHODS
        default_ema = DEFAULT_EMA if teacher else None
        settings.append((base, DEFAULT_BATCH, default_ema))
        if teacher:
            settings += [(base, DEFAULT_BATCH, e) for e in EMAS if e != DEFAULT_EMA]
        settings += [(base, b, default_ema) for b in BATCHES if b != DEFAULT_BATCH]
    specs = []
    for seed in config.seeds:
        for base, batch, ema in settings:
            for method in (base, f"{base}_er"):
                if methods is None or method in methods:
                    specs.append(RunSpec(method, batch, ema, seed))
    return specs


# ---------------------------------------------------------------------------------------
# Statistics and verdicts
# ---------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One setting of one method and objective: per-seed values."""

    values: Dict[int, float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        values = list(self.values.values())
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class Comparison:
    """A paired (by seed) difference and its two-standard-error interval."""

    differences: Dict[int, float]

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences.values())

    @property
    def se(self) -> float:
        values = list(self.differences.values())
        if len(values) < 2:
            return math.inf
        return statistics.stdev(values) / math.sqrt(len(values))

    @property
    def low(self) -> float:
        return self.mean - 2 * self.se

    @property
    def high(self) -> float:
        return self.mean + 2 * self.se

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _metric(result: RunResult, metric: str) -> float:
    return result.knn_top1 if metric == "best" else result.knn_top1_final


def cell(
    results: Sequence[RunResult],
    method: str,
    batch: int,
    ema: Optional[float],
    metric: str = "final",
) -> Optional[Cell]:
    """The per-seed kNN top-1 (best or final) of one setting, or None if absent."""
    values = {
        r.seed: _metric(r, metric)
        for r in results
        if r.method == method and r.batch_size == batch and r.ema == ema
    }
    return Cell(values) if values else None


def _paired(a: Cell, b: Cell) -> Comparison:
    seeds = sorted(set(a.values) & set(b.values))
    return Comparison({s: a.values[s] - b.values[s] for s in seeds})


def _teacher_ema(base: str) -> Optional[float]:
    return DEFAULT_EMA if base in TEACHER_METHODS else None


def _setting(axis: str, value: Any, base: str) -> Tuple[int, Optional[float]]:
    """(batch, ema) of a point on the EMA axis (batch 128) or the batch axis."""
    if axis == "ema":
        return DEFAULT_BATCH, float(value)
    return int(value), _teacher_ema(base)


def h1(
    results: Sequence[RunResult], base: str, metric: str = "final"
) -> Tuple[str, Optional[Comparison]]:
    """H1 for one method: ER - original at the default setting; non-inferiority."""
    ema = _teacher_ema(base)
    original = cell(results, base, DEFAULT_BATCH, ema, metric)
    er = cell(results, f"{base}_er", DEFAULT_BATCH, ema, metric)
    if original is None or er is None:
        return "missing", None
    diff = _paired(er, original)
    if diff.n < 2:
        return "inconclusive (fewer than 2 seeds)", diff
    if diff.low > -MARGIN:
        return "supported", diff
    if diff.high < -MARGIN:
        return "not supported", diff
    return "inconclusive", diff


def robustness(
    results: Sequence[RunResult],
    base: str,
    default: Tuple[int, Optional[float]],
    other: Tuple[int, Optional[float]],
    metric: str = "final",
) -> Tuple[str, Optional[Comparison], Optional[Comparison]]:
    """H2/H3 for one method and one smaller setting.

    drop(objective) = kNN(default) - kNN(other), paired by seed; the verdict is on
    D = drop(original) - drop(ER) (positive: ER is hurt less). Supported if D's
    two-SE interval is above 0; not supported if it is below 0 (ER is hurt more);
    inconclusive otherwise, and also when the original is not hurt (its drop's
    interval reaches 0 or below), since then there is nothing to be robust to.

    Returns (verdict, D, drop of the original).
    """
    cells = {}
    for method in (base, f"{base}_er"):
        for key, (batch, ema) in (("default", default), ("other", other)):
            cells[(method, key)] = cell(results, method, batch, ema, metric)
    if any(c is None for c in cells.values()):
        return "missing", None, None
    drop_original = _paired(cells[(base, "default")], cells[(base, "other")])  # type: ignore[arg-type]
    drop_er = _paired(cells[(f"{base}_er", "default")], cells[(f"{base}_er", "other")])  # type: ignore[arg-type]
    seeds = sorted(set(drop_original.differences) & set(drop_er.differences))
    d = Comparison(
        {s: drop_original.differences[s] - drop_er.differences[s] for s in seeds}
    )
    if d.n < 2:
        return "inconclusive (fewer than 2 seeds)", d, drop_original
    if d.low > 0:
        verdict = "supported"
    elif d.high < 0:
        verdict = "not supported (ER is hurt more)"
    else:
        verdict = "inconclusive"
    if drop_original.low <= 0 and verdict != "not supported (ER is hurt more)":
        verdict = "inconclusive (the original is not hurt)"
    return verdict, d, drop_original


def h4(
    results: Sequence[RunResult], base: str, objective: str = "original"
) -> Tuple[str, List[float]]:
    """H4 for one method: is the ER entropy of its output stable over training?

    Per seed at the default setting, the largest relative deviation of the ER
    entropy from its median over epochs 2..E. Supported if it is at most 20% in
    every seed; not supported if it exceeds 20% in a majority of seeds;
    inconclusive otherwise. Returns (verdict, deviation per seed).
    """
    method = base if objective == "original" else f"{base}_er"
    runs = [
        r
        for r in results
        if r.method == method and r.batch_size == DEFAULT_BATCH and r.ema == DEFAULT_EMA
    ]
    if not runs:
        return "missing", []
    deviations = [entropy_deviation(r.er_entropy_per_epoch) for r in runs]
    if len(runs) < 2:
        return "inconclusive (fewer than 2 seeds)", deviations
    unstable = sum(d > STABLE_DEVIATION for d in deviations)
    if unstable == 0:
        return "supported", deviations
    if unstable > len(deviations) / 2:
        return "not supported", deviations
    return "inconclusive", deviations


def entropy_deviation(values: Sequence[float]) -> float:
    """max |h - median| / |median| over epochs 2..E (all epochs if fewer than 3)."""
    tail = [v for v in (values[1:] if len(values) > 2 else values) if math.isfinite(v)]
    if not tail:
        return math.nan
    median = statistics.median(tail)
    if median == 0:
        return math.inf if any(v != 0 for v in tail) else 0.0
    return max(abs(v - median) for v in tail) / abs(median)


def verdicts(results: Sequence[RunResult]) -> List[Tuple[str, str, str, str]]:
    """(hypothesis, case, verdict, evidence) for every pre-registered test."""
    rows: List[Tuple[str, str, str, str]] = []
    for base in BATCH_METHODS:
        verdict, diff = h1(results, base)
        rows.append(
            ("H1", _name(base), verdict, f"ER - original: {diff}" if diff else "-")
        )
    for base in TEACHER_METHODS:
        for ema in EMAS:
            if ema == DEFAULT_EMA:
                continue
            verdict, d, drop = robustness(
                results, base, (DEFAULT_BATCH, DEFAULT_EMA), (DEFAULT_BATCH, ema)
            )
            rows.append(
                (
                    "H2",
                    f"{_name(base)}, EMA 0.99 → {ema:g}",
                    verdict,
                    _robust_text(d, drop),
                )
            )
    for base in BATCH_METHODS:
        for batch in BATCHES:
            if batch == DEFAULT_BATCH:
                continue
            teacher_ema = _teacher_ema(base)
            verdict, d, drop = robustness(
                results, base, (DEFAULT_BATCH, teacher_ema), (batch, teacher_ema)
            )
            rows.append(
                (
                    "H3",
                    f"{_name(base)}, batch 128 → {batch}",
                    verdict,
                    _robust_text(d, drop),
                )
            )
    for base in TEACHER_METHODS:
        verdict, deviations = h4(results, base)
        evidence = ", ".join(f"{d:.1%}" for d in deviations) or "-"
        rows.append(
            (
                "H4",
                f"{_name(base)} (original)",
                verdict,
                f"max deviation per seed: {evidence}",
            )
        )
    return rows


def _robust_text(d: Optional[Comparison], drop: Optional[Comparison]) -> str:
    if d is None or drop is None:
        return "-"
    return f"drop of the original {drop}; drop(original) - drop(ER) {d}"


def _name(base: str) -> str:
    return {"byol": "BYOL", "dino": "DINO", "simclr": "SimCLR", "moco": "MoCo"}[base]


# ---------------------------------------------------------------------------------------
# Tables, plots, report
# ---------------------------------------------------------------------------------------
def setting_table(
    results: Sequence[RunResult],
    axis: str,
    bases: Sequence[str],
) -> str:
    """kNN top-1 best and final (mean ± std over seeds) along one axis, as Markdown."""
    values: Sequence[Any] = EMAS if axis == "ema" else BATCHES
    label = "EMA" if axis == "ema" else "Batch"
    lines = [
        f"| Method | Objective | {label} | kNN top-1 best | kNN top-1 final | Seeds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for base in bases:
        for method in (base, f"{base}_er"):
            for value in values:
                batch, ema = _setting(axis, value, base)
                best = cell(results, method, batch, ema, "best")
                final = cell(results, method, batch, ema, "final")
                if best is None or final is None:
                    continue
                objective = "ER" if method.endswith("_er") else "original"
                lines.append(
                    f"| {_name(base)} | {objective} | {value:g} | {best} | {final} | "
                    f"{len(best.values)} |"
                )
    return "\n".join(lines) + "\n"


def verdict_table(rows: Sequence[Tuple[str, str, str, str]]) -> str:
    lines = [
        "| Hypothesis | Case | Verdict | Evidence (mean [±2 SE], kNN top-1 final) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {h} | {c} | {v} | {e} |" for h, c, v, e in rows]
    return "\n".join(lines) + "\n"


def flattening_table(results: Sequence[RunResult]) -> str:
    """kNN top-1 at the default setting after epochs E-10, E-5 and E (mean over seeds).

    Shows whether the curves have flattened by the last epoch: the gain over the last
    five epochs is the pilot rule's measure.
    """
    lines = [
        "| Method | Objective | kNN top-1 after epoch E-10 → E-5 → E | Gain over the last 5 epochs | Seeds |",
        "|---|---|---|---:|---:|",
    ]
    for base in BATCH_METHODS:
        for method in (base, f"{base}_er"):
            runs = [
                r
                for r in results
                if r.method == method
                and r.batch_size == DEFAULT_BATCH
                and r.ema == _teacher_ema(base)
                and len(r.knn_top1_per_epoch) > 10
            ]
            if not runs:
                continue
            at = [
                statistics.fmean(r.knn_top1_per_epoch[-1 - back] for r in runs)
                for back in (10, 5, 0)
            ]
            objective = "ER" if method.endswith("_er") else "original"
            epochs = len(runs[0].knn_top1_per_epoch)
            lines.append(
                f"| {_name(base)} | {objective} | {epochs - 10}: {at[0]:.3f} → "
                f"{epochs - 5}: {at[1]:.3f} → {epochs}: {at[2]:.3f} | "
                f"{at[2] - at[1]:+.3f} | {len(runs)} |"
            )
    return "\n".join(lines) + "\n"


def entropy_table(results: Sequence[RunResult]) -> str:
    """H4's numbers: first, median and last ER entropy and the collapse score."""
    lines = [
        "| Method | Objective | Setting | ER entropy epoch 1 → median → last | Backbone collapse score last | Seeds |",
        "|---|---|---|---|---:|---:|",
    ]
    for base in TEACHER_METHODS:
        for method in (base, f"{base}_er"):
            for batch, ema in (
                (DEFAULT_BATCH, DEFAULT_EMA),
                (DEFAULT_BATCH, 0.0),
                (16, DEFAULT_EMA),
            ):
                runs = [
                    r
                    for r in results
                    if r.method == method and r.batch_size == batch and r.ema == ema
                ]
                if not runs:
                    continue
                first = statistics.fmean(r.er_entropy_per_epoch[0] for r in runs)
                median = statistics.fmean(
                    statistics.median(r.er_entropy_per_epoch) for r in runs
                )
                last = statistics.fmean(r.er_entropy_per_epoch[-1] for r in runs)
                collapse = statistics.fmean(
                    r.collapse_score_per_epoch[-1] for r in runs
                )
                unit = "nats" if runs[0].er_entropy_kind == "gap" else "of log K"
                objective = "ER" if method.endswith("_er") else "original"
                lines.append(
                    f"| {_name(base)} | {objective} | batch {batch}, EMA {ema:g} | "
                    f"{first:.3f} → {median:.3f} → {last:.3f} {unit} | {collapse:.3f} | {len(runs)} |"
                )
    return "\n".join(lines) + "\n"


def plot_study(results: Sequence[RunResult], directory: Path) -> List[Path]:
    """kNN vs EMA, kNN vs batch (best and final), and per-epoch entropy curves."""
    from benchmarks.cifar.plots import _pyplot, save_figure_atomic

    plt = _pyplot()
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
                        batch, ema = _setting(axis, value, base)
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
                ax.set_title(f"{_name(base)}: kNN top-1 ({metric})", fontsize=9)
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
                    (DEFAULT_BATCH, _teacher_ema(base), "C0"),
                    (DEFAULT_BATCH, 0.0 if base in TEACHER_METHODS else None, "C3"),
                    (16, _teacher_ema(base), "C2"),
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
            ax.set_title(f"{_name(base)}: {label}", fontsize=9)
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


def write_report(results: Sequence[RunResult], directory: Path) -> str:
    """Writes stability_report.md (tables and verdicts) and the plots; returns the text."""
    rows = verdicts(results)
    text = "\n".join(
        [
            "# Stability study: results",
            "",
            "## Verdicts (pre-registered criteria)",
            "",
            verdict_table(rows),
            "## H1 and H2: kNN top-1 against the EMA coefficient (batch 128)",
            "",
            setting_table(results, "ema", TEACHER_METHODS),
            "## H1 and H3: kNN top-1 against the batch size (EMA 0.99)",
            "",
            setting_table(results, "batch", BATCH_METHODS),
            "## H4: the ER entropy of the output during training",
            "",
            entropy_table(results),
            "## Have the curves flattened? (batch 128, EMA 0.99)",
            "",
            flattening_table(results),
        ]
    )
    write_atomic(directory / "stability_report.md", text)
    plot_study(results, directory)
    return text


def run_study(
    config: SweepConfig, methods: Optional[Sequence[str]] = None
) -> List[RunResult]:
    """Runs every unfinished run of the study, then writes tables, plots and verdicts.

    ``methods`` restricts the runs (two processes can share a log directory, each
    with its own methods); the report covers every record in the log directory
    made with the study's dataset and epochs.
    """
    config.validate()
    run_specs(study_specs(config, methods), config)
    if global_rank() != 0:
        return []
    # Records of other protocols in the directory (a pilot at other epochs) stay out.
    results = [
        r
        for r in load_results(config.log_dir)
        if r.dataset == config.dataset and r.epochs == config.epochs
    ]
    if results:
        write_tables(config.log_dir, results)
        print(write_report(results, config.log_dir))
    return results


def with_overrides(config: SweepConfig, **overrides: Any) -> SweepConfig:
    """config with the non-None overrides applied."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


__all__ = [
    "STUDY_CONFIG",
    "StudyConfig",
    "run_study",
    "h1",
    "h4",
    "robustness",
    "study_config",
    "study_specs",
    "verdicts",
    "write_report",
]
