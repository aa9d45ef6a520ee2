"""The stability study: the paper's claims tested with pre-registered criteria.

The protocol and the criteria are fixed in
``benchmarks/studies/stability_preregistration.md`` (and ``_v2.md``, the protocol in
force) before any run. :func:`study_specs` lists the runs, all of them sweeps of
``benchmarks/cifar10.py``'s methods; :func:`run_study` trains the unfinished ones
and writes the records' table, ``stability_report.md`` (one table per hypothesis and
the verdicts of :mod:`benchmarks.studies.stability_report`) and the plots.

    python benchmarks/studies/stability.py --log-dir runs/stability

It takes the options of ``benchmarks/cifar10.py`` with the study's defaults (see
``--help``); ``--batch-sizes`` and ``--ema`` are fixed by the protocol.
``python benchmarks/cifar10.py --preset stability`` is the same command. Fashion-MNIST
is read from ``--data-dir`` or ``$LIGHTLY_ER_DATA_DIR/fashion-mnist``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __name__ == "__main__" and __package__ in (None, ""):
    # Run as a script from a checkout: make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.cifar.config import RunSpec, SweepConfig
from benchmarks.cifar.options import add_sweep_options, check_methods, checked, given
from benchmarks.cifar.sweep import run_specs
from benchmarks.cifar.tables import write_tables
from benchmarks.common.cli import OneLineErrorParser, quiet_lightning, run_command
from benchmarks.common.records import RunResult, load_results
from benchmarks.studies.stability_plots import plot_study
from benchmarks.studies.stability_report import (
    BATCH_METHODS,
    BATCHES,
    DEFAULT_BATCH,
    DEFAULT_EMA,
    EMAS,
    TEACHER_METHODS,
    entropy_table,
    flattening_table,
    setting_table,
    verdict_table,
    verdicts,
)
from lightly_er.utils import global_rank, write_atomic

PROG = "benchmarks/studies/stability.py"

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
)
"""The study's settings (everything else is lightly's CIFAR-10 benchmark); it trains
one run per CPU core at once (:func:`study_config`)."""


@dataclass
class StudyConfig(SweepConfig):
    """The settings of the stability study; its runs come from :func:`study_specs`."""


def study_config(**overrides: Any) -> StudyConfig:
    """The study's config; methods, batch sizes and EMAs come from the specs.

    Without ``jobs`` it trains as many runs at once as the machine has CPU cores,
    each with one thread (the protocol's results do not depend on it).
    """
    settings = {"jobs": os.cpu_count() or 1, **STUDY_CONFIG, **overrides}
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


def build_parser() -> OneLineErrorParser:
    """The options of ``benchmarks/cifar10.py``, with the study's defaults."""
    parser = OneLineErrorParser(
        prog=PROG,
        hint=" (see --help)",
        description=(__doc__ or "").splitlines()[0],
        epilog="The protocol fixes the batch sizes and EMA coefficients; the other "
        "options override the study's settings (benchmarks/studies/"
        "stability_preregistration_v2.md says which changes keep its protocol).",
    )
    add_sweep_options(parser, study_config(log_dir=Path("benchmark_logs/stability")))
    return parser


def parse_config(argv: Optional[List[str]] = None) -> StudyConfig:
    """The study's config with the options applied; one-line error if bad.

    Its methods are those to run (all of the study's by default).
    """
    parser = build_parser()
    args = given(parser.parse_args(argv))
    check_methods(parser, args.get("methods"))
    for flag, key in (("--batch-sizes", "batch_sizes"), ("--ema", "emas")):
        if key in args:
            parser.error(
                f"{flag} is fixed by --preset stability (the study's protocol)"
            )
    methods = args.pop("methods", None)
    args.setdefault("log_dir", Path("benchmark_logs/stability"))
    if "jobs" not in args and (
        args.get("accelerator", "cpu") != "cpu" or args.get("devices", 1) > 1
    ):
        args["jobs"] = 1  # the CPU processes would need the CPU
    config = study_config(**args)
    if methods:
        config.methods = list(methods)
    checked(parser, config)
    return config


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the study; returns the exit code."""
    config = parse_config(argv)
    quiet_lightning()
    return run_command(PROG, lambda: run_study(config, config.methods))


__all__ = [
    "STUDY_CONFIG",
    "StudyConfig",
    "run_study",
    "study_config",
    "study_specs",
    "verdicts",
    "write_report",
]


if __name__ == "__main__":
    sys.exit(main())
