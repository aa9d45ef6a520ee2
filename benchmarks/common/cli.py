"""The command lines of the benchmarks: one-line errors and the shared argument checks.

A bad argument is one line on stderr and exit status 2 (:class:`OneLineErrorParser`,
:func:`fail`), before anything is written; ``--help`` has the rest (with every
default, :class:`DefaultsHelpFormatter`). A check that needs the data (a missing
dataset, a batch larger than the training set, records made with other settings)
raises :class:`UsageError` before the first run starts, and :func:`run_command`
gives it the same one line and exit status 2. Anything else that goes wrong during a
run is a crash: its traceback and exit status 1. Ctrl+C says how to resume.

Nothing here imports torch at module level: ``--help`` of every entry point parses
its arguments before torch, lightly or Lightning load.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn


def say(line: str) -> None:
    """Prints one line to stdout in one write and flushes it.

    Runs in parallel processes share stdout; ``print`` writes the text and its
    newline separately when Python runs unbuffered (``PYTHONUNBUFFERED``, as in
    CI), so two processes' lines could interleave mid-line.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class UsageError(ValueError):
    """A setting the user can fix, found before any run started: one line, exit 2."""


def fail(message: str, prefix: str = "error: ", hint: str = "") -> NoReturn:
    """Prints ``<prefix><message><hint>`` as one line on stderr and exits with 2."""
    print(f"{prefix}{message}{hint}", file=sys.stderr)
    raise SystemExit(2)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: <value>)`` to every option whose help does not name one
    (``(default: off)`` to a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.default is argparse.SUPPRESS
        ):
            return text
        return text + (
            " (default: off)" if action.nargs == 0 else " (default: %(default)s)"
        )


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2.

    Args:
        *args, **kwargs: As ``argparse.ArgumentParser``.
        error_prefix: What precedes the message; None: ``"<prog>: error: "``.
        hint: What follows the message (e.g. ``" (see --help)"``).
    """

    def __init__(
        self,
        *args: Any,
        error_prefix: str | None = None,
        hint: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.error_prefix = error_prefix
        self.hint = hint

    def error(self, message: str) -> NoReturn:
        """Prints the message as one line and exits with status 2."""
        prefix = (
            f"{self.prog}: error: " if self.error_prefix is None else self.error_prefix
        )
        fail(message, prefix, self.hint)


def check_accelerator(accelerator: str, devices: int = 1) -> None:
    """Raises ValueError unless the machine has the accelerator (and enough devices).

    ``auto`` and ``cpu`` are always available.
    """
    import torch

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


def quiet_lightning() -> None:
    """Keeps Lightning's per-run banners (seed, devices, tips) off the console.

    Warnings and errors still show; the sweep prints one summary line per run.
    """
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # lightly's DINO head builds its last layer with the deprecated weight_norm.
    warnings.filterwarnings(
        "ignore", message=r".*torch\.nn\.utils\.weight_norm.* is deprecated"
    )


def run_command(prog: str, run: Callable[[], object]) -> int:
    """Runs a sweep; returns the exit code.

    A :class:`UsageError` (raised before the first run: a missing dataset, records
    made with other settings) is one line ``<prog>: error: ...`` and exit code 2.
    Any other exception is a crash: its traceback, a line saying that finished runs
    are kept, exit code 1. Ctrl+C says that the finished runs are kept and exits
    with 130.
    """
    try:
        run()
    except UsageError as error:
        message = " ".join(str(error).split())  # one line, whatever the cause says
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; finished runs are kept, run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    except Exception:
        traceback.print_exc()
        print(
            f"{prog}: a run failed (traceback above); finished runs are kept, and "
            "the same command resumes the others",
            file=sys.stderr,
        )
        return 1
    return 0
