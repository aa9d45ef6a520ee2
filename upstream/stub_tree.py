"""A stand-in for a lightly checkout: the installed lightly package, stubs at
lightly's paths (tests/, docs/source/) and lightly's ruff settings, in a git
repository. The generator's test and CI's upstream check run the generator on it,
since CI cannot reach lightly's repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}

INDEX_RST = """\
Documentation
=============

.. toctree::
   :maxdepth: 1
   :caption: Getting Started

   getting_started/install.rst

.. toctree::
   :maxdepth: 1
   :caption: Advanced

   getting_started/advanced.rst
   getting_started/benchmarks.rst

.. toctree::
   :maxdepth: 1
   :caption: Python API

   lightly.loss
"""

LOSS_RST = """\
.. _lightly-loss:

lightly.loss
============

.. automodule:: lightly.loss

.. autoclass:: lightly.loss.dino_loss.DINOLoss
   :members:

.. autoclass:: lightly.loss.ntx_ent_loss.NTXentLoss
   :members:

.. autoclass:: lightly.loss.swav_loss.SwaVLoss
   :members:
"""

UTILS_RST = """\
lightly.utils
===================

.. automodule:: lightly.utils

.dist
---------------
.. automodule:: lightly.utils.dist
   :members:
"""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **IDENTITY},
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr}")
    return result.stdout.strip()


def build_lightly_tree(path: Path) -> Path:
    """A git repository with lightly's layout: the installed package and stubs."""
    import lightly

    shutil.copytree(
        Path(lightly.__file__).parent,
        path / "lightly",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (path / "tests" / "loss").mkdir(parents=True)
    (path / "tests" / "utils").mkdir(parents=True)
    (path / "tests" / "__init__.py").write_text("")
    (path / "tests" / "utils" / "__init__.py").write_text("")
    (path / "tests" / "loss" / "test_placeholder.py").write_text(
        "def test_placeholder() -> None:\n    pass\n"
    )
    docs = path / "docs" / "source"
    docs.mkdir(parents=True)
    (docs / "index.rst").write_text(INDEX_RST)
    (docs / "lightly.loss.rst").write_text(LOSS_RST)
    (docs / "lightly.utils.rst").write_text(UTILS_RST)
    ruff = (ROOT / ".ci" / "lightly-ruff.toml").read_text()
    ruff = ruff.replace("[lint", "[tool.ruff.lint").replace(
        "[format]", "[tool.ruff.format]"
    )
    (path / "pyproject.toml").write_text(
        '[project]\nname = "lightly"\n\n[tool.ruff]\n' + ruff
    )
    git(path, "init", "--quiet", "--initial-branch=master")
    git(path, "config", "user.name", IDENTITY["GIT_AUTHOR_NAME"])
    git(path, "config", "user.email", IDENTITY["GIT_AUTHOR_EMAIL"])
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "lightly stand-in")
    return path
