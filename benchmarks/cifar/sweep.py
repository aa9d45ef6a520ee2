"""A resumable sweep of pretraining runs: methods x batch sizes x EMA x seeds.

A finished run writes ``runs/<run id>.json``; a restarted sweep skips every run that
has one (made with the same result settings), and resumes an unfinished run from its
``last.ckpt``, as long as both were made with this checkout's code (the resume rule
of :func:`benchmarks.common.code.check_resume`; ``--allow-code-change`` overrides it).
Tables and plots are rewritten from all records at the end.

Before the first run starts, :func:`preflight` loads the dataset and checks what needs
it (batch sizes and kNN k against the training images): a problem there is a
:class:`~benchmarks.common.cli.UsageError`, one line. Every run is trained by the one
process holding its lock (:func:`benchmarks.cifar.claim.train_claimed`), so sweeps
started twice on one ``--log-dir`` share the runs: each skips the runs another holds,
then waits for them to finish (or takes over those whose process died), and both end
with every record and the same tables. A multi-device (DDP) sweep takes the locks of
all its runs up front and stops with one line if another process holds one.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Dict, List, Optional, Sequence

from benchmarks.cifar.claim import (
    RESULT_SETTINGS,
    Todo,
    check_same_settings,
    finished_record,
    train_claimed,
)
from benchmarks.cifar.config import RunSpec, SweepConfig, expand_runs, resolve_jobs
from benchmarks.cifar.data import ImageArrays, load_dataset
from benchmarks.cifar.plots import plot_curves, plot_sweep
from benchmarks.cifar.pool import run_in_processes
from benchmarks.cifar.run import launched_rank, run_dir_of, summary_line
from benchmarks.cifar.tables import write_tables
from benchmarks.common.cli import UsageError, say
from benchmarks.common.code import (
    STARTED_NAME,
    CodeVersion,
    check_resume,
    code_summary,
    current_code,
    read_started,
)
from benchmarks.common.lock import LOCK_NAME, LockInDoubt, RunLock, read_owner
from benchmarks.common.records import RunResult, load_results
from lightly_er.utils import global_rank

POLL_S = 2.0
"""Seconds between two looks at the runs another process is training."""


def preflight(config: SweepConfig, specs: Sequence[RunSpec]) -> ImageArrays:
    """Loads the dataset and checks the runs against it, before any run starts.

    Raises:
        UsageError: If the dataset is missing, or a batch size or kNN k exceeds the
            training images.
    """
    try:
        data = load_dataset(config.dataset, config.data_dir)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from error
    images = min(len(data.train_images), config.train_subset or math.inf)
    for batch_size in sorted({s.batch_size for s in specs}, reverse=True):
        if batch_size > images:
            raise UsageError(
                f"batch size {batch_size} exceeds the {images} training images"
            )
    if config.knn_k > images:
        raise UsageError(
            f"knn k {config.knn_k} exceeds the {images} training images of the kNN bank"
        )
    return data


def run_specs(specs: Sequence[RunSpec], config: SweepConfig) -> None:
    """Runs every spec that has no finished record in ``config.log_dir``.

    With ``config.jobs`` > 1 the unfinished runs are trained ``jobs`` at a time, each
    in its own process; every run writes its record when it finishes. A finished
    record made with other result settings is refused (UsageError). ``jobs`` 0 is
    resolved first (:func:`~benchmarks.cifar.config.resolve_jobs`).
    """
    config = resolve_jobs(config)
    check_code(specs, config)
    todo: List[Todo] = []
    for index, spec in enumerate(specs, start=1):
        path = config.log_dir / "runs" / f"{spec.run_id}.json"
        done = finished_record(path)
        if done is not None:
            check_same_settings(done, config, path)
            if launched_rank() == 0:
                say(summary_line(done, index, len(specs)) + "  (done before, kept)")
            continue
        todo.append(Todo(index, spec, path))
    if not todo:
        return
    data = preflight(config, [t.spec for t in todo])
    if config.devices > 1:
        _run_all_locked(todo, len(specs), config, data)
        return
    if config.jobs > 1 and len(todo) > 1:
        busy = run_in_processes(todo, len(specs), config)
    else:
        busy = []
        for item in todo:
            if not _train(item, len(specs), config, data):
                busy.append(item)
    wait_for_others(busy, len(specs), config, data)


def check_code(specs: Sequence[RunSpec], config: SweepConfig) -> None:
    """The resume rule (:func:`benchmarks.common.code.check_resume`) over the runs
    the sweep would keep (finished records) or resume (a ``last.ckpt``).

    Raises:
        CodeChanged: If one was made with other code and the sweep is not told to
            allow it.
    """
    found: Dict[str, Optional[CodeVersion]] = {}
    for spec in specs:
        done = finished_record(config.log_dir / "runs" / f"{spec.run_id}.json")
        run_dir = run_dir_of(spec, config)
        if done is not None:
            found[spec.run_id] = done.code
        elif (run_dir / "checkpoints" / "last.ckpt").is_file():
            found[spec.run_id] = read_started(run_dir / STARTED_NAME)
    if not found:
        return
    code = current_code(ignore=[config.log_dir])
    other = check_resume(found, code, config.allow_code_change, str(config.log_dir))
    if other and launched_rank() == 0:
        say(
            f"{len(other)} run(s) were made with other code than this checkout's "
            f"({code.describe()}); kept and resumed as --allow-code-change asks: "
            + code_summary([found[name] for name in other])
        )


def _train(item: Todo, total: int, config: SweepConfig, data: ImageArrays) -> bool:
    """Trains item unless another process holds it; False if it does."""
    status, result = train_claimed(item, total, config, data)
    if status == "busy":
        return False
    if result is not None and global_rank() == 0:
        note = "  (done by another process, kept)" if status == "done elsewhere" else ""
        say(summary_line(result, item.number, total) + note)
    return True


def wait_for_others(
    busy: List[Todo], total: int, config: SweepConfig, data: ImageArrays
) -> None:
    """Waits for the runs other processes hold; trains those whose process died."""
    if not busy:
        return
    owners = {
        owner.describe()
        for item in busy
        if (owner := read_owner(run_dir_of(item.spec, config) / LOCK_NAME))
    }
    say(
        f"waiting for {len(busy)} run(s) another process is training ("
        + (", ".join(sorted(owners)) or "its owner")
        + "): "
        + ", ".join(item.spec.run_id for item in busy)
    )
    while busy:
        time.sleep(POLL_S)
        busy = [item for item in busy if not _train(item, total, config, data)]


def _run_all_locked(
    todo: List[Todo], total: int, config: SweepConfig, data: ImageArrays
) -> None:
    """DDP: rank 0 takes every run's lock first; the other ranks follow it."""
    with contextlib.ExitStack() as stack:
        if launched_rank() == 0:
            for item in todo:
                path = run_dir_of(item.spec, config) / LOCK_NAME
                try:
                    lock = RunLock.acquire(path)
                except LockInDoubt as error:
                    raise UsageError(str(error)) from None
                if lock is None:
                    owner = read_owner(path)
                    raise UsageError(
                        f"run {item.spec.run_id} is being trained by "
                        + (owner.describe() if owner else "another process")
                        + "; a multi-device sweep needs all its runs: wait for it, "
                        "or give another --log-dir"
                    )
                stack.callback(lock.release)
        for item in todo:
            status, result = train_claimed(item, total, config, data, locked=True)
            if result is not None and global_rank() == 0:
                say(summary_line(result, item.number, total))


def run_sweep(config: SweepConfig) -> List[RunResult]:
    """Runs every unfinished run of the sweep, then writes tables and plots.

    Returns all results of the log directory's ``runs/`` (earlier ones included);
    under DDP, processes other than rank 0 return an empty list.
    """
    config.validate()
    run_specs(expand_runs(config), config)
    if global_rank() != 0:
        return []
    results = [r for r in load_results(config.log_dir) if r.dataset == config.dataset]
    if results:
        table = write_tables(config.log_dir, results)
        plot_curves(results, config.log_dir / "curves.png")
        plot_sweep(results, "batch_size", config.log_dir / "top1_vs_batch_size.png")
        plot_sweep(results, "ema", config.log_dir / "top1_vs_ema.png")
        print()
        print(table)
    return results


__all__ = [
    "POLL_S",
    "RESULT_SETTINGS",
    "check_code",
    "check_same_settings",
    "preflight",
    "run_specs",
    "run_sweep",
    "wait_for_others",
]
