"""Fixtures of the ImageNet benchmark tests (helpers in ``helpers.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from tests.benchmarks.imagenet.helpers import make_image_folder


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on the shared 2-core machine more threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ImageFolder tree (helpers.NUM_CLASSES classes), shared by the tests."""
    return make_image_folder(tmp_path_factory.mktemp("imagenet") / "train")
