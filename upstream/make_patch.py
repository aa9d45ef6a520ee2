"""Writes the ER pull requests into a lightly checkout, one stacked branch each.

    python upstream/make_patch.py --lightly PATH --out DIR [--revision REV] [--force]

For each pull request of upstream/manifest.py, in order, creates branch
``er/<key>`` on the previous one (the first on REV, default the checkout's HEAD),
copies its files (the one rewrite: manifest.MODULE_MAP's module paths), adds its
exports to lightly/loss/__init__.py, formats with the checkout's own ruff settings,
commits (subject = the title, body = the description) and writes the patch with
``git format-patch`` into DIR/<nn>-<key>/. The author is the checkout's git
identity (``git config user.name``/``user.email``); nothing is made up.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upstream import examples, manifest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BRANCH_PREFIX = "er/"
BASE_KEY = "erbase"  # git config branch.<name>.erbase: the revision it is on


class PatchError(RuntimeError):
    """The series cannot be made (the message says why)."""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise PatchError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def tool(name: str) -> str:
    """The tool beside this interpreter (its venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise PatchError(f"{name} not found beside {sys.executable} or on PATH")
    return found


_DOTTED = re.compile(r"\blightly_er(?:\.\w+)*")
_LEFTOVER = re.compile(r"lightly_er|lightly-er|docs/\w+\.md")


def map_module(dotted: str) -> str:
    """``lightly_er.a.b.C`` -> its lightly path by manifest.MODULE_MAP's longest prefix.

    Raises:
        PatchError: If no prefix of ``dotted`` is in the map.
    """
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in manifest.MODULE_MAP:
            return ".".join([manifest.MODULE_MAP[prefix], *parts[end:]])
    raise PatchError(f"{dotted} is not in manifest.MODULE_MAP")


def copy_text(source: str) -> str:
    """The text of ``source`` (a path in this repository) as it goes into lightly.

    Raises:
        PatchError: Naming file and line, if the file names a lightly-er module
            that the map does not move, or anything else of lightly-er.
    """
    text = (REPO_ROOT / source).read_text(encoding="utf-8")
    out: List[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        try:
            line = _DOTTED.sub(lambda m: map_module(m.group(0)), line)
        except PatchError as error:
            raise PatchError(f"{source}:{number}: {error}") from None
        leftover = _LEFTOVER.search(line)
        if leftover:
            raise PatchError(
                f"{source}:{number}: '{leftover.group(0)}' has no lightly "
                "counterpart: fix the source file"
            )
        out.append(line)
    return "".join(out)


def edit_loss_init(text: str, exports: Sequence[Sequence[str]]) -> str:
    """lightly/loss/__init__.py with one import per export (ruff sorts them)."""
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imports:
        raise PatchError("lightly/loss/__init__.py has no imports to add to")
    end = max(n.end_lineno or n.lineno for n in imports)
    lines = text.splitlines(keepends=True)
    lines[end:end] = [f"from {module} import {name}\n" for module, name in exports]
    return "".join(lines)


# The spots of lightly/utils/debug.py that lightly's mypy settings reject. The
# module is in pyproject.toml's mypy exclude list, but the meter imports its
# std_of_l2_normalized, so mypy follows the import and checks it (4 errors at
# lightly e8d317fc). Each edit is (expected text, replacement, what it types); the
# expected text must occur exactly once, so a changed debug.py stops the generator
# instead of being edited in the wrong place.
DEBUG_EDITS = (
    (
        "    plt = ModuleNotFoundError(\n",
        "    plt = ModuleNotFoundError(  # type: ignore[assignment]\n",
        "the matplotlib fallback (an exception in place of the module)",
    ),
    (
        "    plt = ex\n",
        "    plt = ex  # type: ignore[assignment]\n",
        "the matplotlib fallback (an exception in place of the module)",
    ),
    (
        "    image: Image.Image,\n    transform,\n) -> Image.Image:\n",
        "    image: Image.Image,\n"
        "    transform: Callable[[Image.Image], Image.Image],\n"
        ") -> Image.Image:\n",
        "apply_transform_without_normalize's transform argument",
    ),
)
# plot_augmented_images returns the figure of plt.subplots; its arguments differ
# between lightly versions, so its signature is matched up to the missing return.
_PLOT_SIGNATURE = re.compile(
    r"^def plot_augmented_images\(\n(?:    [^\n]*\n)+?\):\n", re.MULTILINE
)
_DEBUG_IMPORTS = (
    "from typing import TYPE_CHECKING, Callable\n",
    "\nif TYPE_CHECKING:\n    from matplotlib.figure import Figure\n",
)


def edit_debug_py(text: str) -> str:
    """lightly/utils/debug.py with the type annotations lightly's mypy asks for.

    Raises:
        PatchError: If any expected text is not in the file exactly once.
    """
    for expected, replacement, what in DEBUG_EDITS:
        count = text.count(expected)
        if count != 1:
            raise PatchError(
                f"lightly/utils/debug.py: expected {expected!r} ({what}) once, "
                f"found it {count} times: has lightly changed the file?"
            )
        text = text.replace(expected, replacement)
    signatures = _PLOT_SIGNATURE.findall(text)
    if len(signatures) != 1:
        raise PatchError(
            "lightly/utils/debug.py: expected one 'def plot_augmented_images(' "
            f"without a return annotation, found {len(signatures)}"
        )
    text = text.replace(signatures[0], signatures[0][: -len(":\n")] + ' -> "Figure":\n')
    # The imports go after lightly's own (ruff merges the typing import into its
    # line and sorts them); Figure only for mypy: matplotlib is an optional extra.
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imports:
        raise PatchError("lightly/utils/debug.py has no imports to add to")
    first = imports[0].lineno - 1
    last = max(n.end_lineno or n.lineno for n in imports)
    lines = text.splitlines(keepends=True)
    lines[last:last] = [_DEBUG_IMPORTS[1]]
    lines[first:first] = [_DEBUG_IMPORTS[0]]
    return "".join(lines)


def edit_mypy_exclude(text: str) -> str:
    """pyproject.toml without debug.py in mypy's exclude (unchanged if absent)."""
    return text.replace(manifest.DEBUG_EXCLUDE_LINE, "")


def write_pull_request(lightly: Path, pr: manifest.PullRequest) -> List[str]:
    """Writes one pull request's files and edits; returns the paths touched."""
    written = []
    for source, target in pr.files:
        path = lightly / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(copy_text(source), encoding="utf-8")
        written.append(target)
    written += write_examples(lightly, pr)
    edits: Dict[str, Callable[[str], str]] = {}
    if pr.examples:
        edits[examples.MODELS_RST] = partial(_each, examples.edit_models_rst, pr)
        edits[examples.LOSS_RST] = partial(_each, examples.edit_loss_rst, pr)
    if pr.exports:
        edits["lightly/loss/__init__.py"] = lambda t: edit_loss_init(t, pr.exports)
    if pr.key == "debug-typing":
        edits["lightly/utils/debug.py"] = edit_debug_py
        edits["pyproject.toml"] = edit_mypy_exclude
    for target, edit in edits.items():
        path = lightly / target
        if not path.exists():
            raise PatchError(f"{target} is not in the checkout: is it lightly's?")
        try:
            new = edit(path.read_text(encoding="utf-8"))
        except examples.ExampleError as error:
            raise PatchError(str(error)) from None
        if new != path.read_text(encoding="utf-8"):
            path.write_text(new, encoding="utf-8")
            written.append(target)
    return written


def _each(
    edit: Callable[[str, examples.Example], str], pr: manifest.PullRequest, text: str
) -> str:
    """``text`` with ``edit`` applied for each of the pull request's examples."""
    for example in pr.examples:
        text = edit(text, example)
    return text


def write_examples(lightly: Path, pr: manifest.PullRequest) -> List[str]:
    """Writes the pull request's example scripts and docs pages; returns the paths.

    Raises:
        PatchError: If lightly lacks a parent example or names no parent class.
    """
    written = []
    for example in pr.examples:
        for layout in examples.LAYOUTS:
            parent = lightly / examples.example_path(layout, example.method, False)
            if not parent.exists():
                raise PatchError(f"{parent} is not in the checkout: is it lightly's?")
            try:
                text = examples.derive_example(parent.read_text(), example, layout)
            except examples.ExampleError as error:
                raise PatchError(str(error)) from None
            target = examples.example_path(layout, example.method, True)
            (lightly / target).write_text(text, encoding="utf-8")
            written.append(target)
        page = examples.page_path(example)
        (lightly / page).write_text(examples.docs_page(example), encoding="utf-8")
        written.append(page)
    return written


def format_files(lightly: Path, paths: Sequence[str]) -> None:
    """Sorts imports and formats with ruff, under the checkout's own settings."""
    python = [p for p in paths if p.endswith(".py")]
    if not python:
        return
    ruff = tool("ruff")
    for args in (["check", "--select", "I", "--fix", "--quiet"], ["format", "--quiet"]):
        result = subprocess.run(
            [ruff, *args, *python], cwd=lightly, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise PatchError(f"ruff {args[0]}: {result.stdout}{result.stderr}")


def make_patch(
    lightly: Path, out: Path, revision: str = "HEAD", force: bool = False
) -> Dict[str, List[Path]]:
    """Makes the stacked branches and their patches; returns key -> patch files."""
    lightly = lightly.resolve()
    if not (lightly / "lightly" / "loss" / "__init__.py").exists():
        raise PatchError(f"{lightly} is not a lightly checkout (no lightly/loss)")
    if git(lightly, "status", "--porcelain", "--untracked-files=no"):
        raise PatchError(f"{lightly} has uncommitted changes: commit or stash them")
    for setting in ("user.name", "user.email"):
        if subprocess.run(
            ["git", "-C", str(lightly), "config", setting], capture_output=True
        ).returncode:
            raise PatchError(f"git config {setting} is not set in {lightly}")
    base = git(lightly, "rev-parse", "--verify", f"{revision}^{{commit}}")
    out.mkdir(parents=True, exist_ok=True)
    series: Dict[str, List[Path]] = {}
    previous = base
    for number, pr in enumerate(manifest.PULL_REQUESTS, start=1):
        branch = BRANCH_PREFIX + pr.key
        exists = (
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(lightly),
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    f"refs/heads/{branch}",
                ],
                capture_output=True,
            ).returncode
            == 0
        )
        if exists and not force:
            raise PatchError(f"branch {branch} exists (pass --force to remake it)")
        git(lightly, "checkout", "--quiet", "-B", branch, previous)
        paths = write_pull_request(lightly, pr)
        format_files(lightly, paths)
        touched = set(git(lightly, "diff", "--name-only", "HEAD").splitlines())
        touched |= set(
            git(lightly, "ls-files", "--others", "--exclude-standard").splitlines()
        )
        stray = sorted(touched - set(paths))
        if stray:
            raise PatchError(
                f"{pr.key} would touch files outside the manifest: {stray}"
            )
        git(lightly, "add", "--", *paths)
        git(
            lightly,
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            f"{pr.title}\n\n{pr.description}",
        )
        git(lightly, "config", f"branch.{branch}.{BASE_KEY}", previous)
        folder = out / f"{number:02d}-{pr.key}"
        if folder.exists():
            shutil.rmtree(folder)
        listing = git(
            lightly,
            "format-patch",
            "-o",
            str(folder.resolve()),
            f"{previous}..{branch}",
        )
        series[pr.key] = [Path(line) for line in listing.splitlines()]
        previous = git(lightly, "rev-parse", branch)
    return series


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lightly", type=Path, required=True, help="lightly checkout")
    parser.add_argument("--out", type=Path, required=True, help="folder for patches")
    parser.add_argument("--revision", default="HEAD", help="lightly revision")
    parser.add_argument("--force", action="store_true", help="remake the branches")
    args = parser.parse_args(argv)
    try:
        series = make_patch(args.lightly, args.out, args.revision, args.force)
    except PatchError as error:
        print(f"make_patch: {error}", file=sys.stderr)
        return 1
    for key, patches in series.items():
        branch = BRANCH_PREFIX + key
        base = git(args.lightly, "config", f"branch.{branch}.{BASE_KEY}")
        stat = git(args.lightly, "diff", "--shortstat", f"{base}..{branch}")
        print(f"{branch}: {stat}; {', '.join(str(p) for p in patches)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
