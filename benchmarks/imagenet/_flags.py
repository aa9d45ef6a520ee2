"""The flags of the ImageNet benchmarks' command line, in lightly's order.

:func:`add_lightly_flags` holds lightly's ``main.py`` flags with lightly's defaults;
:func:`add_er_options` the options of lightly-er, whose defaults reproduce lightly's
run; :func:`add_loss_options` the ER losses' options, named as
``benchmarks/cifar10.py`` names them, and the resume rule's switch. Importable
without torch (``--help``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common.er_options import ESTIMATORS

if TYPE_CHECKING:
    from ._cli import CommandLine

MATMUL_PRECISIONS = ("highest", "high", "medium")


def parse_limit(value: str) -> float | int:
    """An int number of batches or a float fraction, as Lightning's limits."""
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


def add_lightly_flags(parser: argparse.ArgumentParser, bench: CommandLine) -> None:
    """lightly's ``main.py`` flags, in its order (lightly gives no help texts; these
    are ours)."""
    add = parser.add_argument
    add(
        "--train-dir",
        type=Path,
        default="/datasets/imagenet/train",
        help="ImageFolder tree (one folder per class) of the training images",
    )
    add(
        "--val-dir",
        type=Path,
        default="/datasets/imagenet/val",
        help="ImageFolder tree of the validation images",
    )
    add(
        "--log-dir",
        type=Path,
        default="benchmark_logs",
        help="output folder; each method writes <log-dir>/<method>/<timestamp>/",
    )
    add("--batch-size-per-device", type=int, default=128, help="batch size per device")
    add(
        "--epochs",
        type=int,
        default=100,
        help="pretraining epochs; 0 skips pretraining (and loads --ckpt-path, if "
        "given)",
    )
    add("--num-workers", type=int, default=8, help="data-loader workers per device")
    add("--accelerator", type=str, default="gpu", help="Lightning accelerator")
    add("--devices", type=int, default=1, help="devices; more than 1 trains with DDP")
    add("--precision", type=str, default="16-mixed", help="Lightning precision")
    add(
        "--ckpt-path",
        type=Path,
        default=None,
        help="a Lightning checkpoint to resume pretraining from (one method only; "
        "default: none)",
    )
    add("--compile-model", action="store_true", help="torch.compile the module")
    add(
        "--methods",
        type=str,
        nargs="+",
        choices=list(bench.methods),
        help="methods to run (default: all)",
    )
    if bench.eval_methods:
        add(
            "--eval-method",
            type=str,
            default=bench.eval_methods[0],
            help="classifier of the linear and fine-tuning evaluations: "
            + ", ".join(bench.eval_methods),
        )
    add(
        "--num-classes",
        type=int,
        default=1000,
        help="classes of the classifiers (at least the class folders of --train-dir)",
    )
    add("--skip-knn-eval", action="store_true", help="skip the kNN evaluation")
    add(
        "--knn-k",
        type=int,
        default=200,
        help="kNN neighbors; at most the images of the kNN bank (the training "
        "images, fewer with --limit-val-batches)",
    )
    add("--knn-t", type=float, default=bench.knn_t, help="kNN temperature")
    add("--skip-linear-eval", action="store_true", help="skip the linear evaluation")
    add("--skip-finetune-eval", action="store_true", help="skip fine-tuning")
    add(
        "--float32-matmul-precision",
        type=str,
        default="high",
        help="torch.set_float32_matmul_precision: " + ", ".join(MATMUL_PRECISIONS),
    )
    add(
        "--strategy",
        default="ddp_find_unused_parameters_true",
        help="Lightning strategy of every stage",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="seed set before every method (default: none, as lightly)",
    )


def add_er_options(parser: argparse.ArgumentParser, bench: CommandLine) -> None:
    """lightly-er's options; their defaults are lightly's run."""
    add = parser.add_argument
    add(
        "--backbone",
        choices=bench.backbones,
        default=bench.backbones[0],
        help=f"backbone ({bench.backbones[0]} is lightly's; smaller ones for tests)",
    )
    add(
        "--image-size",
        type=int,
        default=224,
        help="crop size of training and evaluation images, lightly's by default; "
        "the other crops scale with it",
    )
    add(
        "--ema",
        type=float,
        default=None,
        help="constant EMA coefficient of the teacher instead of the method's "
        "schedule (MoCo, BYOL, DINO; SimCLR and SwAV have no teacher; default: "
        "the schedule)",
    )
    add(
        "--limit-train-batches",
        type=parse_limit,
        default=None,
        help="Lightning's limit of training batches per epoch: an int number or a "
        "float fraction (default: all)",
    )
    add(
        "--limit-val-batches",
        type=parse_limit,
        default=None,
        help="Lightning's limit of validation batches, also of the kNN bank's "
        "(default: all)",
    )
    add("--linear-epochs", type=int, default=90, help="linear evaluation epochs")
    add(
        "--finetune-epochs",
        type=int,
        default=bench.finetune_epochs,
        help="fine-tuning epochs",
    )
    add(
        "--device-stats",
        action="store_true",
        help="log Lightning's DeviceStatsMonitor in every stage, as lightly does",
    )
    add(
        "--no-entropy-monitor",
        action="store_true",
        help="do not attach lightly_er.monitoring.EntropyMonitor to pretraining",
    )
    add(
        "--entropy-every-n-steps",
        type=int,
        default=50,
        help="steps between two measurements of the entropy monitor",
    )


def add_loss_options(parser: argparse.ArgumentParser, bench: CommandLine) -> None:
    """The ER losses' options (as ``benchmarks/cifar10.py``'s) and the resume rule's
    switch. Left out, each ER loss keeps its own default."""
    add = parser.add_argument
    sphere = ", ".join(f"{m}_er" for m in bench.sphere_methods) or "none here"
    add(
        "--kappa",
        type=float,
        default=None,
        help=f"ER runs on the sphere ({sphere}): kappa of the ER loss, which the "
        "meters then use (default: the loss's own: 1 / temperature for SimCLR and "
        "MoCo v2, 10 for BYOL)",
    )
    add(
        "--entropy-weight",
        type=float,
        default=None,
        help="ER runs: weight of the entropy term of every ER loss of the method "
        "(default: the loss's, 1)",
    )
    add(
        "--estimator",
        choices=ESTIMATORS,
        default=None,
        help=f"ER runs on the sphere ({sphere}): entropy estimator of the ER loss "
        "(default: the loss's, plugin, the authors')",
    )
    add(
        "--allow-code-change",
        action="store_true",
        help="resume --ckpt-path although its run was started with another code "
        "commit (or other uncommitted changes) than this checkout's; the run's "
        "record.json then names both (default: refuse)",
    )
