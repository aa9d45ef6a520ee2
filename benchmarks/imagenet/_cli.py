"""The command line of the ImageNet benchmarks (``*/main.py``): lightly's flags with
lightly's defaults, lightly-er's options, and the checks made before anything runs.

:class:`Benchmark` holds what sets the ResNet-50 and the ViT benchmark apart; a bad
argument is one line ``error: <message>`` and exit status 2
(:class:`benchmarks.common.cli.OneLineErrorParser`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    get_args,
)

from lightning_fabric.plugins.precision.precision import (
    _PRECISION_INPUT_STR,
    _PRECISION_INPUT_STR_ALIAS,
)
from pytorch_lightning.accelerators import AcceleratorRegistry
from pytorch_lightning.strategies import StrategyRegistry

from benchmarks.common.cli import OneLineErrorParser, fail
from benchmarks.common.objective import Objective

from ._common import count_classes
from ._method import SSLMethod

MATMUL_PRECISIONS = ("highest", "high", "medium")
PRECISIONS: Tuple[str, ...] = get_args(_PRECISION_INPUT_STR) + get_args(
    _PRECISION_INPUT_STR_ALIAS
)

EvalFunction = Callable[..., Dict[str, float]]


@dataclass(frozen=True)
class MethodSpec:
    """One entry of ``--methods``.

    Attributes:
        model: The method's module class.
        transform: Its training augmentation for a crop size.
        objective: ``"original"`` or ``"er"``.
    """

    model: Type[SSLMethod]
    transform: Callable[[int], Any]
    objective: Objective


def method_specs(
    methods: Mapping[str, Tuple[Type[SSLMethod], Callable[[int], Any]]],
) -> Dict[str, MethodSpec]:
    """Every method with its ER twin: ``{"dino": ..., "dino_er": ..., ...}``."""
    out: Dict[str, MethodSpec] = {}
    for name, (model, transform) in methods.items():
        out[name] = MethodSpec(model, transform, "original")
        out[f"{name}_er"] = MethodSpec(model, transform, "er")
    return out


def any_image_size(backbone: str, image_size: int) -> Optional[str]:
    """Accepts every crop size (a ResNet takes any size of 32 pixels or more)."""
    return None


@dataclass(frozen=True)
class Benchmark:
    """What sets one benchmark (ResNet-50, ViT) apart from the other.

    Attributes:
        title: Shown by ``--help``.
        methods: ``--methods`` choices (see :func:`method_specs`).
        backbones: ``--backbone`` choices, lightly's first.
        knn_t: lightly's default kNN temperature.
        finetune_epochs: lightly's fine-tuning epochs.
        linear_eval: ``(model, config, log_dir, epochs, eval_method) -> metrics``.
        finetune_eval: As ``linear_eval``.
        knn_eval: ``(model, config, log_dir, knn_k, knn_t) -> metrics``.
        eval_methods: ``--eval-method`` choices, lightly's default first (none: no
            such flag).
        collate_fn: Collate function of the pretraining loader (None: PyTorch's).
        pretrain_sanity_steps: ``num_sanity_val_steps`` of pretraining (None:
            Lightning's default).
        seed_without_flag: Whether ``seed_everything`` runs without ``--seed`` too
            (it then draws a seed).
        check_image_size: Returns an error message for a crop size the backbone
            cannot take, or None.
    """

    title: str
    methods: Mapping[str, MethodSpec]
    backbones: Tuple[str, ...]
    knn_t: float
    finetune_epochs: int
    linear_eval: EvalFunction
    finetune_eval: EvalFunction
    knn_eval: EvalFunction
    eval_methods: Tuple[str, ...] = ()
    collate_fn: Optional[Callable[[Any], Any]] = None
    pretrain_sanity_steps: Optional[int] = None
    seed_without_flag: bool = False
    check_image_size: Callable[[str, int], Optional[str]] = any_image_size


def _limit(value: str) -> float | int:
    """An int number of batches or a float fraction, as Lightning's limits."""
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


def build_parser(bench: Benchmark) -> OneLineErrorParser:
    """lightly's flags with lightly's defaults, then the options of lightly-er.

    A bad argument is one line ``error: <message>`` and exit status 2.
    """
    parser = OneLineErrorParser(description=bench.title, error_prefix="error: ")
    add = parser.add_argument
    # lightly's main.py, in its order.
    add("--train-dir", type=Path, default="/datasets/imagenet/train")
    add("--val-dir", type=Path, default="/datasets/imagenet/val")
    add("--log-dir", type=Path, default="benchmark_logs")
    add("--batch-size-per-device", type=int, default=128)
    add("--epochs", type=int, default=100)
    add("--num-workers", type=int, default=8)
    add("--accelerator", type=str, default="gpu")
    add("--devices", type=int, default=1)
    add("--precision", type=str, default="16-mixed")
    add("--ckpt-path", type=Path, default=None)
    add("--compile-model", action="store_true")
    add(
        "--methods",
        type=str,
        nargs="+",
        choices=list(bench.methods),
        help="methods to run (default: all)",
    )
    if bench.eval_methods:
        add("--eval-method", type=str, default=bench.eval_methods[0])
    add("--num-classes", type=int, default=1000)
    add("--skip-knn-eval", action="store_true")
    add("--knn-k", type=int, default=200)
    add("--knn-t", type=float, default=bench.knn_t)
    add("--skip-linear-eval", action="store_true")
    add("--skip-finetune-eval", action="store_true")
    add("--float32-matmul-precision", type=str, default="high")
    add("--strategy", default="ddp_find_unused_parameters_true")
    add("--seed", type=int, default=None)
    # lightly-er's options; their defaults are lightly's run.
    add(
        "--backbone",
        choices=bench.backbones,
        default=bench.backbones[0],
        help=f"backbone (lightly's: {bench.backbones[0]}; smaller ones for tests)",
    )
    add(
        "--image-size",
        type=int,
        default=224,
        help="crop size of training and evaluation images; the other crops scale "
        "with it (lightly's: 224)",
    )
    add(
        "--ema",
        type=float,
        default=None,
        help="constant EMA coefficient of the teacher instead of the method's "
        "schedule (MoCo, BYOL, DINO; SimCLR and SwAV have no teacher)",
    )
    add("--limit-train-batches", type=_limit, default=None)
    add("--limit-val-batches", type=_limit, default=None)
    add("--linear-epochs", type=int, default=90)
    add("--finetune-epochs", type=int, default=bench.finetune_epochs)
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
    return parser


def check_args(bench: Benchmark, args: argparse.Namespace) -> None:
    """Exits with one line for the first bad value, before anything is written."""
    for flag, directory in (
        ("--train-dir", args.train_dir),
        ("--val-dir", args.val_dir),
    ):
        if not directory.is_dir():
            fail(f"{flag} {directory} is not a directory")
    for flag, value, minimum in (
        ("--batch-size-per-device", args.batch_size_per_device, 1),
        ("--num-workers", args.num_workers, 0),
        ("--devices", args.devices, 1),
        # lightly's classifiers report top-1 and top-5 accuracy.
        ("--num-classes", args.num_classes, 5),
        ("--knn-k", args.knn_k, 1),
        ("--linear-epochs", args.linear_epochs, 1),
        ("--finetune-epochs", args.finetune_epochs, 1),
        ("--image-size", args.image_size, 32),
        ("--entropy-every-n-steps", args.entropy_every_n_steps, 1),
    ):
        if value < minimum:
            fail(f"{flag} must be >= {minimum}, got {value}")
    if not args.knn_t > 0:
        fail(f"--knn-t must be positive, got {args.knn_t}")
    if args.ema is not None and not 0.0 <= args.ema < 1.0:
        fail(f"--ema must be in [0, 1), got {args.ema}")
    for flag, limit in (
        ("--limit-train-batches", args.limit_train_batches),
        ("--limit-val-batches", args.limit_val_batches),
    ):
        if limit is not None and limit <= 0:
            fail(f"{flag} must be positive, got {limit}")
    choices: Tuple[Tuple[str, str, Sequence[str]], ...] = (
        ("--precision", args.precision, PRECISIONS),
        (
            "--accelerator",
            args.accelerator,
            ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())),
        ),
        (
            "--strategy",
            args.strategy,
            ("auto", *sorted(StrategyRegistry.available_strategies())),
        ),
        (
            "--float32-matmul-precision",
            args.float32_matmul_precision,
            MATMUL_PRECISIONS,
        ),
        (
            "--eval-method",
            getattr(args, "eval_method", ""),
            bench.eval_methods or ("",),
        ),
    )
    for flag, value, allowed in choices:
        if value not in allowed:
            fail(f"{flag} {value!r} is not one of {', '.join(allowed)}")
    message = bench.check_image_size(args.backbone, args.image_size)
    if message is not None:
        fail(message)
    if args.ckpt_path is not None:
        if not args.ckpt_path.is_file():
            fail(f"--ckpt-path {args.ckpt_path} is not a file")
        if len(args.methods or bench.methods) != 1:
            fail("--ckpt-path needs exactly one method in --methods")
    n_classes = count_classes(args.train_dir)
    if n_classes == 0:
        fail(f"--train-dir {args.train_dir} has no class folders (ImageFolder tree)")
    if n_classes > args.num_classes:
        fail(
            f"--train-dir has {n_classes} class folders but --num-classes is "
            f"{args.num_classes}"
        )
