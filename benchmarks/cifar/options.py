"""The command-line options of a CIFAR-10 sweep (``benchmarks/cifar10.py``).

Nothing here imports torch: ``--help`` returns at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.cifar.config import SweepConfig
from benchmarks.cifar.names import BACKBONES, DATASETS, METHODS
from benchmarks.common.cli import check_accelerator, check_log_dir
from benchmarks.common.er_options import ESTIMATORS


def add_sweep_options(parser: argparse.ArgumentParser, d: SweepConfig) -> None:
    """Every option of a sweep but ``--preset``; ``d`` gives the defaults shown."""
    _add_runs(parser, d)
    _add_training(parser, d)
    _add_evaluation(parser, d)
    _add_er(parser, d)


def _add_runs(parser: argparse.ArgumentParser, d: SweepConfig) -> None:
    """Options of the runs: methods, batch sizes, epochs, seeds, EMAs, data and log folders."""
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="methods to run; <name>_er is the ER objective (default: all "
        f"{len(d.methods)})",
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
        help="dataset folder (default: $LIGHTLY_ER_DATA_DIR/<dataset>, or "
        "datasets/<dataset> where the variable is not set; CIFAR-10 is downloaded "
        "there when missing)",
    )
    parser.add_argument(
        "--log-dir", type=Path, help=f"output folder (default: {d.log_dir})"
    )


def _add_training(parser: argparse.ArgumentParser, d: SweepConfig) -> None:
    """Options of the model and the machine: backbone, crop size, accelerator, precision, workers, jobs."""
    parser.add_argument(
        "--backbone", choices=BACKBONES, help=f"(default: {d.backbone})"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="PX",
        help="crop size (default: "
        + (str(d.image_size) if d.image_size else "the dataset's: 32, 28 or 16")
        + ")",
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
        "threads; 0: one run per CPU core when training on the CPU, else 1 "
        f"(default: {d.jobs}; the smoke preset: 0)",
    )


def _add_evaluation(parser: argparse.ArgumentParser, d: SweepConfig) -> None:
    """Options of the subsets and the kNN classifier."""
    parser.add_argument(
        "--train-subset",
        type=int,
        metavar="N",
        help="pretrain on N training images drawn with the seed (default: "
        f"{d.train_subset or 'all'})",
    )
    parser.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help=f"evaluate kNN on N fixed test images (default: {d.test_subset or 'all'})",
    )
    parser.add_argument(
        "--knn-k", type=int, help=f"kNN neighbors, >= 1 (default: {d.knn_k})"
    )
    parser.add_argument(
        "--knn-t", type=float, help=f"kNN temperature, > 0 (default: {d.knn_t})"
    )


def _add_er(parser: argparse.ArgumentParser, d: SweepConfig) -> None:
    """Options of the ER objective, resuming, and the progress bar."""
    parser.add_argument(
        "--kappa",
        type=float,
        help="ER runs: kappa given to the ER loss, which the meters then use "
        "(default: the loss's own, 1 / temperature for SimCLR and MoCo, 10 for "
        "BYOL and SimSiam)",
    )
    parser.add_argument(
        "--entropy-weight",
        type=float,
        help=f"ER runs: weight of the entropy term (default: {d.entropy_weight})",
    )
    parser.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        help=f"sphere entropy estimator (default: {d.estimator}, the authors')",
    )
    parser.add_argument(
        "--allow-code-change",
        action="store_true",
        default=None,
        help="resume runs made with another code commit (or other uncommitted "
        "changes) than this checkout's; the tables then name each run's commit "
        "(default: refuse)",
    )
    parser.add_argument(
        "--no-progress-bar",
        action="store_false",
        dest="progress_bar",
        default=None,
        help="hide Lightning's progress bar",
    )


def check_methods(
    parser: argparse.ArgumentParser, methods: Optional[Sequence[str]]
) -> None:
    """Exits with one line naming the first unknown method."""
    unknown = [m for m in methods or () if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")


def checked(parser: argparse.ArgumentParser, config: SweepConfig) -> SweepConfig:
    """config, after its own checks and those of the machine; one line if bad."""
    try:
        config.validate()
        check_accelerator(config.accelerator, config.devices)
        check_log_dir(config.log_dir, "--log-dir")
    except ValueError as error:
        parser.error(str(error))
    return config


__all__ = ["add_sweep_options", "check_methods", "checked"]
