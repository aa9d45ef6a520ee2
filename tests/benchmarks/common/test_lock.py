"""A run folder's lock: one owner, stale locks of dead processes taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common.lock import LockInDoubt, Owner, RunLock, read_owner

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the kernel's lock (fcntl) is POSIX only"
)


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "run" / "run.lock"
    first = RunLock.acquire(path)
    assert first is not None and first.took_over is None
    owner = read_owner(path)
    assert owner == Owner(os.getpid(), socket.gethostname(), owner.started)
    assert RunLock.acquire(path) is None  # held (here by this very process)
    first.release()
    assert not path.exists()  # released locks leave no file
    second = RunLock.acquire(path)
    assert second is not None and second.took_over is None
    second.release()
    second.release()  # twice is harmless


def test_a_lock_held_by_another_live_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; "
            "from benchmarks.common.lock import RunLock; "
            f"lock = RunLock.acquire(Path({str(path)!r})); "
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert RunLock.acquire(path) is None
        owner = read_owner(path)
        assert owner is not None and owner.pid == holder.pid
    finally:
        holder.kill()  # as kill -9: no clean-up in the holder
        holder.wait()
    # The kernel let go with the process: the file it left is taken over.
    lock = RunLock.acquire(path)
    assert lock is not None
    assert lock.took_over is not None and lock.took_over.pid == holder.pid
    owner = read_owner(path)
    assert owner is not None and owner.pid == os.getpid()
    lock.release()


def test_a_stale_lock_file_of_this_host_is_taken_over(tmp_path: Path) -> None:
    """A file no process locks, naming this host: its process is gone (any pid)."""
    path = tmp_path / "run.lock"
    left = {"pid": os.getpid(), "host": socket.gethostname(), "started": "then"}
    path.write_text(json.dumps(left))  # even a live pid: what counts is the lock
    lock = RunLock.acquire(path)
    assert lock is not None
    assert lock.took_over == Owner(os.getpid(), socket.gethostname(), "then")
    lock.release()


def test_a_lock_file_of_another_host_is_in_doubt(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    other = {"pid": 4242, "host": "another-host.example", "started": "then"}
    path.write_text(json.dumps(other))
    with pytest.raises(LockInDoubt, match="pid 4242 on another-host.example") as info:
        RunLock.acquire(path)
    assert f"delete {path}" in str(info.value)
    assert json.loads(path.read_text()) == other  # left as it was


def test_an_empty_or_damaged_lock_file_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    path.write_text("{not json")
    lock = RunLock.acquire(path)
    assert lock is not None and lock.took_over is None
    lock.release()
