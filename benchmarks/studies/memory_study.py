"""The entropy memory at small batches, and the estimators for BYOL-ER.

The protocol and the criteria are fixed in
``benchmarks/studies/memory_preregistration.md`` before any run. Part 1 trains BYOL
and DINO at batch 16 and 32 for a fixed number of steps in three arms (lightly's
objective, ER, ER with an entropy memory of 256 rows); part 2 trains BYOL-ER at the
default setting with each sphere entropy estimator. Every run is a run of
``benchmarks/cifar10.py``'s sweep machinery; :func:`verdicts` applies the
pre-registered criteria (paired differences, t-intervals with n - 1 degrees of
freedom at Holm's level in each family of comparisons).

    python benchmarks/studies/memory_study.py --log-dir runs/memory_study --jobs 2

The command skips finished runs and resumes an interrupted one from its checkpoint.
A run that fails twice is not evaluable (the pre-registration's rule):
``--report-only`` then writes the report from the records there are.

Fashion-MNIST is read from ``--data-dir`` or ``$LIGHTLY_ER_DATA_DIR/fashion-mnist``.
The options after ``--jobs`` shrink the study for a smoke test; the pre-registered
study uses their defaults.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    # Run as a script from a checkout: make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.cifar.config import RunSpec, SweepConfig
from benchmarks.cifar.sweep import run_specs
from benchmarks.common.cli import OneLineErrorParser, quiet_lightning, run_command
from benchmarks.common.records import RunResult, load_results
from benchmarks.common.tables import markdown_header, markdown_row
from lightly_er.utils import global_rank, write_atomic

PROG = "benchmarks/studies/memory_study.py"

STEPS = 1920
"""Optimiser steps of every part-1 run (30 epochs of 1,024 images at batch 16)."""
BATCHES: Tuple[int, ...] = (16, 32)
MEMORY_ROWS = 256
METHODS: Tuple[str, ...] = ("byol", "dino")
ARMS: Tuple[str, ...] = ("original", "er", "er_memory")
ESTIMATORS: Tuple[str, ...] = ("plugin", "joe", "renyi2", "knn", "logdet")
DEFAULT_BATCH = 128
DEFAULT_EPOCHS = 30
EMA = 0.99
ALPHA = 0.05

STUDY_CONFIG: Dict[str, Any] = dict(
    dataset="fashion-mnist",
    backbone="small",
    image_size=16,
    train_subset=1024,
    test_subset=1000,
    seeds=[0, 1, 2],
    emas=[EMA],
    num_workers=1,
    knn_k=200,
    knn_t=0.1,
    accelerator="cpu",
    precision="32-true",
    progress_bar=False,
)
"""The stability study's protocol v2 settings (everything else is lightly's)."""


@dataclass
class ArmConfig(SweepConfig):
    """A sweep config of one arm: ``er_extra`` goes to the ER loss of its methods.

    Attributes:
        arm: The arm's name (its runs live in ``log_dir``, one folder per arm).
        er_extra: Further keyword arguments of the ER loss (the memory).
    """

    arm: str = ""
    er_extra: Dict[str, Any] = field(default_factory=dict)

    def er_kwargs(self, method: str) -> Dict[str, Any]:
        kwargs = super().er_kwargs(method)
        if method.endswith("_er"):
            kwargs.update(self.er_extra)
        return kwargs


def epochs_for(steps: int, batch_size: int, train_subset: int) -> int:
    """The epochs that make ``steps`` optimiser steps (drop_last loaders).

    Raises:
        ValueError: If the steps are not a whole number of epochs.
    """
    per_epoch = train_subset // batch_size
    if per_epoch < 1 or steps % per_epoch:
        raise ValueError(
            f"{steps} steps are not a whole number of epochs of {per_epoch} steps "
            f"(batch {batch_size}, {train_subset} images)"
        )
    return steps // per_epoch


def arm_methods(arm: str) -> List[str]:
    """The method names of a part-1 arm."""
    suffix = "" if arm == "original" else "_er"
    return [m + suffix for m in METHODS]


def plan(
    log_dir: Path,
    steps: int = STEPS,
    parts: Sequence[int] = (1, 2),
    default_epochs: int = DEFAULT_EPOCHS,
    **overrides: Any,
) -> List[Tuple[ArmConfig, List[RunSpec]]]:
    """Every (config, runs) of the study, in the order they run.

    Args:
        log_dir: The study's folder; each arm writes under ``log_dir / <arm>``.
        steps: Optimiser steps of a part-1 run.
        parts: Which parts to plan.
        default_epochs: Epochs of a part-2 run.
        overrides: SweepConfig settings over :data:`STUDY_CONFIG` (a smoke test's).
    """
    settings = {"jobs": os.cpu_count() or 1, **STUDY_CONFIG, **overrides}
    subset = int(settings["train_subset"])
    out: List[Tuple[ArmConfig, List[RunSpec]]] = []
    if 1 in parts:
        for batch in BATCHES:
            for arm in ARMS:
                extra = (
                    {"entropy_memory_size": MEMORY_ROWS} if arm == "er_memory" else {}
                )
                config = ArmConfig(
                    methods=arm_methods(arm),
                    batch_sizes=[batch],
                    epochs=epochs_for(steps, batch, subset),
                    log_dir=log_dir / arm,
                    arm=arm,
                    er_extra=extra,
                    **settings,
                )
                out.append((config, _specs(config, batch)))
    if 2 in parts:
        for estimator in ("original",) + ESTIMATORS:
            original = estimator == "original"
            config = ArmConfig(
                methods=["byol" if original else "byol_er"],
                batch_sizes=[DEFAULT_BATCH],
                epochs=default_epochs,
                log_dir=log_dir / f"estimator_{estimator}",
                arm=f"estimator_{estimator}",
                estimator="plugin" if original else estimator,
                **settings,
            )
            out.append((config, _specs(config, DEFAULT_BATCH)))
    return out


def _specs(config: ArmConfig, batch: int) -> List[RunSpec]:
    return [
        RunSpec(method, batch, EMA, seed)
        for seed in config.seeds
        for method in config.methods
    ]


# -- verdicts --------------------------------------------------------------------------
BETTER = "better"
WORSE = "worse"
INCONCLUSIVE = "inconclusive"
NOT_EVALUABLE = "not evaluable"


@dataclass(frozen=True)
class Verdict:
    """One pre-registered comparison: its family, interval, level and verdict."""

    family: str
    name: str
    verdict: str
    mean: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    level: float = float("nan")
    p_value: float = float("nan")
    n: int = 0


def family_verdicts(
    family: str,
    differences: Mapping[str, Optional[Mapping[int, float]]],
    alpha: float = ALPHA,
) -> List[Verdict]:
    """Holm's procedure over one family of paired differences.

    Each comparison's t-interval (n - 1 degrees of freedom) is read at its Holm
    level: better if above 0, worse if below 0, inconclusive otherwise. A
    comparison without data (None) or with fewer than 2 seeds (no standard error:
    a smoke test's single seed) is not evaluable and leaves the family.
    """
    from benchmarks.studies import stats

    names = [n for n, d in differences.items() if d is not None and len(d) >= 2]
    moments = {n: stats.mean_se(list(differences[n].values())) for n in names}  # type: ignore[union-attr]
    sizes = {n: len(differences[n]) for n in names}  # type: ignore[arg-type]
    p_values = [stats.p_value(*moments[n], sizes[n]) for n in names]
    levels = stats.holm_confidences(p_values, alpha) if names else []
    out = []
    for name in differences:
        if name not in names:
            out.append(Verdict(family, name, NOT_EVALUABLE))
            continue
        i = names.index(name)
        mean, se = moments[name]
        interval = stats.interval_from_se(mean, se, sizes[name], levels[i])
        verdict = INCONCLUSIVE
        if interval.low > 0:
            verdict = BETTER
        elif interval.high < 0:
            verdict = WORSE
        out.append(
            Verdict(
                family,
                name,
                verdict,
                mean,
                interval.low,
                interval.high,
                levels[i],
                p_values[i],
                sizes[name],
            )
        )
    return out


Top1 = Dict[Tuple[str, str, int], Dict[int, float]]
"""(arm, method, batch) -> {seed: final kNN top-1}."""


def collect(results: Mapping[str, Sequence[RunResult]]) -> Top1:
    """The final kNN top-1 of every run, by arm, method and batch size."""
    out: Top1 = {}
    for arm, runs in results.items():
        for r in runs:
            out.setdefault((arm, r.method, r.batch_size), {})[r.seed] = r.knn_top1_final
    return out


def verdicts(top1: Top1, seeds: Sequence[int] = (0, 1, 2)) -> List[Verdict]:
    """The three pre-registered families (F1, F2, F3) from the final kNN top-1."""

    def arm_of(arm: str, method: str, batch: int) -> Optional[Dict[int, float]]:
        values = top1.get((arm, method, batch))
        if values is None or set(values) != set(seeds):
            return None  # a missing run: every comparison that needs it
        return values

    def paired(
        a: Optional[Dict[int, float]], b: Optional[Dict[int, float]]
    ) -> Optional[Dict[int, float]]:
        if a is None or b is None:
            return None
        return {s: a[s] - b[s] for s in sorted(a)}

    f1: Dict[str, Optional[Dict[int, float]]] = {}
    f2: Dict[str, Optional[Dict[int, float]]] = {}
    for method in METHODS:
        for batch in BATCHES:
            memory = arm_of("er_memory", f"{method}_er", batch)
            name = f"{method} batch {batch}"
            f1[name] = paired(memory, arm_of("er", f"{method}_er", batch))
            f2[name] = paired(memory, arm_of("original", method, batch))
    f3 = {
        e: paired(
            arm_of(f"estimator_{e}", "byol_er", DEFAULT_BATCH),
            arm_of("estimator_plugin", "byol_er", DEFAULT_BATCH),
        )
        for e in ESTIMATORS[1:]
    }
    return (
        family_verdicts("F1 memory - ER", f1)
        + family_verdicts("F2 memory - original", f2)
        + family_verdicts("F3 estimator - plugin", f3)
    )


# -- report ----------------------------------------------------------------------------
def _mean(values: Mapping[int, float]) -> str:
    if not values:
        return "-"
    numbers = list(values.values())
    return f"{sum(numbers) / len(numbers):.3f} ({len(numbers)})"


def report(top1: Top1, found: Sequence[Verdict]) -> str:
    """The study's Markdown report: the two parts' tables and the verdicts."""
    lines = ["# Entropy memory and estimators: results", ""]
    lines += [
        "Final kNN top-1, mean over seeds (number of seeds). Criteria:",
        "[memory_preregistration.md](memory_preregistration.md).",
        "",
        "## Part 1: the memory (fixed steps)",
        "",
        markdown_header(("Method", "Batch", *ARMS), "lr" + "r" * len(ARMS)),
    ]
    for method in METHODS:
        for batch in BATCHES:
            cells = [method, str(batch)]
            for arm in ARMS:
                name = method if arm == "original" else f"{method}_er"
                cells.append(_mean(top1.get((arm, name, batch), {})))
            lines.append(markdown_row(cells))
    lines += ["", "## Part 2: BYOL-ER's estimators (batch 128)", ""]
    lines.append(markdown_header(("Estimator", "kNN top-1"), "lr"))
    lines.append(
        markdown_row(
            (
                "BYOL (original)",
                _mean(top1.get(("estimator_original", "byol", 128), {})),
            )
        )
    )
    for e in ESTIMATORS:
        lines.append(
            markdown_row((e, _mean(top1.get((f"estimator_{e}", "byol_er", 128), {}))))
        )
    lines += ["", "## Verdicts", ""]
    lines.append(
        markdown_header(
            ("Family", "Comparison", "Mean D", "Interval", "Level", "p", "Verdict"),
            "llrcrrl",
        )
    )
    for v in found:
        if v.verdict == NOT_EVALUABLE:
            lines.append(
                markdown_row((v.family, v.name, "-", "-", "-", "-", v.verdict))
            )
            continue
        lines.append(
            markdown_row(
                (
                    v.family,
                    v.name,
                    f"{v.mean:+.4f}",
                    f"[{v.low:+.4f}, {v.high:+.4f}]",
                    f"{v.level:.4f}",
                    f"{v.p_value:.3g}",
                    v.verdict,
                )
            )
        )
    return "\n".join(lines) + "\n"


def run_study(
    planned: Sequence[Tuple[ArmConfig, List[RunSpec]]],
    log_dir: Path,
    train: bool = True,
) -> str:
    """Trains every unfinished run (unless not ``train``), then writes
    ``memory_report.md`` from the records there are; returns it."""
    for config, specs in planned:
        config.validate()
        if not train:
            continue
        print(f"== arm {config.arm}, batch {config.batch_sizes[0]}", flush=True)
        run_specs(specs, config)
    if global_rank() != 0:
        return ""
    results = {
        config.arm: load_results(config.log_dir)
        for config, _ in planned
        if config.log_dir.exists()
    }
    top1 = collect(results)
    seeds = planned[0][0].seeds if planned else [0, 1, 2]
    text = report(top1, verdicts(top1, seeds))
    write_atomic(log_dir / "memory_report.md", text)
    return text


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--jobs", type=int, default=None, help="runs at once (default: CPU cores)"
    )
    parser.add_argument("--parts", type=int, nargs="+", choices=(1, 2), default=[1, 2])
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing; report from the finished records (missing: not evaluable)",
    )
    # Smoke-test knobs; the pre-registered study uses the defaults.
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--default-epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--dataset", default=None)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Runs the study (or the part asked for) and prints the report."""
    args = build_parser().parse_args(argv)
    overrides: Dict[str, Any] = {}
    for key in ("data_dir", "jobs", "train_subset", "test_subset", "seeds", "dataset"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    if args.steps < 1 or args.default_epochs < 1:
        build_parser().error("--steps and --default-epochs must be >= 1")
    try:
        planned = plan(
            args.log_dir,
            steps=args.steps,
            parts=args.parts,
            default_epochs=args.default_epochs,
            **overrides,
        )
    except ValueError as error:
        build_parser().error(str(error))
    quiet_lightning()
    done: Dict[str, str] = {}
    code = run_command(
        PROG,
        lambda: done.update(
            text=run_study(planned, args.log_dir, train=not args.report_only)
        ),
    )
    if code:
        raise SystemExit(code)
    print(done["text"])
    return done["text"]


if __name__ == "__main__":
    main()

__all__ = ["ArmConfig", "family_verdicts", "plan", "verdicts"]
