"""Checks the files that would move into lightly against lightly's own rules.

A thin wrapper around the patch generator (upstream/make_patch.py): it builds a
stand-in lightly checkout (upstream/stub_tree.py: the installed lightly package and
stubs at lightly's paths), writes the series into it, and runs lightly's ruff
settings (lint and format, from the stand-in's pyproject.toml) and vermin (oldest
Python) on the files of the series. Exits non-zero if anything fails. The full
run against a real lightly checkout (its mypy, tests and docs too) is
upstream/check_patch.py, documented in docs/contributing_upstream.md.

    python .ci/upstream_check.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from upstream.make_patch import make_patch  # noqa: E402
from upstream.stub_tree import build_lightly_tree, git  # noqa: E402

# lightly's CI runs Python 3.7 (and 3.12); its pyproject.toml declares >=3.6.
OLDEST_PYTHON = "3.7"


def main() -> int:
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = build_lightly_tree(Path(tmp) / "lightly")
        base = git(tree, "rev-parse", "HEAD")
        make_patch(tree, Path(tmp) / "series")
        files = git(tree, "diff", "--name-only", f"{base}..HEAD").splitlines()
        python = [f for f in files if f.endswith(".py")]
        checks = [
            [str(bin_dir / "ruff"), "check", *python],
            [str(bin_dir / "ruff"), "format", "--check", *python],
            [
                str(bin_dir / "vermin"),
                "--no-tips",
                "--violations",
                f"-t={OLDEST_PYTHON}-",
                *python,
            ],
        ]
        failed = False
        for command in checks:
            result = subprocess.run(command, cwd=tree, capture_output=True, text=True)
            name = Path(command[0]).name + " " + command[1]
            print(f"{name}: {'ok' if result.returncode == 0 else 'FAILED'}")
            if result.returncode != 0:
                failed = True
                print(result.stdout + result.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
