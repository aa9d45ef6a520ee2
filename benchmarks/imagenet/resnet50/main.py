"""ImageNet ResNet-50 benchmark of lightly's methods and their ER versions.

Pretrains each chosen method on an ImageFolder tree, then evaluates its backbone with
kNN (k=200, t=0.1), a linear classifier and (optionally) fine-tuning, as lightly's
``benchmarks/imagenet/resnet50/main.py`` (lightly docs, "Benchmarks -> ImageNet1k").
The methods are ``simclr``, ``mocov2``, ``byol``, ``dino`` and ``swav``; ``<name>_er``
trains the same module with lightly-er's entropy + reconstruction objective [0].

Every run writes to ``<log-dir>/<method>/<timestamp>/``: ``pretrain``, ``knn_eval``,
``linear_eval`` and ``finetune_eval`` (TensorBoard events and ``metrics.csv`` in
``version_<n>``), ``checkpoints/last.ckpt`` (pretraining, saved atomically after every
epoch), the entropy monitor's ``entropy_monitor.csv``/``.png`` in the pretraining
folder, and ``results.json`` (the best metric of each stage, written atomically).

Examples (from the repository root)::

    python benchmarks/imagenet/resnet50/main.py \\
        --train-dir /datasets/imagenet/train --val-dir /datasets/imagenet/val \\
        --devices 8 --batch-size-per-device 32 --methods simclr simclr_er

With several devices the ER losses estimate the entropy on the batch gathered from
all processes, and batch norm is synchronised (GPU).

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script: make the repository root importable and run as a module.
    import runpy

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    runpy.run_module("benchmarks.imagenet.resnet50.main", run_name="__main__")
    raise SystemExit(0)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import (  # noqa: E402
    Any,
    Callable,
    Dict,
    List,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Type,
)

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from lightly.utils.benchmarking import MetricCallback  # noqa: E402
from pytorch_lightning import Callback, Trainer  # noqa: E402
from pytorch_lightning.callbacks import (  # noqa: E402
    LearningRateMonitor,
    ModelCheckpoint,
)
from pytorch_lightning.utilities import rank_zero_only  # noqa: E402

from lightly_er.monitoring import EntropyMonitor  # noqa: E402
from lightly_er.utils.io import write_atomic  # noqa: E402

from . import byol, dino, mocov2, simclr, swav  # noqa: E402
from ._base import BACKBONES, ImageNetMethod, Objective  # noqa: E402
from .evaluation import (  # noqa: E402
    RunConfig,
    best_metrics,
    count_classes,
    eval_transform,
    finetune_eval,
    knn_eval,
    linear_eval,
    make_loader,
    make_loggers,
)

MethodSpec = Tuple[Type[ImageNetMethod], Callable[[int], Any]]

METHOD_SPECS: Dict[str, MethodSpec] = {
    "simclr": (simclr.SimCLR, simclr.transform),
    "mocov2": (mocov2.MoCoV2, mocov2.transform),
    "byol": (byol.BYOL, byol.transform),
    "dino": (dino.DINO, dino.transform),
    "swav": (swav.SwAV, swav.transform),
}
"""Method name -> (module class, transform factory taking the crop size)."""

METHODS: Tuple[str, ...] = tuple(
    name + suffix for name in METHOD_SPECS for suffix in ("", "_er")
)
"""Every method name accepted by ``--methods``."""

RUN_STAMP_ENV = "LIGHTLY_ER_IMAGENET_RUN"
"""Environment variable that passes the run folder's timestamp to the DDP ranks."""


def parse_method(method: str) -> Tuple[MethodSpec, Objective]:
    """Splits ``"byol_er"`` into (BYOL's spec, "er"), ``"byol"`` into (.., "original").

    Raises:
        ValueError: If the method is unknown.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method.endswith("_er"):
        return METHOD_SPECS[method[: -len("_er")]], "er"
    return METHOD_SPECS[method], "original"


def build_model(
    method: str,
    batch_size_per_device: int,
    num_classes: int,
    devices: int = 1,
    backbone: str = "resnet50",
    ema: Optional[float] = None,
) -> ImageNetMethod:
    """The LightningModule of a method; the losses gather over devices when > 1.

    ``ema`` is ignored by methods without a teacher (SimCLR, SwAV).
    """
    (cls, _), objective = parse_method(method)
    return cls(
        batch_size_per_device=batch_size_per_device,
        num_classes=num_classes,
        objective=objective,
        backbone=backbone,
        ema=ema if cls.has_teacher else None,
        gather_distributed=devices > 1,
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (lightly's flags plus the lightly-er ones)."""
    parser = argparse.ArgumentParser(
        description="ImageNet ResNet-50 benchmark of lightly methods and their ER "
        "versions"
    )
    parser.add_argument("--train-dir", type=Path, default="/datasets/imagenet/train")
    parser.add_argument("--val-dir", type=Path, default="/datasets/imagenet/val")
    parser.add_argument("--log-dir", type=Path, default="benchmark_logs")
    parser.add_argument("--batch-size-per-device", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--num-workers", type=int, default=8)
    parser.add_argument("--accelerator", type=str, default="gpu")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--precision", type=str, default="16-mixed")
    parser.add_argument(
        "--methods",
        type=str,
        nargs="+",
        choices=METHODS,
        default=None,
        help="methods to run (default: all)",
    )
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--skip-knn-eval", action="store_true")
    parser.add_argument("--skip-linear-eval", action="store_true")
    parser.add_argument("--skip-finetune-eval", action="store_true")
    parser.add_argument(
        "--ckpt-path",
        type=Path,
        default=None,
        help="checkpoint to resume pretraining from (with --epochs 0: to evaluate); "
        "one method only",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--ema",
        type=float,
        default=None,
        help="constant EMA coefficient of the teacher (MoCo, BYOL, DINO) instead of "
        "the method's schedule; ignored by SimCLR and SwAV",
    )
    parser.add_argument("--limit-train-batches", type=_limit, default=None)
    parser.add_argument("--limit-val-batches", type=_limit, default=None)
    parser.add_argument("--linear-epochs", type=int, default=90)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="resnet50",
        help="torchvision ResNet (resnet50 is the benchmark; smaller ones for tests)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=224,
        help="crop size of training and evaluation images (224 for ImageNet)",
    )
    parser.add_argument(
        "--no-entropy-monitor",
        action="store_true",
        help="do not attach lightly_er.monitoring.EntropyMonitor to pretraining",
    )
    parser.add_argument(
        "--entropy-every-n-steps",
        type=int,
        default=50,
        help="steps between two measurements of the entropy monitor",
    )
    return parser


def _limit(value: str) -> float | int:
    """An int number of batches or a float fraction, as Lightning's limits."""
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


def _global_rank() -> int:
    """This process's rank, as Lightning's trainers set it (0 without DDP)."""
    return int(getattr(rank_zero_only, "rank", 0))


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _check_args(args: argparse.Namespace, methods: Sequence[str]) -> None:
    for flag, directory in (
        ("--train-dir", args.train_dir),
        ("--val-dir", args.val_dir),
    ):
        if not directory.is_dir():
            _fail(f"{flag} {directory} is not a directory")
    for flag, value, minimum in (
        ("--batch-size-per-device", args.batch_size_per_device, 1),
        ("--epochs", args.epochs, 0),
        ("--num-workers", args.num_workers, 0),
        ("--devices", args.devices, 1),
        ("--num-classes", args.num_classes, 1),
        ("--linear-epochs", args.linear_epochs, 1),
        ("--finetune-epochs", args.finetune_epochs, 1),
        ("--image-size", args.image_size, 32),
        ("--entropy-every-n-steps", args.entropy_every_n_steps, 1),
    ):
        if value < minimum:
            _fail(f"{flag} must be >= {minimum}, got {value}")
    if args.ema is not None and not 0.0 <= args.ema < 1.0:
        _fail(f"--ema must be in [0, 1), got {args.ema}")
    for flag, limit in (
        ("--limit-train-batches", args.limit_train_batches),
        ("--limit-val-batches", args.limit_val_batches),
    ):
        if limit is not None and limit <= 0:
            _fail(f"{flag} must be positive, got {limit}")
    if args.ckpt_path is not None:
        if not args.ckpt_path.is_file():
            _fail(f"--ckpt-path {args.ckpt_path} is not a file")
        if len(methods) != 1:
            _fail("--ckpt-path needs exactly one method in --methods")
    n_classes = count_classes(args.train_dir)
    if n_classes is None:
        _fail(f"--train-dir {args.train_dir} has no class folders (ImageFolder tree)")
    if n_classes > args.num_classes:
        _fail(
            f"--train-dir has {n_classes} class folders but --num-classes is "
            f"{args.num_classes}"
        )


def pretrain(
    model: ImageNetMethod,
    method: str,
    config: RunConfig,
    log_dir: Path,
    epochs: int,
    entropy_monitor: bool = True,
    entropy_every_n_steps: int = 50,
    ckpt_path: Optional[Path] = None,
) -> Dict[str, float]:
    """Self-supervised pretraining with lightly's online linear classifier.

    Args:
        model: The method's module.
        method: Its name (for the transform and the messages).
        config: Data and trainer settings.
        log_dir: The run folder of the method.
        epochs: Pretraining epochs.
        entropy_monitor: Whether to attach an EntropyMonitor to the model's heads.
        entropy_every_n_steps: Steps between two measurements of the monitor.
        ckpt_path: A Lightning checkpoint to resume from.

    Returns:
        The best online classifier accuracies (``val_online_cls_top1``, ...).
    """
    print(f"Running pretraining for {method}...")
    (_, make_transform), _ = parse_method(method)
    metric_callback = MetricCallback()
    callbacks: List[Callback] = [
        LearningRateMonitor(),
        metric_callback,
        ModelCheckpoint(dirpath=log_dir / "checkpoints", save_last=True, save_top_k=0),
    ]
    if entropy_monitor:
        callbacks.append(
            EntropyMonitor(
                dict(model.monitor_modules), every_n_steps=entropy_every_n_steps
            )
        )
    trainer = Trainer(
        max_epochs=epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        precision=config.precision,  # type: ignore[arg-type]
        logger=make_loggers(log_dir, "pretrain"),
        callbacks=callbacks,
        strategy=config.strategy(),
        # SyncBatchNorm needs an accelerator; lightly synchronises it on GPUs.
        sync_batchnorm=config.distributed and config.accelerator != "cpu",
        num_sanity_val_steps=0,
        **config.limits(),
    )
    trainer.fit(
        model=model,
        train_dataloaders=make_loader(
            config.train_dir,
            make_transform(config.image_size),
            config,
            shuffle=True,
            drop_last=True,
        ),
        val_dataloaders=make_loader(
            config.val_dir,
            eval_transform(config.image_size),
            config,
            shuffle=False,
            drop_last=False,
        ),
        ckpt_path=str(ckpt_path) if ckpt_path is not None else None,
    )
    metrics = best_metrics(metric_callback, ["val_online_cls_top"])
    for name, value in metrics.items():
        print(f"max {name}: {value:.4f}")
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """Runs the benchmark; returns {method: {metric: best value}}.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    methods: List[str] = list(args.methods or METHODS)
    _check_args(args, methods)
    torch.set_float32_matmul_precision("high")
    config = RunConfig(
        train_dir=args.train_dir,
        val_dir=args.val_dir,
        batch_size_per_device=args.batch_size_per_device,
        num_workers=args.num_workers,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
        num_classes=args.num_classes,
        image_size=args.image_size,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
    )
    # One folder name for all processes: DDP starts the other ranks as copies of this
    # process, which inherit the environment (and so the timestamp of rank zero).
    stamp = os.environ.setdefault(
        RUN_STAMP_ENV, datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    )
    results: Dict[str, Dict[str, float]] = {}
    for method in methods:
        if args.seed is not None:
            pl.seed_everything(args.seed, workers=True)
        method_dir = (args.log_dir / method / stamp).resolve()
        method_dir.mkdir(parents=True, exist_ok=True)
        model = build_model(
            method,
            batch_size_per_device=args.batch_size_per_device,
            num_classes=args.num_classes,
            devices=args.devices,
            backbone=args.backbone,
            ema=args.ema,
        )
        metrics: Dict[str, float] = {}
        if args.epochs > 0:
            online = pretrain(
                model,
                method,
                config,
                method_dir,
                epochs=args.epochs,
                entropy_monitor=not args.no_entropy_monitor,
                entropy_every_n_steps=args.entropy_every_n_steps,
                ckpt_path=args.ckpt_path,
            )
            metrics.update({f"pretrain/{k}": v for k, v in online.items()})
        else:
            print("Epochs <= 0, skipping pretraining.")
            if args.ckpt_path is not None:
                state = torch.load(
                    args.ckpt_path, map_location="cpu", weights_only=False
                )
                model.load_state_dict(state["state_dict"])
        if not args.skip_knn_eval:
            knn = knn_eval(model, config, method_dir)
            metrics.update({f"knn_eval/{k}": v for k, v in knn.items()})
        if not args.skip_linear_eval:
            linear = linear_eval(
                model, model.feature_dim, config, method_dir, epochs=args.linear_epochs
            )
            metrics.update({f"linear_eval/{k}": v for k, v in linear.items()})
        if not args.skip_finetune_eval:
            finetune = finetune_eval(
                model,
                model.feature_dim,
                config,
                method_dir,
                epochs=args.finetune_epochs,
            )
            metrics.update({f"finetune_eval/{k}": v for k, v in finetune.items()})
        if _global_rank() == 0:
            text = json.dumps(metrics, indent=2, sort_keys=True) + "\n"
            write_atomic(method_dir / "results.json", text)
        results[method] = metrics
    if os.environ.get(RUN_STAMP_ENV) == stamp and _global_rank() == 0:
        # A later call of main() in this process starts a new run folder.
        del os.environ[RUN_STAMP_ENV]
    return results


if __name__ == "__main__":
    main()
