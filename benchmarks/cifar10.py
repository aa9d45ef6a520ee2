"""lightly's CIFAR-10 benchmark, every method with its original and its ER objective.

ResNet-18 (CIFAR variant), lightly's augmentations without blur, lightly's heads and
losses (or their lightly-er adapters), kNN top-1 (k=200, t=0.1) on the backbone
features after every epoch. Sweeps over methods, batch sizes, EMA coefficients (methods
with a teacher) and seeds; an interrupted sweep resumes where it stopped.

    # the main job: every method once on scikit-learn's digits, CPU, a few minutes
    python benchmarks/cifar10.py --preset smoke
    # lightly's published settings
    python benchmarks/cifar10.py --preset lightly --data-dir datasets/cifar10
    # the stability sweep of the paper
    python benchmarks/cifar10.py --methods byol byol_er dino dino_er \\
        --batch-sizes 32 128 512 --ema 0.9 0.99 0.996 --seeds 0 1 2 \\
        --epochs 200 --data-dir datasets/cifar10

Results land in --log-dir: runs/*.json (one per finished run), results.md and
results.csv, curves.png, top1_vs_batch_size.png and top1_vs_ema.png.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import List, NoReturn, Optional

from lightly_er.benchmarking.datasets import DATASETS
from lightly_er.benchmarking.methods import METHODS
from lightly_er.benchmarking.sweep import (
    BACKBONES,
    PRESETS,
    SweepConfig,
    config_from_preset,
    run_sweep,
)


class _OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (``--help`` has the rest)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = _OneLineErrorParser(
        prog="benchmarks/cifar10.py",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--preset", choices=list(PRESETS), default=None)
    parser.add_argument("--methods", nargs="+", metavar="METHOD")
    parser.add_argument("--batch-sizes", nargs="+", type=int, metavar="N")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED")
    parser.add_argument("--ema", nargs="+", type=float, dest="emas", metavar="M")
    parser.add_argument("--dataset", choices=DATASETS)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--log-dir", type=Path)
    parser.add_argument("--backbone", choices=BACKBONES)
    parser.add_argument("--accelerator")
    parser.add_argument("--devices", type=int)
    parser.add_argument("--precision")
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--train-subset", type=int, metavar="N")
    parser.add_argument("--test-subset", type=int, metavar="N")
    parser.add_argument("--knn-k", type=int)
    parser.add_argument("--knn-t", type=float)
    parser.add_argument(
        "--no-progress-bar", action="store_false", dest="progress_bar", default=None
    )
    return parser


def parse_config(argv: Optional[List[str]] = None) -> SweepConfig:
    """The SweepConfig the arguments describe; exits with a one-line error if bad."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    preset = args.pop("preset")
    if args["methods"]:
        unknown = [m for m in args["methods"] if m not in METHODS]
        if unknown:
            parser.error(
                f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}"
            )
    try:
        config = config_from_preset(preset, **args)
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    return config


def quiet_lightning() -> None:
    """Keeps Lightning's per-run banners (seed, devices, tips) off the console.

    Warnings and errors still show; the sweep prints one summary line per run.
    """
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the sweep; returns the exit code."""
    config = parse_config(argv)
    quiet_lightning()
    try:
        run_sweep(config)
    except (FileNotFoundError, ValueError) as error:
        message = " ".join(str(error).split())  # one line, whatever the cause says
        print(f"benchmarks/cifar10.py: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "benchmarks/cifar10.py: interrupted; finished runs are kept, run the "
            "same command again to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
