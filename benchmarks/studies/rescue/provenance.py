"""Which code ran: the commit, whether the tree was dirty, the versions.

:func:`code_state` is written into every run record of the study (``code``) and
into ``DIR/code.json``, one entry per invocation of the study's command.
:func:`check_code` refuses to resume a study whose code changed since its last
invocation (another commit, or other uncommitted changes) unless told to.

A minimal stand-in, until the engines share one run record
(``benchmarks/common/records.py``); the fields are the ones that record will carry.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import lightly
import torch

import lightly_er
from lightly_er.utils.io import write_atomic

REPO = Path(__file__).resolve().parents[3]
"""The checkout this module was imported from."""


class CodeChanged(ValueError):
    """The study's code changed since its last invocation (see :func:`check_code`)."""


def _git(*args: str, root: Path) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout


def code_state(root: Path = REPO) -> Dict[str, Any]:
    """The commit (``git rev-parse HEAD``), the dirty flag and the versions.

    ``dirty`` is True when the tree differs from the commit (``git status
    --porcelain``: changed or untracked files that git does not ignore);
    ``diff_sha256`` is then the SHA-256 of ``git diff HEAD`` and that status, so
    that two dirty trees can be told apart. Without git (or outside a checkout)
    ``commit`` and ``dirty`` are None.
    """
    head = _git("rev-parse", "HEAD", root=root)
    status = _git("status", "--porcelain", root=root)
    diff = _git("diff", "HEAD", root=root)
    dirty = bool(status) if status is not None else None
    changes = f"{diff or ''}{status or ''}"
    return {
        "commit": head.strip() if head else None,
        "dirty": dirty,
        "diff_sha256": hashlib.sha256(changes.encode()).hexdigest() if dirty else None,
        "versions": {
            "torch": torch.__version__,
            "lightly": str(getattr(lightly, "__version__", "unknown")),
            "lightly_er": lightly_er.__version__,
            "python": platform.python_version(),
        },
    }


def same_code(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Whether two code states are the same commit with the same changes."""
    keys = ("commit", "dirty", "diff_sha256")
    return all(a.get(k) == b.get(k) for k in keys)


def check_code(
    log_dir: Path, state: Dict[str, Any], allow_change: bool = False
) -> List[Dict[str, Any]]:
    """Records this invocation's code in ``DIR/code.json``; refuses a change.

    Returns:
        Every invocation so far, this one last.

    Raises:
        CodeChanged: If the last invocation ran other code and ``allow_change``
            is False (the message names both commits).
    """
    path = log_dir / "code.json"
    invocations: List[Dict[str, Any]] = []
    if path.exists():
        invocations = json.loads(path.read_text())["invocations"]
    if invocations and not same_code(invocations[-1], state):
        if not allow_change:
            last = invocations[-1]
            raise CodeChanged(
                f"{log_dir} was run at commit {last.get('commit')} (dirty: "
                f"{last.get('dirty')}); this checkout is {state.get('commit')} "
                f"(dirty: {state.get('dirty')}). Resuming would mix code in one "
                "study: use another --log-dir, or pass --allow-code-change (the "
                "report then lists which runs used which commit)"
            )
    entry = dict(state, started=time.strftime("%Y-%m-%d %H:%M:%S"))
    invocations.append(entry)
    write_atomic(path, json.dumps({"invocations": invocations}, indent=1) + "\n")
    return invocations
