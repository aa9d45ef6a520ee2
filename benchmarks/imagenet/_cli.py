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
    Collection,
    Dict,
    Mapping,
    Optional,
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

from ._flags import (
    MATMUL_PRECISIONS,
    add_er_options,
    add_lightly_flags,
    add_loss_options,
)

if TYPE_CHECKING:
    from ._method import SSLMethod


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
        sphere_methods: The methods whose ER loss is on the sphere: they take
            ``--kappa`` and ``--estimator``.
    """

    title: str
    methods: Collection[str]
    backbones: Tuple[str, ...]
    knn_t: float
    finetune_epochs: int
    eval_methods: Tuple[str, ...] = ()
    sphere_methods: Tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Benchmark(CommandLine):
    """A benchmark's command line with the modules that run it (ResNet-50, ViT).

    Attributes:
        methods: ``--methods`` choices with their modules (see :func:`method_specs`).
        backbones: ``--backbone`` choices, lightly's first (the modules' list).
        linear_eval: ``(model, config, log_dir, epochs, eval_method) -> metrics``.
        finetune_eval: As ``linear_eval``.
        knn_eval: ``(model, config, log_dir, knn_k, knn_t) -> metrics``.
        collate_fn: Collate function of the pretraining loader (None: PyTorch's).
        pretrain_sanity_steps: ``num_sanity_val_steps`` of pretraining (None:
            Lightning's default).
        seed_without_flag: Whether ``seed_everything`` runs without ``--seed`` too
            (it then draws a seed).
        check_image_size: Returns an error message for a crop size the backbone
            cannot take, or None.

    The other attributes are :class:`CommandLine`'s.
    """

    methods: Mapping[str, MethodSpec]
    linear_eval: EvalFunction
    finetune_eval: EvalFunction
    knn_eval: EvalFunction
    collate_fn: Optional[Callable[[Any], Any]] = None
    pretrain_sanity_steps: Optional[int] = None
    seed_without_flag: bool = False
    check_image_size: Callable[[str, int], Optional[str]] = any_image_size


def with_modules(command_line: CommandLine, **modules: Any) -> Benchmark:
    """The benchmark of a command line: its fields, replaced or completed by
    ``modules`` (the :class:`Benchmark` attributes that need the methods' modules).
    """
    return Benchmark(**{**vars(command_line), **modules})


def build_parser(bench: CommandLine) -> OneLineErrorParser:
    """lightly's flags with lightly's defaults, then the options of lightly-er.

    ``--help`` shows every default. A bad argument is one line ``error: <message>``
    and exit status 2.
    """
    parser = OneLineErrorParser(
        description=bench.title,
        error_prefix="error: ",
        formatter_class=DefaultsHelpFormatter,
    )
    add_lightly_flags(parser, bench)
    add_er_options(parser, bench)
    add_loss_options(parser, bench)
    return parser


def check_args(bench: CommandLine, args: argparse.Namespace) -> None:
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
    if args.kappa is not None and not (math.isfinite(args.kappa) and args.kappa > 0):
        fail(f"--kappa must be positive, got {args.kappa}")
    weight = args.entropy_weight
    if weight is not None and not (math.isfinite(weight) and weight >= 0):
        fail(f"--entropy-weight must be >= 0, got {weight}")
    check_sphere_options(bench, args)
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


def check_sphere_options(bench: CommandLine, args: argparse.Namespace) -> None:
    """``--kappa`` and ``--estimator`` need an ER method on the sphere among the
    chosen ones: given without one, they would change nothing (one line, exit 2)."""
    chosen = [m for m in args.methods or bench.methods if m.endswith("_er")]
    takers = [m for m in chosen if m.removesuffix("_er") in bench.sphere_methods]
    for flag, value in (("--kappa", args.kappa), ("--estimator", args.estimator)):
        if value is not None and not takers:
            sphere = ", ".join(f"{m}_er" for m in bench.sphere_methods)
            fail(
                f"{flag} applies to the ER losses on the sphere ("
                + (sphere or "none in this benchmark")
                + "); no method in --methods takes it"
            )


def count_classes(directory: Path) -> int:
    """Number of class folders of an ImageFolder tree."""
    return sum(1 for p in directory.iterdir() if p.is_dir())


def count_images(directory: Path, cap: float = math.inf) -> int:
    """Images of an ImageFolder tree (as torchvision finds them), counted up to cap."""
    # The files torchvision's ImageFolder (and so lightly's LightlyDataset) reads.
    from torchvision.datasets.folder import IMG_EXTENSIONS

    count = 0
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        for _, _, files in os.walk(folder, followlinks=True):
            count += sum(1 for f in files if f.lower().endswith(IMG_EXTENSIONS))
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
