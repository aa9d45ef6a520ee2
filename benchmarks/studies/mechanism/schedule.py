"""Runs the study's tasks in the registered order on worker processes.

Two single-thread worker processes (the 2-core machine) take the tasks in order,
each the first whose view stream and untrained evaluation are done. A finished
task is one progress line ``[k/N] <task> ... elapsed, ETA`` on stdout and in
``DIR/status.json``; the index of the corpus is rewritten after every run. A
worker whose main process is killed stops at its next step; the same command
resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, TextIO, Tuple

from benchmarks.common.cli import UsageError
from benchmarks.common.code import (
    CodeVersion,
    check_resume,
    code_summary,
    current_code,
    read_started,
)
from benchmarks.common.records import RunRecord
from benchmarks.studies.mechanism.config import (
    ARMS,
    StudyConfig,
    Task,
    eval_steps,
    stream_samples,
)
from benchmarks.studies.mechanism.data import stream_ready
from benchmarks.studies.mechanism.runner import (
    Env,
    checkpoint_path,
    record_path,
    run_task,
    setup_process,
    started_code_path,
    stream_path,
    untrained_path,
)
from lightly_er.utils.io import write_atomic

STEP_MS: Dict[str, float] = {
    "byol": 85,
    "byol-nopred": 75,
    "byol-ema0": 85,
    "byol-unif": 90,
    "simsiam": 280,
    "simsiam-nosg": 310,
    "dino": 120,
    "swav": 55,
    "simclr": 48,
}
"""One-thread milliseconds per batch-128 step (phase 1): the ETA's cost model."""
EVAL_S = 2.5
WINDOW = 12
"""Finished tasks whose rate the ETA extrapolates."""
STREAM_IMAGES_PER_S = 1500.0


def task_cost(task: Task, config: StudyConfig) -> float:
    """Estimated one-thread seconds of a task (relative units for the ETA)."""
    if task.kind == "stream":
        return stream_samples(config) / STREAM_IMAGES_PER_S
    if task.kind == "untrained":
        return 2 * EVAL_S
    assert task.spec is not None
    spec = task.spec
    ms = STEP_MS.get(spec.arm, STEP_MS.get(ARMS[spec.arm].method, 100.0))
    steps_cost = spec.steps * ms / 1000 * spec.batch / 128
    return steps_cost + len(eval_steps(spec.steps, config.evaluations)) * EVAL_S


def is_done(task: Task, log_dir: Path, config: StudyConfig) -> bool:
    if task.kind == "stream":
        return stream_ready(
            stream_path(log_dir, task.method, task.seed), stream_samples(config)
        )
    if task.kind == "untrained":
        return untrained_path(log_dir, task.seed, task.wide).exists()
    assert task.spec is not None
    return record_path(log_dir, task.spec.run_id).exists()


def check_code(
    tasks: Sequence[Task],
    log_dir: Path,
    code: CodeVersion,
    allow_code_change: bool = False,
    out: Optional[TextIO] = None,
) -> None:
    """The resume rule (:func:`benchmarks.common.code.check_resume`) over the runs
    the study would keep (their records) or resume (their checkpoints).

    Raises:
        CodeChanged: If one was made with other code and ``allow_code_change`` is
            not set.
    """
    found: Dict[str, Optional[CodeVersion]] = {}
    for task in tasks:
        if task.kind != "run" or task.spec is None:
            continue
        run_id = task.spec.run_id
        record = record_path(log_dir, run_id)
        if record.exists():
            found[run_id] = RunRecord.load(record).code
        elif checkpoint_path(log_dir, run_id).exists():
            found[run_id] = read_started(started_code_path(log_dir, run_id))
    other = check_resume(found, code, allow_code_change, str(log_dir))
    if other:
        print(
            f"{len(other)} run(s) were made with other code than this checkout's "
            f"({code.describe()}); kept and resumed as --allow-code-change asks: "
            + code_summary([found[name] for name in other]),
            file=out if out is not None else sys.stdout,
            flush=True,
        )


_ENV: Optional[Env] = None


def _init_worker(
    config: StudyConfig,
    log_dir: Path,
    data_dir: Optional[Path],
    code: Optional[CodeVersion] = None,
    backbone_views: bool = False,
) -> None:
    global _ENV
    setup_process()
    _ENV = Env(config, log_dir, data_dir, parent=os.getppid(), code=code,
               backbone_views=backbone_views)  # fmt: skip


def _work(task: Task) -> Dict[str, Any]:
    assert _ENV is not None
    return run_task(_ENV, task.kind, task.method, task.seed, task.spec, task.wide)


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class Progress:
    """Progress lines and ``status.json``: done/total, elapsed, ETA."""

    def __init__(
        self,
        tasks: Sequence[Task],
        done: Sequence[Task],
        config: StudyConfig,
        log_dir: Path,
        workers: int,
        out: TextIO,
    ) -> None:
        self.total = len(tasks)
        self.config = config
        self.log_dir = log_dir
        self.out = out
        self.workers = max(1, workers)
        self.finished = len(done)
        self.remaining_cost = sum(task_cost(t, config) for t in tasks if t not in done)
        self.done_cost = 0.0
        self.start = time.time()
        self.running: List[str] = []
        self.failed: List[str] = []
        self.recent: Deque[Tuple[float, float]] = deque(maxlen=WINDOW)

    def eta(self) -> float:
        """Remaining estimated cost over the rate of the last tasks (or all so far).

        The rate is that of the last :data:`WINDOW` finished tasks, so that the ETA
        follows the machine's current load rather than its history.
        """
        now = time.time()
        if len(self.recent) >= 3:
            (first, _), *rest = self.recent
            span = now - first
            done = sum(cost for _, cost in rest)
            if span > 0 and done > 0:
                return self.remaining_cost * span / done
        elapsed = now - self.start
        if self.done_cost > 0 and elapsed > 0:
            return self.remaining_cost * elapsed / self.done_cost
        return self.remaining_cost / self.workers

    def update(
        self, task: Task, result: Optional[Dict[str, Any]], error: Optional[str] = None
    ) -> None:
        # Written below: a finished task is no longer running.
        self.running = [key for key in self.running if key != task.key]
        cost = task_cost(task, self.config)
        self.remaining_cost -= cost
        self.done_cost += cost
        self.recent.append((time.time(), cost))
        self.finished += 1
        if error is not None:
            self.failed.append(task.key)
            what = f"FAILED: {error}"
        else:
            assert result is not None
            what = f"done in {result['wall_s']:.0f} s ({result['cpu_s']:.0f} s CPU)"
        line = (
            f"[{self.finished}/{self.total}] {task.key}: {what}; elapsed "
            f"{_fmt(time.time() - self.start)}, ETA {_fmt(self.eta())}"
        )
        print(line, file=self.out, flush=True)
        self.write(line)

    def write(self, last: str = "") -> None:
        status = {
            "done": self.finished,
            "total": self.total,
            "running": self.running,
            "failed": self.failed,
            "elapsed_s": round(time.time() - self.start, 1),
            "eta_s": round(self.eta(), 1),
            "last": last,
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "pid": os.getpid(),
        }
        write_atomic(self.log_dir / "status.json", json.dumps(status, indent=1) + "\n")


def execute(
    tasks: Sequence[Task],
    config: StudyConfig,
    log_dir: Path,
    data_dir: Optional[Path],
    workers: int = 2,
    on_run_done: Optional[Callable[[], None]] = None,
    out: Optional[TextIO] = None,
    env: Optional[Env] = None,
    allow_code_change: bool = False,
    backbone_views: bool = False,
) -> List[str]:
    """Does the unfinished tasks in order; returns the keys of failed tasks.

    ``workers`` <= 1 runs them in this process (``env`` may then be given, e.g.
    with a test's interruption hook); otherwise on that many spawned processes.
    First the resume rule (:func:`check_code`): runs finished or started with other
    code stop the study unless ``allow_code_change``. ``backbone_views``: every run
    keeps two augmented views' features at its end (:mod:`.views`).
    """
    out = out if out is not None else sys.stdout
    code = env.run_code if env is not None else current_code(ignore=[log_dir])
    check_code(tasks, log_dir, code, allow_code_change, out)
    done = [t for t in tasks if is_done(t, log_dir, config)]
    done_keys = {t.key for t in done}
    pending = [t for t in tasks if t.key not in done_keys]
    progress = Progress(tasks, done, config, log_dir, workers, out)
    print(
        f"{len(done)} of {len(tasks)} tasks already done; {len(pending)} to go, "
        f"ETA {_fmt(progress.eta())} ({workers} worker(s))",
        file=out,
        flush=True,
    )
    progress.write()
    failed_keys: set[str] = set()

    def ready(task: Task) -> bool:
        return all(d in done_keys for d in task.depends)

    def blocked(task: Task) -> bool:
        return any(d in failed_keys for d in task.depends)

    if workers <= 1:
        local = env or Env(
            config, log_dir, data_dir, code=code, backbone_views=backbone_views
        )
        setup_process()
        for task in pending:
            if blocked(task):
                failed_keys.add(task.key)
                progress.update(task, None, "a task it needs failed")
                continue
            progress.running = [task.key]
            args = (task.kind, task.method, task.seed, task.spec, task.wide)
            result = run_task(local, *args)
            done_keys.add(task.key)
            progress.update(task, result)
            if task.kind == "run" and on_run_done is not None:
                on_run_done()
        return progress.failed

    context = multiprocessing.get_context("spawn")
    in_flight: Dict[Future[Dict[str, Any]], Task] = {}
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(config, log_dir, data_dir, code, backbone_views),
    ) as pool:
        while pending or in_flight:
            for task in list(pending):
                if len(in_flight) >= workers:
                    break
                if blocked(task):
                    pending.remove(task)
                    failed_keys.add(task.key)
                    progress.update(task, None, "a task it needs failed")
                elif ready(task):
                    pending.remove(task)
                    in_flight[pool.submit(_work, task)] = task
            progress.running = [t.key for t in in_flight.values()]
            progress.write()
            if not in_flight:
                if pending:
                    raise RuntimeError(f"no task can start: {[t.key for t in pending]}")
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                task = in_flight.pop(future)
                error = future.exception()
                if error is not None:
                    if isinstance(error, KeyboardInterrupt):
                        raise error
                    failed_keys.add(task.key)
                    progress.update(task, None, f"{type(error).__name__}: {error}")
                else:
                    done_keys.add(task.key)
                    progress.update(task, future.result())
                    if task.kind == "run" and on_run_done is not None:
                        on_run_done()
    return progress.failed


def status_line(log_dir: Path) -> str:
    """One line from ``DIR/status.json``: tasks done, running, failed and the ETA.

    Raises:
        UsageError: If ``log_dir`` holds no study status.
    """
    path = log_dir / "status.json"
    if not path.exists():
        raise UsageError(f"no study status in {log_dir}")
    s = json.loads(path.read_text())
    eta = int(s["eta_s"])
    return (
        f"{s['done']}/{s['total']} tasks done, running: {', '.join(s['running']) or '-'}; "
        f"failed: {len(s['failed'])}; ETA {eta // 3600}h{eta % 3600 // 60:02d}m "
        f"(updated {s['updated']}); last: {s['last']}"
    )
