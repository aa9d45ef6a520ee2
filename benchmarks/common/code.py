"""The code a run was made with, and the one rule for resuming across a change of it.

:func:`current_code` reads the checkout: the commit (``git rev-parse HEAD``), whether
the tree is dirty (``git status --porcelain`` lists anything outside the run's own log
directory), a hash of the uncommitted changes, and the versions of Python, torch,
lightly and lightly-er. Every engine stores it in its run records
(:class:`benchmarks.common.records.RunRecord`) and, when a run starts, beside its
checkpoints (:func:`write_started`), so that a resumed run can tell whether the code
changed since.

The resume rule (:func:`check_resume`): a run or study resumes only with the code it
was started with, the same commit and, for a dirty tree, the same uncommitted
changes. Otherwise it stops with one line naming both commits, unless told to go on
(``--allow-code-change``); the tables and reports then name each run's commit.

Only the standard library is imported: ``--help`` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from benchmarks.common.cli import UsageError

ROOT = Path(__file__).resolve().parents[2]
"""The repository the benchmarks run from."""

PACKAGES: Tuple[str, ...] = ("torch", "lightly", "lightly_er")
"""The packages whose versions a record names (beside Python's)."""

ALLOW_FLAG = "--allow-code-change"
"""The command-line flag that lets a run resume across a change of its code."""

STARTED_NAME = "code.json"
"""The file, in a run's folder, that names the code the run was started with
(:func:`write_started`)."""

LARGE_FILE = 10 * 2**20
"""Untracked files above this size enter the hash by name and size only."""


@dataclass(frozen=True)
class CodeVersion:
    """The code of a run: commit, dirty flag, uncommitted changes and versions.

    Attributes:
        commit: The full commit hash of the checkout, or None outside a git checkout.
        dirty: Whether the tree had uncommitted changes (the run's own log directory
            aside).
        diff: SHA-256 of those changes (tracked diffs and untracked files), or None
            for a clean tree.
        versions: ``python``, ``torch``, ``lightly`` and ``lightly_er`` versions.
    """

    commit: Optional[str]
    dirty: bool = False
    diff: Optional[str] = None
    versions: Dict[str, str] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        """``5da75f1`` for a clean tree, ``5da75f1 (dirty, changes 1a2b3c4d)``."""
        if self.commit is None:
            return "no git commit"
        short = self.commit[:7]
        if not self.dirty:
            return short
        return f"{short} (dirty, changes {(self.diff or '?')[:8]})"

    def same_code(self, other: CodeVersion) -> bool:
        """Same commit and the same uncommitted changes (versions aside)."""
        return (self.commit, self.dirty, self.diff) == (
            other.commit,
            other.dirty,
            other.diff,
        )

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeVersion:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: If ``data`` is not a code description.
        """
        try:
            return cls(
                commit=data["commit"],
                dirty=bool(data["dirty"]),
                diff=data.get("diff"),
                versions=dict(data.get("versions", {})),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a code description: {data!r}") from error


def _git(args: Sequence[str], root: Path) -> Optional[bytes]:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def _inside(path: str, ignored: Sequence[str]) -> bool:
    return any(path == i or path.startswith(i.rstrip("/") + "/") for i in ignored)


def _relative_ignores(root: Path, ignore: Iterable[Path]) -> List[str]:
    out = []
    for path in ignore:
        try:
            relative = Path(path).resolve().relative_to(root.resolve())
        except ValueError:
            continue  # outside the checkout: git does not see it
        out.append(relative.as_posix())
    return out


def _status_paths(status: bytes) -> List[str]:
    """The paths of ``git status --porcelain -z`` (both of a rename)."""
    paths: List[str] = []
    entries = status.decode("utf-8", "surrogateescape").split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":  # a rename or copy: its origin follows
            paths.append(entries[index])
            index += 1
    return paths


def _diff_hash(root: Path, paths: Sequence[str]) -> str:
    """SHA-256 of the tracked changes and the untracked files among ``paths``."""
    digest = hashlib.sha256()
    tracked = _git(["diff", "HEAD", "--binary", "--", *paths], root) or b""
    digest.update(tracked)
    untracked = _git(
        ["ls-files", "--others", "--exclude-standard", "-z", "--", *paths], root
    )
    for name in sorted(
        (untracked or b"").decode("utf-8", "surrogateescape").split("\0")
    ):
        if not name:
            continue
        file = root / name
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        if file.is_file():
            size = file.stat().st_size
            digest.update(str(size).encode() + b"\0")
            if size <= LARGE_FILE:
                digest.update(file.read_bytes())
    return digest.hexdigest()


def package_versions() -> Dict[str, str]:
    """The versions of Python, torch, lightly and lightly-er (imports them)."""
    import importlib

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            versions[name] = "not installed"
            continue
        versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def current_code(
    ignore: Iterable[Path] = (), root: Path = ROOT, versions: bool = True
) -> CodeVersion:
    """The code of the checkout at ``root`` now.

    Args:
        ignore: Folders whose files do not make the tree dirty: the run's own log
            directory (where it lies inside the checkout).
        root: The checkout (default: the one these benchmarks are in).
        versions: Whether to read the packages' versions (this imports torch).

    Returns:
        The commit, dirty flag, hash of the changes and versions. Outside a git
        checkout (or without git) the commit is None and the tree counts as clean.
    """
    found = package_versions() if versions else {}
    head = _git(["rev-parse", "HEAD"], root)
    if head is None:
        return CodeVersion(None, versions=found)
    status = _git(["status", "--porcelain", "-z", "--untracked-files=all"], root)
    ignored = _relative_ignores(root, ignore)
    changed = [p for p in _status_paths(status or b"") if not _inside(p, ignored)]
    if not changed:
        return CodeVersion(head.decode().strip(), versions=found)
    return CodeVersion(
        head.decode().strip(),
        dirty=True,
        diff=_diff_hash(root, sorted(set(changed))),
        versions=found,
    )


def write_started(path: Path, code: CodeVersion, fresh: bool = True) -> None:
    """Names the code a run was started with in ``path`` (a JSON file, atomically).

    Args:
        path: The run's file of its starting code (the CIFAR-10 sweep: ``code.json``
            in the run's folder; the studies: beside the run's checkpoint).
        code: The code of this process.
        fresh: Whether the run starts from nothing (the file is replaced); a resumed
            run keeps the code it was started with, if the file names one.
    """
    from lightly_er.utils.io import write_atomic  # loads torch: not at --help

    if fresh or not path.exists():
        write_atomic(path, json.dumps(code.to_dict(), indent=2, sort_keys=True) + "\n")


def read_started(path: Path) -> Optional[CodeVersion]:
    """The code a run was started with (:func:`write_started`), or None if unnamed."""
    try:
        return CodeVersion.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError):
        return None


class CodeChanged(UsageError):
    """Raised when a run would resume with other code than it was started with."""


def check_resume(
    found: Mapping[str, Optional[CodeVersion]],
    current: CodeVersion,
    allow_code_change: bool = False,
    where: str = "",
) -> List[str]:
    """The one resume rule: resume only with the code the runs were made with.

    Args:
        found: Every finished or started run about to be kept or resumed, by name,
            with the code it names (None: a record written before records named
            their code).
        current: The code of this process (:func:`current_code`).
        allow_code_change: Resume anyway (``--allow-code-change``).
        where: The log directory, for the message.

    Returns:
        The names of the runs made with other code (empty: none; only returned when
        ``allow_code_change`` is set).

    Raises:
        CodeChanged: If a run was made with other code and ``allow_code_change`` is
            not set; the message names both commits and the way on.
    """
    other = sorted(
        name
        for name, code in found.items()
        if code is None or not code.same_code(current)
    )
    if not other or allow_code_change:
        return other
    groups: Dict[str, List[str]] = {}
    for name in other:
        code = found[name]
        label = (
            "no commit recorded (made before run records named their code)"
            if code is None
            else f"commit {code.describe()}"
        )
        groups.setdefault(label, []).append(name)
    made = "; ".join(
        f"{len(names)} run(s) with {label} (e.g. {names[0]})"
        for label, names in sorted(groups.items())
    )
    place = f" in {where}" if where else ""
    raise CodeChanged(
        f"cannot resume{place}: {made}, but this checkout is commit "
        f"{current.describe()}; give another --log-dir, or {ALLOW_FLAG} to resume "
        "anyway (each run's record and the tables then name its commit)"
    )


def code_summary(codes: Sequence[Optional[CodeVersion]]) -> str:
    """``5da75f1 (12 runs)`` or ``5da75f1 (10 runs), 2835127 (2 runs)``."""
    counts: Dict[str, int] = {}
    for code in codes:
        label = "no commit recorded" if code is None else code.describe()
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(
        f"{label} ({n} run{'s' * (n != 1)})" for label, n in counts.items()
    )
