"""lightly's CIFAR-10 benchmark, every method with its original and its ER objective.

The original runs are lightly's CIFAR-10 benchmark value for value (ResNet-18 CIFAR
variant, each method's augmentation, heads, loss, optimiser and EMA); the ER run of a
method differs only in the loss and head classes. kNN top-1 (k=200, t=0.1) on the
backbone features after every epoch, and the entropy metrics of a held-out batch.
An interrupted sweep resumes where it stopped.

    # the main job: every method once on scikit-learn's digits, CPU, a few minutes
    python benchmarks/cifar10.py --preset smoke
    # lightly's published settings (CIFAR-10 is downloaded to datasets/cifar10)
    python benchmarks/cifar10.py --preset lightly
    # the pre-registered stability study (benchmarks/stability_preregistration.md)
    python benchmarks/cifar10.py --preset stability

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

if __name__ == "__main__" and __package__ in (None, ""):
    # Run as a script from a checkout: make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cifar.data import DATASETS
from benchmarks.cifar.methods import METHODS
from benchmarks.cifar.run import (
    BACKBONES,
    PRESETS,
    SweepConfig,
    config_from_preset,
    run_sweep,
)
from benchmarks.common.checks import check_accelerator, check_log_dir
from benchmarks.studies.stability import StudyConfig, run_study, study_config

STABILITY = "stability"
"""The preset of the stability study: its runs are fixed by the protocol."""

_DEFAULTS = SweepConfig()


class _OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (``--help`` has the rest)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = _OneLineErrorParser(
        prog="benchmarks/cifar10.py",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="methods: "
        + ", ".join(METHODS)
        + ". Presets: "
        + "; ".join(
            f"{name} ({', '.join(f'{k}={v}' for k, v in values.items())})"
            for name, values in PRESETS.items()
        )
        + "; stability (the study's runs; --methods, --seeds, --epochs, the subsets, "
        "--jobs and --log-dir may be changed). An option given with a preset overrides the "
        "preset's value.",
    )
    d = _DEFAULTS
    parser.add_argument(
        "--preset",
        choices=[*PRESETS, STABILITY],
        default=None,
        help="a named starting point; 'stability' runs the pre-registered study "
        "(benchmarks/stability_preregistration.md) and writes its report",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="methods to run; <name>_er is the ER objective (default: all 12)",
    )
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        metavar="N",
        help=f"batch sizes per device (default: {d.batch_sizes})",
    )
    parser.add_argument(
        "--epochs", type=int, help=f"pretraining epochs (default: {d.epochs})"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, metavar="SEED", help=f"(default: {d.seeds})"
    )
    parser.add_argument(
        "--ema",
        nargs="+",
        type=float,
        dest="emas",
        metavar="M",
        help="constant teacher EMA coefficients of MoCo, BYOL and DINO "
        f"(default: lightly's {d.emas})",
    )
    parser.add_argument("--dataset", choices=DATASETS, help=f"(default: {d.dataset})")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="dataset folder (default: datasets/cifar10 for CIFAR-10, downloaded "
        "there when missing; Debian's folder for Fashion-MNIST)",
    )
    parser.add_argument(
        "--log-dir", type=Path, help=f"output folder (default: {d.log_dir})"
    )
    parser.add_argument(
        "--backbone", choices=BACKBONES, help=f"(default: {d.backbone})"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="PX",
        help="crop size (default: the dataset's: 32, 28 or 16)",
    )
    parser.add_argument(
        "--accelerator",
        choices=("auto", "cpu", "gpu", "cuda", "mps"),
        help=f"(default: {d.accelerator})",
    )
    parser.add_argument(
        "--devices",
        type=int,
        help=f"devices; more than 1 trains with DDP (default: {d.devices})",
    )
    parser.add_argument(
        "--precision",
        choices=("32-true", "16-mixed", "bf16-mixed", "64-true", "auto"),
        help=f"Lightning precision; auto: 16-mixed on a CUDA GPU (default: "
        f"lightly's {d.precision})",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        help=f"data-loader workers (default: {d.num_workers})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="CPU: train N runs at once, each in its own process with cpu_count / N "
        f"threads (default: {d.jobs}; the stability preset: 2)",
    )
    parser.add_argument(
        "--train-subset",
        type=int,
        metavar="N",
        help="pretrain on N training images drawn with the seed (default: all)",
    )
    parser.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help="evaluate kNN on N fixed test images (default: all)",
    )
    parser.add_argument(
        "--knn-k", type=int, help=f"kNN neighbours, >= 1 (default: {d.knn_k})"
    )
    parser.add_argument(
        "--knn-t", type=float, help=f"kNN temperature, > 0 (default: {d.knn_t})"
    )
    parser.add_argument(
        "--kappa",
        type=float,
        help="ER runs: kappa of the loss and meters (default: the rule, 1 / "
        "temperature for SimCLR and MoCo, 10 for BYOL and SimSiam)",
    )
    parser.add_argument(
        "--entropy-weight",
        type=float,
        help=f"ER runs: weight of the entropy term (default: {d.entropy_weight})",
    )
    parser.add_argument(
        "--estimator",
        choices=("plugin", "joe"),
        help=f"sphere entropy estimator (default: {d.estimator}, the authors')",
    )
    parser.add_argument(
        "--no-progress-bar",
        action="store_false",
        dest="progress_bar",
        default=None,
        help="hide Lightning's progress bar",
    )
    return parser


def parse_config(argv: Optional[List[str]] = None) -> SweepConfig:
    """The SweepConfig the arguments describe; exits with a one-line error if bad.

    For ``--preset stability`` it is a StudyConfig whose methods are those to run
    (all of the study's by default).
    """
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    preset = args.pop("preset")
    if args["methods"]:
        unknown = [m for m in args["methods"] if m not in METHODS]
        if unknown:
            parser.error(
                f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}"
            )
    config: SweepConfig
    try:
        if preset == STABILITY:
            for flag, key in (("--batch-sizes", "batch_sizes"), ("--ema", "emas")):
                if args.pop(key) is not None:
                    raise ValueError(f"{flag} is fixed by --preset stability")
            methods = args.pop("methods")
            if args["log_dir"] is None:
                args["log_dir"] = Path("benchmark_logs/stability")
            if args["jobs"] is None and (
                args["accelerator"] not in (None, "cpu") or (args["devices"] or 1) > 1
            ):
                args["jobs"] = 1  # the preset's two CPU processes need the CPU
            config = study_config(**{k: v for k, v in args.items() if v is not None})
            if methods:
                config.methods = list(methods)
        else:
            config = config_from_preset(preset, **args)
        config.validate()
        check_accelerator(config.accelerator, config.devices)
        check_log_dir(config.log_dir, "--log-dir")
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
        if isinstance(config, StudyConfig):
            run_study(config, config.methods)
        else:
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
