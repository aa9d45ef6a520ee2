"""Runs a test's worker in several spawned processes, with a deadline.

The two-process (gloo) tests write each rank's result to ``{rank}.pt`` in a
folder and compare the files afterwards. A gloo group can hang, and the default
timeouts are 30 minutes, so a hang would stall the whole suite: on 2026-12-08 the
minimum-versions CI job (torch 2.3.1) sat in one such test until the CI run's
90-minute limit. Here every process is bounded:

- every worker dumps its stack to stderr if it is still alive after
  ``STACK_DUMP_S``, which pytest shows with the failure;
- ``run_workers`` stops the processes at ``DEADLINE_S`` and starts them once
  more on a new port (a hang of the gloo group is not the loss's fault; an error a
  worker raises is never retried), then fails the test;
- where every rank has already written its result and only the teardown of the
  group hangs (seen at torch 2.3), the stragglers are stopped after a grace period
  and the test goes on with the results, with a warning;
- the group's own timeout (``GROUP_TIMEOUT_S``) is longer than the deadline, so
  the deadline decides.
"""

from __future__ import annotations

import datetime
import faulthandler
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest
import torch
from torch import distributed as torch_dist
from torch import multiprocessing as mp

DEADLINE_S = 150.0
GROUP_TIMEOUT_S = DEADLINE_S + 60.0
STACK_DUMP_S = DEADLINE_S - 20.0
TEARDOWN_GRACE_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_group(rank: int, world_size: int, port: int) -> None:
    """Joins a gloo group on 127.0.0.1 with bounded timeouts (call it in the worker)."""
    faulthandler.dump_traceback_later(STACK_DUMP_S, exit=False)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch_dist.init_process_group(
        "gloo",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S),
    )


def leave_group() -> None:
    """Waits for every rank, then destroys the group (call it in the worker)."""
    # Both ranks reach the teardown before either destroys its group: at torch 2.3
    # (gloo) a rank whose peer had already exited hung in the destroy.
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()


def save_result(result: Any, out_dir: str, rank: int) -> None:
    """Writes a rank's result whole or not at all (``run_workers`` checks for it)."""
    path = Path(out_dir) / f"{rank}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(result, tmp)
    os.replace(tmp, path)


def run_workers(
    worker: Callable[..., None],
    args: Sequence[Any],
    nprocs: int,
    out_dir: str,
    deadline_s: float = DEADLINE_S,
    grace_s: float = TEARDOWN_GRACE_S,
    attempts: int = 2,
) -> None:
    """Runs ``worker(rank, port, *args)`` in ``nprocs`` spawned processes and waits.

    ``port`` is a free port on 127.0.0.1 for the group's store, new for each
    attempt. A run that has not written every result by ``deadline_s`` is stopped
    and started again (``attempts`` in all); a worker that raises is not retried.

    Raises:
        torch.multiprocessing.ProcessRaisedException: A worker raised (its traceback).
        pytest.fail.Exception: No attempt had written every result by ``deadline_s``.
    """
    results = [Path(out_dir) / f"{rank}.pt" for rank in range(nprocs)]
    for attempt in range(1, attempts + 1):
        for path in results:
            path.unlink(missing_ok=True)
        outcome = _attempt(worker, args, nprocs, results, deadline_s, grace_s)
        if outcome == "finished":
            return
        if outcome == "teardown hung":
            warnings.warn(
                f"every rank wrote its result, but a process did not exit within "
                f"{grace_s:.0f} s (the group's teardown hung); it was stopped",
                stacklevel=2,
            )
            return
        missing = [p.name for p in results if not p.exists()]
        if attempt < attempts:
            warnings.warn(
                f"attempt {attempt} of {attempts}: the {nprocs} processes had not "
                f"written {missing} after {deadline_s:.0f} s; starting again",
                stacklevel=2,
            )
    pytest.fail(
        f"the {nprocs} processes had not finished after {deadline_s:.0f} s, "
        f"{attempts} times (results missing: {missing}); their stacks are in the "
        f"captured stderr"
    )


def _attempt(
    worker: Callable[..., None],
    args: Sequence[Any],
    nprocs: int,
    results: Sequence[Path],
    deadline_s: float,
    grace_s: float,
) -> str:
    context = mp.start_processes(
        worker,
        args=(free_port(), *args),
        nprocs=nprocs,
        join=False,
        start_method="spawn",
    )
    start = time.monotonic()
    all_written_at = None
    while not context.join(timeout=0.5):
        now = time.monotonic()
        if all_written_at is None and all(p.exists() for p in results):
            all_written_at = now
        if all_written_at is not None and now - all_written_at > grace_s:
            _stop(context.processes)
            return "teardown hung"
        if all_written_at is None and now - start > deadline_s:
            _stop(context.processes)
            return "deadline"
    return "finished"


def _stop(processes: Sequence[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
