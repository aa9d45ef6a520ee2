"""Several runs of a sweep at once on the CPU, each in a process of its own.

With ``--jobs N`` the unfinished runs train N at a time, each in a spawned process with
``cpu_count // N`` threads and no progress bar; every run takes its lock in the
process that trains it and
writes its record before the parent hears of it, and the first failure stops the runs
not started yet.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import warnings
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks.cifar.claim import Status, Todo, train_claimed
from benchmarks.cifar.config import SweepConfig
from benchmarks.cifar.data import ImageArrays, load_dataset
from benchmarks.cifar.run import summary_line
from benchmarks.common.cli import say
from benchmarks.common.records import RunResult

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")
_worker_data: Dict[Tuple[str, Optional[Path]], ImageArrays] = {}


def _init_worker(
    threads: int, levels: Dict[str, int], filters: List[Any], start_method: str
) -> None:
    """A run process: its share of the cores, the parent's logging and warnings."""
    # A spawned process defaults to spawn: its data-loader workers would import torch
    # again every epoch (2.5x slower runs on 2 cores). They start as the parent's do.
    multiprocessing.set_start_method(start_method, force=True)
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    warnings.filters[:] = filters  # type: ignore[index]


def _claim_and_run(
    todo: Todo, total: int, config: SweepConfig
) -> Tuple[Status, Optional[RunResult]]:
    """One run in a worker process (unless another process holds it); the record is
    written before the parent hears."""
    key = (config.dataset, config.data_dir)
    if key not in _worker_data:  # a worker trains several runs: load the data once
        _worker_data[key] = load_dataset(config.dataset, config.data_dir)
    return train_claimed(todo, total, config, _worker_data[key])


def _worker_pool(workers: int, jobs: int) -> ProcessPoolExecutor:
    """``workers`` run processes, each with ``cpu_count // jobs`` threads."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    levels = {name: logging.getLogger(name).level for name in _LIGHTNING_LOGGERS}
    return ProcessPoolExecutor(
        max_workers=workers,
        # spawn: a fresh interpreter, not a fork of one holding torch's threads
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        # the run processes start their data-loader workers as this process does
        initargs=(
            threads,
            levels,
            list(warnings.filters),
            multiprocessing.get_start_method(),
        ),
    )


def run_in_processes(
    todo: Sequence[Todo], total: int, config: SweepConfig
) -> List[Todo]:
    """Trains the runs ``config.jobs`` at a time; the first failure stops the rest.

    Returns the runs another process holds (not trained here).
    """
    # Progress bars of several processes would overwrite each other: each run says
    # when it starts and when it ends instead.
    config = replace(config, progress_bar=False)
    pool = _worker_pool(min(config.jobs, len(todo)), config.jobs)
    futures: Dict[Future[Tuple[Status, Optional[RunResult]]], Todo] = {}
    busy: List[Todo] = []
    try:
        for item in todo:
            futures[pool.submit(_claim_and_run, item, total, config)] = item
        for future in as_completed(futures):
            item = futures[future]
            status, result = future.result()
            if result is None:
                busy.append(item)
                continue
            note = "  (done by another process, kept)" if status != "trained" else ""
            say(summary_line(result, item.number, total) + note)
    except BaseException:
        # Runs not started are dropped; those under way finish (or are interrupted
        # with the parent by Ctrl-C); every finished record is on disk already.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return sorted(busy, key=lambda item: item.number)
