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

.. autoclass:: lightly.loss.negative_cosine_similarity.NegativeCosineSimilarity
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


MODELS_RST = """\
Models
======

.. toctree::
    :maxdepth: 1

    byol.rst
    dino.rst
    simclr.rst
    swav.rst
"""

# Stand-ins for lightly's example scripts: the loss class where lightly's has it.
EXAMPLE_LOSSES = {
    "simclr": "NTXentLoss",
    "byol": "NegativeCosineSimilarity",
    "dino": "DINOLoss",
    "swav": "SwaVLoss",
}

# Stand-ins for lightly's DDP test pool (tests/ddp_helpers.py and the session hooks
# of tests/conftest.py), with the same names: a gloo group in a spawned pool.
DDP_HELPERS = """\
import os

import torch

USE_PYTEST_POOL = os.getenv("USE_PYTEST_POOL", "0") == "1"
NUM_PROCESSES = 2


def setup_ddp(rank: int, world_size: int) -> None:
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ["MASTER_PORT"] = os.getenv("STUB_DDP_PORT", "8089")
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)


def teardown_ddp(rank: int, world_size: int) -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
"""

CONFTEST = """\
import pytest
import torch.multiprocessing as mp

from tests.ddp_helpers import NUM_PROCESSES, USE_PYTEST_POOL, setup_ddp, teardown_ddp


def pytest_configure(config):
    config.addinivalue_line("markers", "DDP: runs on the gloo process pool")


def pytest_sessionstart():
    if USE_PYTEST_POOL:
        pytest.pool = mp.get_context("spawn").Pool(processes=NUM_PROCESSES)
        pytest.pool.starmap(setup_ddp, [(r, NUM_PROCESSES) for r in range(2)])


def pytest_sessionfinish():
    if USE_PYTEST_POOL:
        pytest.pool.starmap(teardown_ddp, [(r, NUM_PROCESSES) for r in range(2)])
        pytest.pool.close()
        pytest.pool.join()
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
    (path / "tests" / "ddp_helpers.py").write_text(DDP_HELPERS)
    (path / "tests" / "conftest.py").write_text(CONFTEST)
    for layout in ("pytorch", "pytorch_lightning", "pytorch_lightning_distributed"):
        (path / "examples" / layout).mkdir(parents=True)
        for method, loss in EXAMPLE_LOSSES.items():
            (path / "examples" / layout / f"{method}.py").write_text(
                f"from lightly.loss import {loss}\n\ncriterion = {loss}()\n"
            )
    docs = path / "docs" / "source"
    (docs / "examples").mkdir(parents=True)
    (docs / "examples" / "models.rst").write_text(MODELS_RST)
    (docs / "index.rst").write_text(INDEX_RST)
    (docs / "lightly.loss.rst").write_text(LOSS_RST)
    (docs / "lightly.utils.rst").write_text(UTILS_RST)
    ruff = (ROOT / ".ci" / "lightly-ruff.toml").read_text()
    ruff = ruff.replace("[lint", "[tool.ruff.lint").replace(
        "[format]", "[tool.ruff.format]"
    )
    (path / "pyproject.toml").write_text(
        '[project]\nname = "lightly"\n\n[tool.pytest.ini_options]\n'
        'addopts = "--import-mode=importlib"\n\n[tool.ruff]\n' + ruff
    )
    git(path, "init", "--quiet", "--initial-branch=master")
    git(path, "config", "user.name", IDENTITY["GIT_AUTHOR_NAME"])
    git(path, "config", "user.email", IDENTITY["GIT_AUTHOR_EMAIL"])
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "lightly stand-in")
    return path
