"""The run loop of the ImageNet benchmarks (``*/main.py``).

For every chosen method the loop does what lightly's ``main.py`` does: build the
module, optionally compile it, pretrain it (or load a checkpoint with ``--epochs 0``),
then score its backbone with kNN, a linear classifier and fine-tuning, and print the
results. The flags (:mod:`benchmarks.imagenet._cli`) are lightly's, with lightly's
defaults, plus options of our own whose defaults reproduce lightly's run; every
difference is a row of :data:`benchmarks.imagenet.differences.DIFFERENCES`.

Every method writes ``<log-dir>/<method>/<timestamp>/``: ``pretrain``, ``knn_eval``,
``linear_eval`` and ``finetune_eval`` (TensorBoard events and ``metrics.csv`` in
``version_0``), ``checkpoints/last.ckpt`` (pretraining, after every epoch), the entropy
monitor's ``entropy_monitor.csv``/``.png`` in ``pretrain/version_0`` and
``results.json`` (the best value of each metric), ``code.json`` (the code the run
was started with) and ``record.json`` (the run's record: its settings, results and
code, :class:`benchmarks.common.records.RunRecord`). The folder appears with the
first file written in it; a run that fails before writing anything but its
``code.json`` leaves no folder.

Pretraining resumed from a ``--ckpt-path`` that this runner wrote follows the resume
rule (:func:`benchmarks.common.code.check_resume`): the checkpoint's run must have
been started with this checkout's code, unless ``--allow-code-change``. A checkpoint
from elsewhere (no ``code.json`` beside its folder) cannot be checked; its record
says so.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from lightly.utils.benchmarking import MetricCallback
from lightly.utils.dist import print_rank_zero
from pytorch_lightning import Callback, Trainer, seed_everything
from pytorch_lightning.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)

from benchmarks.common.cli import fail
from benchmarks.common.code import (
    STARTED_NAME,
    CodeChanged,
    CodeVersion,
    check_resume,
    current_code,
    read_started,
    write_started,
)
from benchmarks.common.er_options import er_loss_kwargs
from benchmarks.common.history import best_metrics
from benchmarks.common.records import RunRecord, save_json
from lightly_er.monitoring import EntropyMonitor
from lightly_er.utils import global_rank

from ._cli import Benchmark, check_knn_bank
from ._common import (
    RunConfig,
    eval_loader,
    make_loader,
    make_loggers,
    metrics_table,
)
from ._method import SSLMethod

RUN_STAMP_ENV = "LIGHTLY_ER_IMAGENET_RUN"
"""Passes the run folder's timestamp from the first process to the DDP ranks."""


def build_model(
    bench: Benchmark,
    method: str,
    batch_size_per_device: int,
    num_classes: int,
    backbone: Optional[str] = None,
    ema: Optional[float] = None,
    knn_k: int = 200,
    knn_t: Optional[float] = None,
    kappa: Optional[float] = None,
    entropy_weight: Optional[float] = None,
    estimator: Optional[str] = None,
) -> SSLMethod:
    """The module of a method, built as lightly's main.py builds it.

    The kNN settings go to the modules that take them (SimCLR's online kNN), as in
    lightly; ``ema`` to those with a teacher; ``kappa``, ``entropy_weight`` and
    ``estimator`` (None: the loss's own) to an ER method's losses as
    ``benchmarks/cifar10.py`` gives them (:func:`er_loss_kwargs`).

    Raises:
        ValueError: If the method is unknown.
    """
    if method not in bench.methods:
        raise ValueError(
            f"unknown method {method!r}; choose from {', '.join(bench.methods)}"
        )
    spec = bench.methods[method]
    kwargs: Dict[str, Any] = {
        "batch_size_per_device": batch_size_per_device,
        "num_classes": num_classes,
    }
    if _takes_knn_args(spec.model):
        kwargs["knn_k"] = knn_k
        kwargs["knn_t"] = bench.knn_t if knn_t is None else knn_t
    kwargs["objective"] = spec.objective
    kwargs["backbone"] = backbone or bench.backbones[0]
    if spec.model.has_teacher:
        kwargs["ema"] = ema
    er_kwargs = er_loss_kwargs(
        spec.objective,
        spec.model.sphere,
        kappa=kappa,
        entropy_weight=entropy_weight,
        estimator=estimator,
    )
    if er_kwargs:
        kwargs["er_kwargs"] = er_kwargs
    return spec.model(**kwargs)


def _takes_knn_args(model: Any) -> bool:
    return {"knn_k", "knn_t"} <= inspect.signature(model).parameters.keys()


def check_run(bench: Benchmark, args: argparse.Namespace) -> None:
    """The checks that need the methods' modules, before anything is written: the
    crop size the backbone takes, and ``--knn-k`` against the kNN bank wherever a
    kNN classifier runs (the kNN evaluation, SimCLR's online kNN). One line, exit 2.
    """
    message = bench.check_image_size(args.backbone, args.image_size)
    if message is not None:
        fail(message)
    methods = args.methods or list(bench.methods)
    online = args.epochs > 0 and any(
        _takes_knn_args(bench.methods[m].model) for m in methods
    )
    if online or not args.skip_knn_eval:
        check_knn_bank(args)


def takes_online_knn(model: Any) -> bool:
    """Whether the module runs lightly's online kNN (it took ``knn_k``/``knn_t``)."""
    return hasattr(model, "knn_classifier")


def pretrain(
    bench: Benchmark,
    model: Any,
    method: str,
    config: RunConfig,
    log_dir: Path,
    epochs: int,
    ckpt_path: Optional[Path] = None,
    entropy_monitor: bool = True,
    entropy_every_n_steps: int = 50,
) -> Dict[str, float]:
    """Self-supervised pretraining, as lightly's ``pretrain``.

    Args:
        bench: The benchmark.
        model: The method's module (possibly compiled).
        method: Its name.
        config: Data and trainer settings.
        log_dir: The method's run folder.
        epochs: Pretraining epochs.
        ckpt_path: A Lightning checkpoint to resume from.
        entropy_monitor: Whether to attach an EntropyMonitor (it finds the heads).
        entropy_every_n_steps: Steps between two measurements of the monitor.

    Returns:
        The best online classifier accuracies (``val_online_cls_top1``, ...) and, for
        SimCLR, the best online kNN accuracies.
    """
    print_rank_zero(f"Running pretraining for {method}...")
    train_loader = make_loader(
        config.train_dir,
        bench.methods[method].transform(config.image_size),
        config,
        shuffle=True,
        drop_last=True,
        persistent=True,
        collate_fn=bench.collate_fn,
    )
    val_loader = eval_loader(config.val_dir, config)
    val_loaders: Any = val_loader
    if takes_online_knn(model):
        # The kNN bank: the training images with the evaluation transform.
        knn_train_loader = eval_loader(config.train_dir, config)
        val_loaders = [knn_train_loader, val_loader]
        print_rank_zero("Running the online kNN classifier at every validation.")

    metric_callback = MetricCallback()
    callbacks: List[Callback] = [
        LearningRateMonitor(),
        # Stop when the training loss is no longer finite.
        EarlyStopping(monitor="train_loss", patience=int(1e12), check_finite=True),
        *config.callbacks(metric_callback),
        ModelCheckpoint(dirpath=log_dir / "checkpoints", save_last=True, save_top_k=0),
    ]
    if entropy_monitor:
        # Every series to the loggers: a benchmark keeps the whole record.
        callbacks.append(
            EntropyMonitor(every_n_steps=entropy_every_n_steps, metrics="all")
        )
    if global_rank() == 0:
        write_started(log_dir / STARTED_NAME, config.code or current_code())
    extra: Dict[str, Any] = dict(config.limits())
    if bench.pretrain_sanity_steps is not None:
        extra["num_sanity_val_steps"] = bench.pretrain_sanity_steps
    trainer = Trainer(
        max_epochs=epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        callbacks=callbacks,
        logger=make_loggers(log_dir, "pretrain"),
        precision=config.precision,  # type: ignore[arg-type]
        strategy=config.strategy,
        # lightly synchronizes batch norm wherever it can (not on CPU).
        sync_batchnorm=config.accelerator != "cpu",
        **extra,
    )
    trainer.fit(
        model=model,
        train_dataloaders=train_loader,
        val_dataloaders=val_loaders,
        ckpt_path=None if ckpt_path is None else str(ckpt_path),
    )
    metrics = best_metrics(metric_callback, ["val_online_cls_top", "val_knn_top"])
    for name, value in metrics.items():
        print_rank_zero(f"max {name}: {value}")
    return metrics


def _prune_empty(path: Path, keep: Path) -> None:
    """Removes path if its tree holds no file (but its code.json), then its empty
    parents below keep."""
    files = [p for p in path.rglob("*") if p.is_file() and p.name != STARTED_NAME]
    if path.is_dir() and not files:
        shutil.rmtree(path, ignore_errors=True)
    for parent in path.parents:
        if parent == keep or not parent.is_relative_to(keep):
            break
        try:
            parent.rmdir()
        except OSError:
            break


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def run_method(
    bench: Benchmark,
    args: argparse.Namespace,
    method: str,
    config: RunConfig,
    run_dir: Path,
) -> Dict[str, float]:
    """Pretrains and evaluates one method; returns its results (see :func:`run`)."""
    print_rank_zero(f"Logging to {run_dir}")
    model: Any = build_model(
        bench,
        method,
        batch_size_per_device=args.batch_size_per_device,
        num_classes=args.num_classes,
        backbone=args.backbone,
        ema=args.ema,
        knn_k=args.knn_k,
        knn_t=args.knn_t,
        kappa=args.kappa,
        entropy_weight=args.entropy_weight,
        estimator=args.estimator,
    )
    if args.ema is not None and not model.has_teacher:
        print_rank_zero(f"{method} has no teacher: --ema is ignored.")
    if args.compile_model and hasattr(torch, "compile"):
        print_rank_zero("Compiling model...")
        model = torch.compile(model)

    results: Dict[str, float] = {}
    if args.epochs <= 0:
        print_rank_zero("Epochs <= 0, skipping pretraining.")
        if args.ckpt_path is not None:
            state = torch.load(args.ckpt_path, map_location="cpu", weights_only=False)
            model.load_state_dict(state["state_dict"])
    else:
        online = pretrain(
            bench,
            model,
            method,
            config,
            run_dir,
            epochs=args.epochs,
            ckpt_path=args.ckpt_path,
            entropy_monitor=not args.no_entropy_monitor,
            entropy_every_n_steps=args.entropy_every_n_steps,
        )
        results.update({f"pretrain/{k}": v for k, v in online.items()})

    stages: Dict[str, Dict[str, float]] = {}
    eval_method = getattr(args, "eval_method", None)
    if args.skip_knn_eval:
        print_rank_zero("Skipping KNN eval.")
    else:
        stages["knn"] = bench.knn_eval(
            model, config, run_dir, knn_k=args.knn_k, knn_t=args.knn_t
        )
    if args.skip_linear_eval:
        print_rank_zero("Skipping linear eval.")
    else:
        stages["linear"] = bench.linear_eval(
            model, config, run_dir, epochs=args.linear_epochs, eval_method=eval_method
        )
    if args.skip_finetune_eval:
        print_rank_zero("Skipping fine-tune eval.")
    else:
        stages["finetune"] = bench.finetune_eval(
            model,
            config,
            run_dir,
            epochs=args.finetune_epochs,
            eval_method=eval_method,
        )
    for stage, values in stages.items():
        results.update({f"{stage}_eval/{k}": v for k, v in values.items()})
    if stages:
        print_rank_zero(f"Results for {method}:")
        print_rank_zero(metrics_table(stages))
    if global_rank() == 0:
        save_json(run_dir / "results.json", results)
        run_record(bench, args, method, run_dir, results, config.code).save(
            run_dir / "record.json"
        )
        if config.code is not None:
            print_rank_zero(f"Code: {config.code.describe()}")
    return results


def run_record(
    bench: Benchmark,
    args: argparse.Namespace,
    method: str,
    run_dir: Path,
    results: Dict[str, float],
    code: Optional[CodeVersion],
) -> RunRecord:
    """The run's record: its settings (the parsed flags), results and code."""
    settings = {
        k: str(v) if isinstance(v, Path) else v for k, v in sorted(vars(args).items())
    }
    started: Optional[CodeVersion] = None
    if args.ckpt_path is not None:
        started = read_started(checkpoint_run_dir(args.ckpt_path) / STARTED_NAME)
    return RunRecord(
        run_id=f"{method}/{run_dir.name}",
        engine=f"imagenet/{bench.backbones[0]}",
        code=code,
        data={
            "method": method,
            "settings": settings,
            "results": results,
            "resumed_from": None if args.ckpt_path is None else str(args.ckpt_path),
            "started_with_code": None if started is None else started.to_dict(),
        },
    )


def checkpoint_run_dir(ckpt_path: Path) -> Path:
    """The run folder of a checkpoint this runner wrote (``<run>/checkpoints/x``)."""
    return Path(ckpt_path).resolve().parent.parent


def check_checkpoint_code(args: argparse.Namespace, code: CodeVersion) -> None:
    """The resume rule for ``--ckpt-path`` (see the module docstring).

    Raises:
        CodeChanged: If the checkpoint's run was started with other code and
            ``--allow-code-change`` is not given.
    """
    if args.ckpt_path is None:
        return
    started = read_started(checkpoint_run_dir(args.ckpt_path) / STARTED_NAME)
    if started is None:
        print_rank_zero(
            f"{args.ckpt_path} names no code (no {STARTED_NAME} in its run folder): "
            "its code cannot be checked"
        )
        return
    check_resume({str(args.ckpt_path): started}, code, args.allow_code_change)


def run(bench: Benchmark, args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    """Runs the benchmark with parsed and checked arguments; returns ``{method:
    {"<stage>/<metric>": best value}}``."""
    check_run(bench, args)
    code = current_code(ignore=[args.log_dir])
    try:
        check_checkpoint_code(args, code)
    except CodeChanged as error:
        fail(str(error))
    print_rank_zero(f"Args: {vars(args)}")
    torch.set_float32_matmul_precision(args.float32_matmul_precision)
    config = RunConfig(
        train_dir=args.train_dir,
        val_dir=args.val_dir,
        batch_size_per_device=args.batch_size_per_device,
        num_workers=args.num_workers,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
        strategy=args.strategy,
        num_classes=args.num_classes,
        image_size=args.image_size,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        device_stats=args.device_stats,
        code=code,
    )
    # One folder name for all processes: the DDP ranks start as copies of this
    # process and inherit its environment.
    stamp = os.environ.setdefault(
        RUN_STAMP_ENV, datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    )
    results: Dict[str, Dict[str, float]] = {}
    try:
        for method in args.methods or list(bench.methods):
            if args.seed is not None or bench.seed_without_flag:
                # Before every method, so that a method and its ER twin start from
                # the same weights.
                seed_everything(args.seed, workers=True, verbose=True)
            run_dir = (args.log_dir / method / stamp).resolve()
            keep = _existing_ancestor(run_dir)
            try:
                results[method] = run_method(bench, args, method, config, run_dir)
            except BaseException:
                _prune_empty(run_dir, keep)
                raise
    finally:
        if os.environ.get(RUN_STAMP_ENV) == stamp and global_rank() == 0:
            # A later call of main() in this process starts a new run folder.
            del os.environ[RUN_STAMP_ENV]
    return results
