"""Writes the ER objectives into a lightly checkout and exports them as a patch series.

    python upstream/make_patch.py --lightly PATH --out DIR [--revision REV]
        [--branch NAME] [--force]

Creates branch NAME (default ``er-objectives``) at REV (default: the checkout's
HEAD) in the lightly checkout at PATH, writes the files of upstream/manifest.py
there (our library files transformed by upstream/transform.py, the tests and docs
page of upstream/files/ as they are), edits lightly's exports, API pages and table
of contents, formats everything with the checkout's own ruff settings, commits one
commit per group of the manifest, and writes the series with ``git format-patch``
(with a cover letter carrying the description and the release note) into DIR.
Run it with the interpreter of lightly's development environment, so that the
ruff it formats with is lightly's (docs/contributing_upstream.md).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upstream import manifest  # noqa: E402
from upstream.transform import SOURCE_PACKAGE, module_name, transform  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BRANCH = "er-objectives"
BASE_KEY = "erbase"  # git config branch.<name>.erbase: the revision the series is on


class PatchError(RuntimeError):
    """The series cannot be made (the message says why)."""


def git(repo: Path, *args: str, env: Optional[Dict[str, str]] = None) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
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


def _loss_rows() -> List[manifest.Row]:
    return [
        r for r in manifest.FILES if r.exports and r.target.startswith("lightly/loss/")
    ]


def edit_loss_init(lightly: Path) -> str:
    """lightly/loss/__init__.py with the manifest's exports imported (ruff sorts)."""
    path = lightly / "lightly/loss/__init__.py"
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imports:
        raise PatchError("lightly/loss/__init__.py has no imports to add to")
    end = max(n.end_lineno or n.lineno for n in imports)
    lines = text.splitlines(keepends=True)
    added = [
        f"from {module_name(r.target)} import {', '.join(r.exports)}\n"
        for r in _loss_rows()
    ]
    lines[end:end] = added
    return "".join(lines)


def _classes(row: manifest.Row) -> List[str]:
    return [name for name in row.exports if name[:1].isupper()]


def edit_loss_rst(text: str) -> str:
    """docs/source/lightly.loss.rst with an autoclass entry per exported ER class.

    Each entry goes after the last entry whose dotted name sorts before it, so the
    page keeps its order (by module).
    """
    blocks = re.split(r"\n(?=\.\. autoclass:: )", text.rstrip("\n") + "\n")
    for row in _loss_rows():
        module = module_name(row.target)
        private = module.rsplit(".", 1)[1].startswith("_")
        for name in _classes(row):
            # A type from a private module (ERComponents) is documented through the
            # package, by its docstring alone: its fields are listed there already.
            path = f"lightly.loss.{name}" if private else f"{module}.{name}"
            entry = f".. autoclass:: {path}\n" + ("" if private else "   :members:\n")
            position = len(blocks)
            for index, block in enumerate(blocks):
                match = re.match(r"\.\. autoclass:: (\S+)", block)
                if match and match.group(1).lower() > path.lower():
                    position = index
                    break
            if position == len(blocks):
                blocks.append(entry)
            else:
                blocks.insert(position, entry)
    return "\n".join(block.rstrip("\n") + "\n" for block in blocks)


def edit_utils_rst(text: str) -> str:
    """docs/source/lightly.utils.rst with a section per module of manifest.UTILS_API."""
    sections = "".join(
        f"\n{title}\n{'-' * max(len(title), 15)}\n.. automodule:: {module}\n   :members:\n"
        for title, module in manifest.UTILS_API
    )
    return text.rstrip("\n") + "\n" + sections


def edit_index_rst(text: str) -> str:
    """docs/source/index.rst with the docs page last in the manifest's toctree."""
    lines = text.splitlines(keepends=True)
    caption = f":caption: {manifest.DOCS_TOCTREE_CAPTION}"
    starts = [i for i, line in enumerate(lines) if line.strip() == caption]
    if not starts:
        raise PatchError(f"docs/source/index.rst has no toctree with '{caption}'")
    index = last = starts[0]
    indent = "   "
    for j in range(index + 1, len(lines)):
        stripped = lines[j].strip()
        if not stripped:
            continue
        if not lines[j].startswith(" "):
            break
        if not stripped.startswith(":"):
            last = j
            indent = lines[j][: len(lines[j]) - len(lines[j].lstrip())]
    lines.insert(last + 1, f"{indent}{manifest.DOCS_PAGE}\n")
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


EDITS = {
    "lightly/utils/debug.py": ("typing", edit_debug_py),
    "lightly/loss/__init__.py": ("loss", None),
    "docs/source/lightly.loss.rst": ("docs", edit_loss_rst),
    "docs/source/lightly.utils.rst": ("docs", edit_utils_rst),
    "docs/source/index.rst": ("docs", edit_index_rst),
}


def write_group(lightly: Path, group: str) -> List[str]:
    """Writes the files of one commit; returns their paths relative to lightly."""
    written = []
    for row in manifest.FILES:
        if row.commit != group:
            continue
        source = REPO_ROOT / row.source
        if row.source.startswith(SOURCE_PACKAGE + "/"):
            text = transform(source, lightly, ["lightly.loss"], REPO_ROOT)
        else:
            text = source.read_text(encoding="utf-8")
        target = lightly / row.target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(row.target)
    for path, (edit_group, edit) in EDITS.items():
        if edit_group != group:
            continue
        target = lightly / path
        if not target.exists():
            raise PatchError(f"{path} is not in the checkout: is it lightly's?")
        if edit is None:
            text = edit_loss_init(lightly)
        else:
            text = edit(target.read_text(encoding="utf-8"))
        target.write_text(text, encoding="utf-8")
        written.append(path)
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
    lightly: Path,
    out: Path,
    revision: str = "HEAD",
    branch: str = DEFAULT_BRANCH,
    force: bool = False,
    author: str = "lightly-er developers <dev@lightly-er>",
    date: Optional[str] = None,
) -> List[Path]:
    """Makes the branch and the series; returns the patch files, cover letter first."""
    lightly = lightly.resolve()
    if not (lightly / "lightly" / "loss" / "__init__.py").exists():
        raise PatchError(f"{lightly} is not a lightly checkout (no lightly/loss)")
    if git(lightly, "status", "--porcelain", "--untracked-files=no"):
        raise PatchError(f"{lightly} has uncommitted changes: commit or stash them")
    base = git(lightly, "rev-parse", "--verify", f"{revision}^{{commit}}")
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
        raise PatchError(
            f"branch {branch} exists in {lightly} (pass --force to remake it)"
        )
    git(lightly, "checkout", "--quiet", "-B" if force else "-b", branch, base)
    name, email = re.fullmatch(r"(.*) <(.*)>", author).groups()  # type: ignore[union-attr]
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    allowed = {row.target for row in manifest.FILES} | set(manifest.EDITED)
    for group, message in manifest.COMMITS.items():
        paths = write_group(lightly, group)
        format_files(lightly, paths)
        touched = set(git(lightly, "diff", "--name-only", "HEAD").splitlines())
        touched |= set(
            git(lightly, "ls-files", "--others", "--exclude-standard").splitlines()
        )
        stray = sorted(p for p in touched if p not in allowed)
        if stray:
            raise PatchError(
                f"the {group} commit would touch files outside the manifest: {stray}"
            )
        git(lightly, "add", "--", *paths)
        git(lightly, "commit", "--quiet", "--no-verify", "-m", message, env=env)
    git(lightly, "config", f"branch.{branch}.description", manifest.COVER_LETTER)
    git(lightly, "config", f"branch.{branch}.{BASE_KEY}", base)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.patch"):
        old.unlink()
    listing = git(
        lightly,
        "format-patch",
        "--cover-letter",
        "--cover-from-description=subject",
        "-o",
        str(out.resolve()),
        f"{base}..{branch}",
        env=env,
    )
    return [Path(line) for line in listing.splitlines()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lightly", type=Path, required=True, help="lightly checkout")
    parser.add_argument("--out", type=Path, required=True, help="folder for the series")
    parser.add_argument(
        "--revision", default="HEAD", help="lightly revision to start from"
    )
    parser.add_argument("--branch", default=DEFAULT_BRANCH, help="branch to create")
    parser.add_argument(
        "--force", action="store_true", help="remake an existing branch"
    )
    parser.add_argument("--author", default="lightly-er developers <dev@lightly-er>")
    parser.add_argument("--date", default=None, help="commit date (git's formats)")
    args = parser.parse_args(argv)
    try:
        patches = make_patch(
            args.lightly,
            args.out,
            args.revision,
            args.branch,
            args.force,
            args.author,
            args.date,
        )
    except (PatchError, ValueError) as error:
        print(f"make_patch: {error}", file=sys.stderr)
        return 1
    base = git(args.lightly, "config", f"branch.{args.branch}.{BASE_KEY}")
    files = git(args.lightly, "diff", "--stat=100", f"{base}..{args.branch}")
    print(files)
    for patch in patches:
        print(patch)
    print(
        f"make_patch: {len(patches) - 1} commits on {args.branch} "
        f"(from {base[:8]}) written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
