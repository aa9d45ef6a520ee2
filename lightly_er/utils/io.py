"""Atomic file writes: readers see the old file or the new one, whole, never half."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike[str]]) -> Iterator[Path]:
    """Yields a temporary path next to path; renames it to path if the block succeeds.

    Whatever the block writes to the temporary path replaces path in one
    ``os.replace``. If the block raises (or is interrupted), the temporary file is
    removed and path is left as it was. Parent folders are created.

    Examples:
        >>> import tempfile, pathlib
        >>> from lightly_er.utils.io import atomic_path
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("a,b\\n")
        >>> target.read_text()
        'a,b\\n'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Union[str, os.PathLike[str]], data: Union[str, bytes]) -> None:
    """Writes text (UTF-8) or bytes to path atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(data)
