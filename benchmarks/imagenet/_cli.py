"""The command line of the ImageNet benchmarks (``*/main.py``): lightly's flags with
lightly's defaults, lightly-er's options, and the checks made before anything runs.

:class:`CommandLine` is what the parser needs to know of a benchmark (names only), so
``--help`` and the checks of :func:`check_args` answer before torch, lightly and
Lightning load; :class:`Benchmark` holds the rest of what sets the ResNet-50 and the
ViT benchmark apart. A bad argument is one line ``error: <message>`` and exit status
2 (:class:`benchmarks.common.cli.OneLineErrorParser`).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Type,
    Union,
)

from benchmarks.common.cli import (
    DefaultsHelpFormatter,
    OneLineErrorParser,
    check_log_dir,
    fail,
)
from benchmarks.common.names import Objective, method_table
from benchmarks.common.names import with_er_twins as with_er_twins

if TYPE_CHECKING:
    from ._method import SSLMethod

MATMUL_PRECISIONS = ("highest", "high", "medium")
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)
"""The files torchvision's ImageFolder (and so lightly's LightlyDataset) reads."""


def precisions() -> Tuple[str, ...]:
    """Every ``--precision`` value Lightning takes."""
    from typing import get_args

    from lightning_fabric.plugins.precision.precision import (
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    return get_args(_PRECISION_INPUT_STR) + get_args(_PRECISION_INPUT_STR_ALIAS)


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
    return {
        name: MethodSpec(model, transform, objective)
        for name, ((model, transform), objective) in method_table(methods).items()
    }


def any_image_size(backbone: str, image_size: int) -> Optional[str]:
    """Accepts every crop size (a ResNet takes any size of 32 pixels or more)."""
    return None


class ParserSpec(Protocol):
    """What :func:`build_parser` reads of a benchmark."""

    @property
    def title(self) -> str: ...

    @property
    def methods(self) -> Iterable[str]: ...

    @property
    def backbones(self) -> Tuple[str, ...]: ...

    @property
    def knn_t(self) -> float: ...

    @property
    def finetune_epochs(self) -> int: ...

    @property
    def eval_methods(self) -> Tuple[str, ...]: ...


@dataclass(frozen=True)
class CommandLine:
    """What the command line of one benchmark offers: names and lightly's defaults.

    Attributes:
        title: Shown by ``--help``.
        methods: ``--methods`` choices (see :func:`with_er_twins`).
        backbones: ``--backbone`` choices, lightly's first.
        knn_t: lightly's default kNN temperature.
        finetune_epochs: lightly's fine-tuning epochs.
        eval_methods: ``--eval-method`` choices, lightly's default first (none: no
            such flag).
    """

    title: str
    methods: Tuple[str, ...]
    backbones: Tuple[str, ...]
    knn_t: float
    finetune_epochs: int
    eval_methods: Tuple[str, ...] = ()


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


def build_parser(bench: ParserSpec) -> OneLineErrorParser:
    """lightly's flags with lightly's defaults, then the options of lightly-er.

    ``--help`` shows every default. A bad argument is one line ``error: <message>``
    and exit status 2.
    """
    parser = OneLineErrorParser(
        description=bench.title,
        error_prefix="error: ",
        formatter_class=DefaultsHelpFormatter,
    )
    add = parser.add_argument
    # lightly's main.py, in its order (lightly gives no help texts; these are ours).
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
    # lightly-er's options; their defaults are lightly's run.
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
        type=_limit,
        default=None,
        help="Lightning's limit of training batches per epoch: an int number or a "
        "float fraction (default: all)",
    )
    add(
        "--limit-val-batches",
        type=_limit,
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
    add(
        "--allow-code-change",
        action="store_true",
        help="resume --ckpt-path although its run was started with another code "
        "commit (or other uncommitted changes) than this checkout's; the run's "
        "record.json then names both (default: refuse)",
    )
    return parser


def check_args(bench: ParserSpec, args: argparse.Namespace) -> None:
    """Exits with one line for the first bad value, before anything is written.

    It needs no torch; what needs the methods' modules (the crop size of a ViT, the
    kNN bank of SimCLR's online kNN) :func:`benchmarks.imagenet._runner.check_run`
    checks next, also before anything is written.
    """
    for flag, directory in (
        ("--train-dir", args.train_dir),
        ("--val-dir", args.val_dir),
    ):
        if not directory.is_dir():
            fail(f"{flag} {directory} is not a directory")
    for flag, value, minimum in (
        ("--batch-size-per-device", args.batch_size_per_device, 1),
        ("--epochs", args.epochs, 0),
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
        if limit is not None and (
            limit <= 0 or (isinstance(limit, float) and limit > 1)
        ):
            fail(
                f"{flag} must be a positive number of batches or a fraction in "
                f"(0, 1], got {limit}"
            )
    try:
        check_log_dir(args.log_dir, "--log-dir")
    except ValueError as error:
        fail(str(error))
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    choices: Tuple[Tuple[str, str, Sequence[str]], ...] = (
        ("--precision", args.precision, precisions()),
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
    if args.ckpt_path is not None:
        if not args.ckpt_path.is_file():
            fail(f"--ckpt-path {args.ckpt_path} is not a file")
        if len(args.methods or list(bench.methods)) != 1:
            fail("--ckpt-path needs exactly one method in --methods")
    n_classes = count_classes(args.train_dir)
    if n_classes == 0:
        fail(f"--train-dir {args.train_dir} has no class folders (ImageFolder tree)")
    if n_classes > args.num_classes:
        fail(
            f"--train-dir has {n_classes} class folders but --num-classes is "
            f"{args.num_classes}"
        )


def count_classes(directory: Path) -> int:
    """Number of class folders of an ImageFolder tree."""
    return sum(1 for p in directory.iterdir() if p.is_dir())


def count_images(directory: Path, cap: float = math.inf) -> int:
    """Images of an ImageFolder tree (as torchvision finds them), counted up to cap."""
    count = 0
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        for _, _, files in os.walk(folder, followlinks=True):
            count += sum(1 for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
            if count >= cap:
                return count
    return count


Limit = Union[int, float, None]


def knn_bank_size(images: int, batch_size: int, devices: int, limit: Limit) -> int:
    """The feature bank of lightly's kNN classifier: the training images that its
    validation pass reads (``limit`` is ``--limit-val-batches``), from every device.

    Examples:
        >>> knn_bank_size(20, 4, 1, None), knn_bank_size(20, 4, 1, 1)
        (20, 4)
        >>> knn_bank_size(20, 4, 2, 0.5)  # 10 images per device, 3 batches, 1 kept
        8
    """
    per_device = -(-images // devices)  # the distributed sampler pads to equal shares
    batches = -(-per_device // batch_size)
    if limit is None:
        kept = batches
    elif isinstance(limit, int):
        kept = min(limit, batches)
    else:
        kept = int(batches * limit)  # Lightning's rule for a fraction
    return devices * min(per_device, kept * batch_size)


def check_knn_bank(args: argparse.Namespace) -> None:
    """Exits with one line if ``--knn-k`` exceeds the kNN bank the run will have."""
    k = args.knn_k
    limit = args.limit_val_batches
    if isinstance(limit, int) and args.devices * limit * args.batch_size_per_device < k:
        bank = args.devices * limit * args.batch_size_per_device  # at most
        fail(
            f"--knn-k {k} exceeds the kNN bank of at most {bank} images (--devices "
            f"{args.devices} x --limit-val-batches {limit} x --batch-size-per-device "
            f"{args.batch_size_per_device}); give a smaller --knn-k"
        )
    cap = float(k)
    while True:  # count only as far as needed: the bank grows with the images
        images = count_images(args.train_dir, cap)
        bank = knn_bank_size(
            images, args.batch_size_per_device, args.devices, args.limit_val_batches
        )
        if bank >= k:
            return
        if images < cap:  # every image counted: the bank is too small
            break
        cap *= 2
    limited = "" if limit is None else f" with --limit-val-batches {limit}"
    fail(
        f"--knn-k {k} exceeds the kNN bank of {bank} images ({images} images in "
        f"--train-dir, batch size {args.batch_size_per_device}{limited}); give a "
        "smaller --knn-k"
    )
