"""One owner per run directory: a lock file that names the process holding it.

A sweep takes a run's lock before it trains the run and lets go when the run's record
is written (or the run fails). The lock is the kernel's (``fcntl.flock``) on the file
``run.lock`` in the run's folder, and the file names its holder: process id, host and
start time, for the messages.

When a lock counts as stale:

- On one host the kernel releases the lock of a process that ends, however it ends
  (``kill -9`` included), so a lock file this host can lock again was left by a dead
  process: it is taken over, and the taker says so. Process ids are never compared,
  so a reused id cannot keep a dead run locked.
- A lock file naming another host (a log folder on a shared file system) is never
  taken as stale: the file system may not pass locks between hosts. The sweep stops
  with one line naming the file; delete it once no process of that host runs there.
- Where ``fcntl`` is missing (Windows), the file is created exclusively; a lock file
  found there is treated as the one on another host.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "run.lock"
"""The lock file's name in a run folder."""


class LockInDoubt(Exception):
    """A lock file whose process may or may not still run (another host's)."""


@dataclass(frozen=True)
class Owner:
    """Who holds (or held) a lock.

    Attributes:
        pid: Process id.
        host: Host name (``socket.gethostname()``).
        started: When the lock was taken, local time ``YYYY-MM-DD HH:MM:SS``.
    """

    pid: int
    host: str
    started: str

    @classmethod
    def me(cls) -> Owner:
        return cls(
            os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S")
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {self.started})"


def read_owner(path: Path) -> Optional[Owner]:
    """The owner a lock file names, or None (no file, or not a lock file)."""
    try:
        return _parse(path.read_bytes())
    except OSError:
        return None


def _parse(data: bytes) -> Optional[Owner]:
    try:
        fields: Dict[str, Any] = json.loads(data.decode("utf-8"))
        return Owner(int(fields["pid"]), str(fields["host"]), str(fields["started"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class RunLock:
    """The lock of one run folder, held until :meth:`release`.

    Attributes:
        path: The lock file.
        took_over: The owner named by a stale lock this one replaced, or None.
    """

    def __init__(self, path: Path, fd: int, took_over: Optional[Owner]) -> None:
        self.path = path
        self._fd: Optional[int] = fd
        self.took_over = took_over

    @classmethod
    def acquire(cls, path: Path) -> Optional[RunLock]:
        """Takes the lock at path; None when a live process of this host holds it.

        Raises:
            LockInDoubt: If the file names another host (see the module).
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            return cls._acquire_exclusive(path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    return None
                raise
            # The holder before us may have deleted the file while we waited for
            # it: then we hold a lock on a file no one else will open. Start over.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            size = os.fstat(fd).st_size
            previous = _parse(os.pread(fd, size, 0)) if size else None
            if previous is not None and previous.host != socket.gethostname():
                os.close(fd)
                raise LockInDoubt(_in_doubt(path, previous))
            lock = cls(path, fd, previous)
            lock._write(Owner.me())
            return lock

    @classmethod
    def _acquire_exclusive(cls, path: Path) -> Optional[RunLock]:  # pragma: no cover
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = read_owner(path) or Owner(0, "?", "?")
            raise LockInDoubt(_in_doubt(path, owner)) from None
        lock = cls(path, fd, None)
        lock._write(Owner.me())
        return lock

    def _write(self, owner: Owner) -> None:
        assert self._fd is not None
        data = json.dumps(
            {"pid": owner.pid, "host": owner.host, "started": owner.started}
        ).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data + b"\n", 0)

    def release(self) -> None:
        """Deletes the lock file, then lets go of the lock (twice is harmless)."""
        if self._fd is None:
            return
        # Delete while still holding: a process that opened the old file then finds
        # it gone and starts over on a new one.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _in_doubt(path: Path, owner: Owner) -> str:
    return (
        f"the run is locked by {owner.describe()}, which this host cannot check: "
        f"if that process no longer runs, delete {path} and run again"
    )


__all__ = ["LOCK_NAME", "LockInDoubt", "Owner", "RunLock", "read_owner"]
