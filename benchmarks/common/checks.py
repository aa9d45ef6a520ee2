"""Checks shared by the benchmark command lines: one clear line for a bad value."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def check_accelerator(accelerator: str, devices: int = 1) -> None:
    """Raises ValueError unless the machine has the accelerator (and enough devices).

    ``auto`` and ``cpu`` are always available.
    """
    if accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0:
            raise ValueError(
                f"--accelerator {accelerator}: no CUDA GPU is available on this "
                "machine; use --accelerator cpu (or auto)"
            )
        if devices > available:
            raise ValueError(
                f"--devices {devices}: this machine has {available} CUDA GPU(s)"
            )
    elif accelerator == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                "--accelerator mps: MPS is not available on this machine; use "
                "--accelerator cpu (or auto)"
            )


def check_log_dir(path: Path, flag: str = "--log-dir") -> None:
    """Raises ValueError unless path is (or can be made) a writable directory.

    Creates nothing that is not there afterwards: a folder it had to create to test
    is removed again.
    """
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} exists and is not a directory")
    created = []
    probe = path
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.remove(name)
    except OSError as error:
        raise ValueError(f"{flag} {path} is not writable: {error.strerror}") from None
    finally:
        for folder in created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                pass
