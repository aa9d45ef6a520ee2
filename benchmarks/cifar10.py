"""lightly's CIFAR-10 benchmark, every method with its original and its ER objective.

The original runs are lightly's CIFAR-10 benchmark value for value (ResNet-18 CIFAR
variant, each method's augmentation, heads, loss, optimizer and EMA); the ER run of a
method differs only in the loss and head classes. kNN top-1 (k=200, t=0.1) on the
backbone features after every epoch, and the entropy metrics of a held-out batch.
An interrupted sweep resumes where it stopped.

    # the main job: every method once on scikit-learn's digits, CPU, a few minutes
    python benchmarks/cifar10.py --preset smoke
    # lightly's published settings (CIFAR-10 is downloaded to datasets/cifar10)
    python benchmarks/cifar10.py --preset lightly

Results land in --log-dir: runs/*.json (one per finished run), results.md and
results.csv, curves.png, top1_vs_batch_size.png and top1_vs_ema.png. The pieces are
in ``benchmarks/cifar/`` and ``benchmarks/common/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

if __name__ == "__main__" and __package__ in (None, ""):
    # Run as a script from a checkout: make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Only what the command line needs: torch, lightly and Lightning load after the
# arguments are parsed, so --help and a bad argument answer at once.
from benchmarks.cifar.config import PRESETS, SweepConfig, config_from_preset
from benchmarks.cifar.names import METHODS
from benchmarks.cifar.options import add_sweep_options, check_methods, checked
from benchmarks.common.cli import (
    DefaultsHelpFormatter,
    OneLineErrorParser,
    quiet_lightning,
    run_command,
)

PROG = "benchmarks/cifar10.py"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = OneLineErrorParser(
        prog=PROG,
        hint=" (see --help)",
        formatter_class=DefaultsHelpFormatter,
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="methods: "
        + ", ".join(METHODS)
        + ". Presets: "
        + "; ".join(
            f"{name} ({', '.join(f'{k}={v}' for k, v in values.items())})"
            for name, values in PRESETS.items()
        )
        + ". An option given with a preset overrides the preset's value.",
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="a named starting point (default: none, lightly's settings)",
    )
    add_sweep_options(parser, SweepConfig())
    return parser


def parse_config(argv: Optional[List[str]] = None) -> SweepConfig:
    """The SweepConfig the arguments describe; exits with a one-line error if bad."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    preset = args.pop("preset")
    check_methods(parser, args["methods"])
    try:
        config = config_from_preset(preset, **args)
    except ValueError as error:
        parser.error(str(error))
    return checked(parser, config)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the sweep; returns the exit code."""
    config = parse_config(argv)
    from benchmarks.cifar.sweep import run_sweep

    quiet_lightning()
    return run_command(PROG, lambda: run_sweep(config))


if __name__ == "__main__":
    sys.exit(main())
