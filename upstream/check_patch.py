"""Runs lightly's own checks on the branch make_patch.py made; exit 0 when all pass.

    python upstream/check_patch.py --lightly PATH [--python PY] [--branch NAME]
        [--base REV] [--skip CHECK ...] [--mypy-cache DIR]

The checks are lightly's (its Makefile, pyproject.toml, pre-commit hooks and CI),
run with the interpreter of lightly's development environment (``--python``, by
default this one) and the checkout first on the import path:

- ``format``: ``make format-check`` (ruff's import order and ruff format);
- ``lint``: ``make lint`` (ruff check on lightly/ and tests/);
- ``codespell``: the pre-commit hook, on the files the series touches;
- ``mypy``: ``make type-check`` (mypy lightly tests); errors that the base revision
  has as well are counted as pre-existing, not against the series;
- ``tests``: pytest with ``--runslow`` on the test folders of every package the
  series touches (tests/loss, tests/utils, ...), the new tests included;
- ``docs``: the Sphinx build of docs/README.md (``html-noplot``), offline; a
  warning that names a page or module of the series fails it;
- ``python-floor``: lightly's CI also runs its tests on Python 3.7, which cannot be
  installed here; vermin (if installed beside the interpreter or on PATH) finds the
  oldest Python the series' files need instead;
- ``torch-floor``: every torch name and Tensor method the series' Python files use
  exists in the oldest torch whose API list this repository holds
  (tests/data/torch_api_floor.txt, read by tests/test_torch_api.py). That list is
  torch 2.1.0, lightly-er's floor; lightly's minimal-dependency job installs torch
  1.10, for which no wheel exists for Python 3.11, so its API cannot be listed here.

The last line is a one-line summary.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

CHECKS = (
    "format",
    "lint",
    "codespell",
    "mypy",
    "tests",
    "docs",
    "python-floor",
    "torch-floor",
)
REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON_DIRS = ("benchmarks", "docs", "examples", "lightly", "tests")
OLDEST_PYTHON = "3.7"  # lightly's CI: Python 3.7 and 3.12
DEFAULT_BRANCH = "er/swav-er"  # the last pull request; pass --branch for each
BASE_KEY = "erbase"


class Result(NamedTuple):
    name: str
    status: str  # "ok", "FAIL" or "not run"
    summary: str


class Checker:
    def __init__(
        self,
        lightly: Path,
        python: Path,
        base: str,
        files: List[str],
        mypy_cache: Optional[Path] = None,
    ) -> None:
        self.lightly = lightly
        self.mypy_cache = mypy_cache
        self.python = python
        self.base = base
        self.files = files
        bin_dir = str(python.parent)
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONPATH": str(lightly),
            "MPLBACKEND": "Agg",
        }

    def run(
        self, command: Sequence[str], cwd: Optional[Path] = None
    ) -> Tuple[int, str]:
        print(f"$ {' '.join(command)}", flush=True)
        result = subprocess.run(
            list(command),
            cwd=cwd or self.lightly,
            env=self.env,
            capture_output=True,
            text=True,
        )
        output = result.stdout + result.stderr
        return result.returncode, output

    def _git(self, *args: str) -> None:
        subprocess.run(["git", "-C", str(self.lightly), *args], check=True)

    def tool(self, name: str) -> Optional[str]:
        beside = self.python.parent / name
        if beside.exists():
            return str(beside)
        return shutil.which(name)

    def _ruff(self, *args: str) -> Tuple[int, str]:
        ruff = self.tool("ruff")
        if ruff is None:
            return 127, "ruff not found"
        return self.run([ruff, *args])

    def format(self) -> Result:
        dirs = [d for d in PYTHON_DIRS if (self.lightly / d).exists()]
        code1, out1 = self._ruff("check", "--select", "I", *dirs)
        code2, out2 = self._ruff("format", "--check", *dirs)
        if code1 or code2:
            print(out1 + out2)
            return Result("format", "FAIL", _last(out2 if code2 else out1))
        return Result("format", "ok", _last(out2))

    def lint(self) -> Result:
        outputs, failed = [], False
        for folder in ("lightly", "tests"):
            code, out = self._ruff("check", folder)
            outputs.append(out)
            failed = failed or code != 0
        if failed:
            print("".join(outputs))
        return Result("lint", "FAIL" if failed else "ok", "ruff check lightly, tests")

    def codespell(self) -> Result:
        codespell = self.tool("codespell")
        if codespell is None:
            return Result("codespell", "not run", "codespell is not installed")
        code, out = self.run([codespell, "--toml", "pyproject.toml", *self.files])
        if code:
            print(out)
        count = len([line for line in out.splitlines() if "==>" in line])
        return Result("codespell", "FAIL" if code else "ok", f"{count} misspellings")

    def _mypy_errors(self, root: Path) -> Tuple[List[Tuple[str, str, str]], str]:
        """mypy lightly tests in root: its errors as (file, line, message)."""
        mypy = self.tool("mypy")
        assert mypy is not None
        with tempfile.TemporaryDirectory() as tmp:
            # A kept cache makes a rerun check only what changed (mypy matches a
            # module moved to another tree by its hash); the default is a cold run.
            cache = str(self.mypy_cache or tmp)
            env = dict(self.env, PYTHONPATH=str(root))
            print(f"$ mypy lightly tests  (in {root})", flush=True)
            result = subprocess.run(
                [mypy, "--cache-dir", cache, "lightly", "tests"],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
            )
        output = result.stdout + result.stderr
        errors = []
        for line in output.splitlines():
            match = re.match(r"(\S+?):(\d+): error: (.*)", line)
            if match:
                errors.append((match.group(1), match.group(2), match.group(3)))
        return errors, output

    def mypy(self, baseline: bool = True) -> Result:
        if self.tool("mypy") is None:
            return Result("mypy", "not run", "mypy is not installed")
        errors, output = self._mypy_errors(self.lightly)
        old: Set[Tuple[str, str]] = set()
        if baseline and errors:
            with tempfile.TemporaryDirectory() as tmp:
                base_tree = Path(tmp) / "base"
                self._git(
                    "worktree", "add", "--quiet", "--detach", str(base_tree), self.base
                )
                try:
                    # Line numbers move in edited files: an error is matched by
                    # file and message.
                    old = {(f, m) for f, _, m in self._mypy_errors(base_tree)[0]}
                finally:
                    self._git("worktree", "remove", "--force", str(base_tree))
        new = [e for e in errors if (e[0], e[2]) not in old]
        for path, line, message in new:
            print(f"mypy: new error: {path}:{line}: {message}")
        in_series = [e for e in new if e[0] in self.files]
        summary = (
            f"{len(errors)} errors: {len(new)} new ({len(in_series)} in the series' "
            f"files, {len(new) - len(in_series)} elsewhere), "
            f"{len(errors) - len(new)} pre-existing at {self.base[:8]}"
        )
        if new:
            print(output)
        return Result("mypy", "FAIL" if new else "ok", summary)

    def test_folders(self) -> List[str]:
        folders = set()
        for path in self.files:
            parts = path.split("/")
            if parts[0] == "lightly" and len(parts) > 2:
                folders.add(f"tests/{parts[1]}")
            elif parts[0] == "tests" and len(parts) > 2:
                folders.add(f"tests/{parts[1]}")
        return sorted(f for f in folders if (self.lightly / f).is_dir())

    def _pytest(self, root: Path, targets: Sequence[str]) -> Tuple[int, str, Path]:
        report = Path(tempfile.mkdtemp()) / "junit.xml"
        env = dict(self.env, PYTHONPATH=str(root))
        command = [str(self.python), "-m", "pytest", *targets, "--runslow", "-q"]
        command += ["-p", "no:cacheprovider", f"--junitxml={report}"]
        print(f"$ {' '.join(command)}  (in {root})", flush=True)
        result = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True
        )
        return result.returncode, result.stdout + result.stderr, report

    def tests(self, baseline: bool = True) -> Result:
        folders = self.test_folders()
        code, out, report = self._pytest(self.lightly, folders)
        print("\n".join(out.splitlines()[-15:]))
        if not report.exists():
            return Result("tests", "FAIL", f"pytest exited {code} without a report")
        passed, failed, errors, skipped = _junit_counts(report)
        shutil.rmtree(report.parent, ignore_errors=True)
        failing = _failed_ids(out)
        old: Set[str] = set()
        if baseline and failing:
            # A failure the base revision has too is not the series' doing (lightly
            # pins older dependencies in its CI than this environment has).
            at_base = [f for f in failing if f.split("::")[0] not in self.files]
            with tempfile.TemporaryDirectory() as tmp:
                base_tree = Path(tmp) / "base"
                self._git(
                    "worktree", "add", "--quiet", "--detach", str(base_tree), self.base
                )
                try:
                    if at_base:
                        _, base_out, base_report = self._pytest(base_tree, at_base)
                        old = set(_failed_ids(base_out)) & set(at_base)
                        shutil.rmtree(base_report.parent, ignore_errors=True)
                finally:
                    self._git("worktree", "remove", "--force", str(base_tree))
        new = [f for f in failing if f not in old]
        for test in new:
            print(f"tests: new failure: {test}")
        summary = (
            f"{' '.join(folders)}: {passed} passed, {failed} failed, {errors} errors, "
            f"{skipped} skipped; {len(new)} failures new, "
            f"{len(failing) - len(new)} also failing at {self.base[:8]}"
        )
        ok = not new and (code == 0 or bool(failing))
        return Result("tests", "ok" if ok else "FAIL", summary)

    def docs(self) -> Result:
        names = _series_names(self.files)
        with tempfile.TemporaryDirectory() as tmp:
            warnings_file = Path(tmp) / "warnings.txt"
            code, out = self.run(
                [
                    str(self.python),
                    "-m",
                    "sphinx",
                    "-D",
                    "plot_gallery=0",
                    "-b",
                    "html",
                    "-q",
                    "-w",
                    str(warnings_file),
                    "source",
                    str(Path(tmp) / "html"),
                ],
                cwd=self.lightly / "docs",
            )
            warnings = (
                warnings_file.read_text().splitlines() if warnings_file.exists() else []
            )
        ours = [w for w in warnings if any(name in w for name in names)]
        for warning in ours:
            print(f"docs: {warning}")
        if code != 0:
            print("\n".join(out.splitlines()[-30:]))
        status = "ok" if code == 0 and not ours else "FAIL"
        summary = (
            f"sphinx exit {code}; {len(ours)} warnings in the series' pages and "
            f"modules, {len(warnings) - len(ours)} elsewhere"
        )
        return Result("docs", status, summary)

    def python_floor(self) -> Result:
        vermin = self.tool("vermin")
        if vermin is None:
            return Result(
                "python-floor", "not run", "vermin not installed (lightly CI: 3.7)"
            )
        python_files = [f for f in self.files if f.endswith(".py")]
        code, out = self.run(
            [vermin, "--no-tips", "--violations", f"-t={OLDEST_PYTHON}-", *python_files]
        )
        if code:
            print(out)
        minimum = re.search(r"Minimum required versions: (.*)", out)
        found = minimum.group(1) if minimum else "no violations"
        return Result(
            "python-floor", "FAIL" if code else "ok", f"Python {OLDEST_PYTHON}: {found}"
        )

    def torch_floor(self) -> Result:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        from tests import test_torch_api as api

        floor = api.read_floor(api.FLOOR_FILE.read_text(encoding="utf-8"))
        python_files = [f for f in self.files if f.endswith(".py")]
        problems: List[str] = []
        for path in python_files:
            source = (self.lightly / path).read_text(encoding="utf-8")
            problems += api.floor_violations(source, floor, path)
        for problem in problems:
            print(f"torch-floor: {problem}")
        summary = (
            f"torch {floor.version}: {len(problems)} names missing in "
            f"{len(python_files)} files"
        )
        return Result("torch-floor", "FAIL" if problems else "ok", summary)


def _last(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _junit_counts(report: Path) -> Tuple[int, int, int, int]:
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) for s in suites)
    errors = sum(int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return tests - failed - errors - skipped, failed, errors, skipped


def _failed_ids(output: str) -> List[str]:
    """The node ids of pytest's short summary lines (FAILED / ERROR)."""
    ids: Dict[str, None] = {}  # in order, once (pytest may repeat a line)
    for line in output.splitlines():
        match = re.match(r"(?:FAILED|ERROR) (\S+)", line)
        if match:
            ids[match.group(1)] = None
    return list(ids)


def _series_names(files: Sequence[str]) -> List[str]:
    """Strings that identify the series' pages and modules in a Sphinx warning."""
    names = set()
    for path in files:
        if path.startswith("docs/source/") and path.endswith(".rst"):
            if path.count("/") > 2:  # a new page, not an edited index
                names.add(path[len("docs/source/") :])
        elif path.startswith("lightly/") and path.endswith(".py"):
            module = path[: -len(".py")].replace("/", ".")
            names.add(module.replace(".__init__", ""))
    return sorted(names)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lightly", type=Path, required=True, help="lightly checkout")
    parser.add_argument(
        "--python",
        type=Path,
        default=Path(sys.executable),
        help="interpreter of lightly's development environment",
    )
    parser.add_argument("--branch", default=DEFAULT_BRANCH)
    parser.add_argument("--base", default=None, help="revision the series is on")
    parser.add_argument("--skip", nargs="*", default=[], choices=CHECKS)
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="count every mypy error and test failure against the series",
    )
    parser.add_argument(
        "--mypy-cache",
        type=Path,
        default=None,
        help="mypy cache folder kept between runs (default: a fresh one per run)",
    )
    args = parser.parse_args(argv)
    lightly = args.lightly.resolve()
    python = Path(os.path.abspath(args.python))  # keep a venv's bin, not its target
    if git(lightly, "rev-parse", "--abbrev-ref", "HEAD") != args.branch:
        if git(lightly, "status", "--porcelain", "--untracked-files=no"):
            print(f"check_patch: {lightly} has changes and is not on {args.branch}")
            return 2
        git(lightly, "checkout", "--quiet", args.branch)
    base = args.base or git(lightly, "config", f"branch.{args.branch}.{BASE_KEY}")
    files = git(lightly, "diff", "--name-only", f"{base}..{args.branch}").splitlines()
    checker = Checker(lightly, python, base, files, mypy_cache=args.mypy_cache)
    runs: Dict[str, object] = {
        "format": checker.format,
        "lint": checker.lint,
        "codespell": checker.codespell,
        "mypy": lambda: checker.mypy(baseline=not args.no_baseline),
        "tests": lambda: checker.tests(baseline=not args.no_baseline),
        "docs": checker.docs,
        "python-floor": checker.python_floor,
        "torch-floor": checker.torch_floor,
    }
    results: List[Result] = []
    for name in CHECKS:
        if name in args.skip:
            results.append(Result(name, "not run", "skipped (--skip)"))
            continue
        result = runs[name]()  # type: ignore[operator]
        print(
            f"check_patch: {result.name}: {result.status}: {result.summary}", flush=True
        )
        results.append(result)
    failed = [r.name for r in results if r.status == "FAIL"]
    not_run = [r.name for r in results if r.status == "not run"]
    head = git(lightly, "rev-parse", "--short", args.branch)
    print(
        f"check_patch: {'FAIL' if failed else 'PASS'} on {args.branch} ({head}, base "
        f"{base[:8]}): "
        + "; ".join(f"{r.name} {r.status} ({r.summary})" for r in results)
        + (f"; not run: {', '.join(not_run)}" if not_run else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
