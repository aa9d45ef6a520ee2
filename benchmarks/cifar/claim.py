"""Who trains a run of a CIFAR-10 sweep, and whether a finished record stands in.

A run folder (``<log-dir>/lightning/<run id>``) has one owner at a time: the process
that holds its ``run.lock`` (:mod:`benchmarks.common.lock`, :func:`train_claimed`).
A finished record (``runs/<run id>.json``, :func:`finished_record`) is kept only if it
was made with this sweep's result settings (:func:`check_same_settings`); the resume
rule on its code is :func:`benchmarks.cifar.sweep.check_code`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional, Tuple

from benchmarks.cifar import run
from benchmarks.cifar.config import RunSpec, SweepConfig, resolve_precision
from benchmarks.cifar.data import ImageArrays
from benchmarks.common.cli import UsageError, say
from benchmarks.common.lock import LOCK_NAME, LockInDoubt, RunLock
from benchmarks.common.records import RunResult
from lightly_er.utils import global_rank


class Todo(NamedTuple):
    """A run of the sweep without a finished record: its number and record path."""

    number: int
    spec: RunSpec
    path: Path


Status = Literal["trained", "done elsewhere", "busy"]


def train_claimed(
    todo: Todo,
    total: int,
    config: SweepConfig,
    data: ImageArrays,
    locked: bool = False,
) -> Tuple[Status, Optional[RunResult]]:
    """Trains a run if no other process owns it; writes its record.

    Returns ``("busy", None)`` when a live process holds the run's lock,
    ``("done elsewhere", record)`` when another process finished it meanwhile, and
    ``("trained", record)`` otherwise. ``locked``: the caller holds the lock (the
    ranks of a multi-device run follow rank 0, which does).

    Raises:
        UsageError: If a lock names another host, or a record made meanwhile has
            other result settings.
    """
    spec = todo.spec
    rank = run.launched_rank()
    lock: Optional[RunLock] = None
    if not locked and rank == 0:
        try:
            lock = RunLock.acquire(run.run_dir_of(spec, config) / LOCK_NAME)
        except LockInDoubt as error:
            raise UsageError(f"run {spec.run_id}: {error}") from None
        if lock is None:
            return "busy", None
    try:
        done = finished_record(todo.path)
        if done is not None:  # another process finished it since the sweep began
            check_same_settings(done, config, todo.path)
            return "done elsewhere", done
        label = run.run_label(spec, todo.number, total)
        if rank == 0:
            if lock is not None and lock.took_over is not None:
                say(
                    f"{label}  taking over from {lock.took_over.describe()}, which "
                    "no longer runs"
                )
            last = run.run_dir_of(spec, config) / "checkpoints" / "last.ckpt"
            action = "resuming from last.ckpt" if last.is_file() else "started"
            say(f"{label}  {action}")
        result = run.run_one(spec, config, data)
        if rank == 0 and global_rank() == 0:
            result.save(todo.path)
        return "trained", result
    finally:
        if lock is not None:
            lock.release()


def finished_record(path: Path) -> Optional[RunResult]:
    """The finished record at path, or None (none, damaged, or of another format)."""
    if not path.is_file():
        return None
    try:
        return RunResult.load(path)
    except ValueError:
        return None  # a damaged record, or an older format: run it again


# Settings that change a run's result but not its run id: a record made with other
# values must not stand in for this sweep's run.
RESULT_SETTINGS: Tuple[str, ...] = (
    "dataset",
    "backbone",
    "image_size",
    "train_subset",
    "test_subset",
    "knn_k",
    "knn_t",
    "entropy_weight",
    "estimator",
    "precision",
)


def check_same_settings(done: RunResult, config: SweepConfig, path: Path) -> None:
    """Raises UsageError if a finished record was made with other result settings."""
    for key in RESULT_SETTINGS:
        old = done.settings.get(key)
        if key == "image_size":
            if config.image_size is None or old == config.image_size:
                continue
            new: Any = config.image_size
        elif key == "precision":
            new = resolve_precision(config.precision, config.accelerator)
        else:
            new = getattr(config, key)
        if old != new:
            raise UsageError(
                f"{path} was run with {key}={old!r} but this sweep has {key}={new!r}; "
                "give another --log-dir, or the same settings to resume"
            )
    if config.kappa is not None and done.objective == "er" and done.kappa is not None:
        if done.kappa != config.kappa:
            raise UsageError(
                f"{path} was run with kappa={done.kappa!r} but this sweep has "
                f"kappa={config.kappa!r}; give another --log-dir"
            )


__all__ = [
    "RESULT_SETTINGS",
    "Status",
    "Todo",
    "check_same_settings",
    "finished_record",
    "train_claimed",
]
