"""The deadline of tests/processes.py: a hang fails or is cut short, never stalls."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.processes import run_workers, save_result


def _hangs_after_writing(rank: int, out_dir: str) -> None:
    save_result({"rank": rank}, out_dir, rank)
    time.sleep(600)  # a teardown that never returns


def _rank_one_never_writes(rank: int, out_dir: str) -> None:
    if rank == 0:
        save_result({"rank": rank}, out_dir, rank)
    time.sleep(600)


def _raises(rank: int, out_dir: str) -> None:
    raise RuntimeError(f"rank {rank} failed")


def test_a_hang_after_every_result_is_cut_short_with_a_warning() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.monotonic()
        with pytest.warns(UserWarning, match="teardown hung"):
            run_workers(_hangs_after_writing, (out_dir,), 2, out_dir, grace_s=1.0)
        assert time.monotonic() - start < 60
        ranks = [torch.load(Path(out_dir) / f"{r}.pt")["rank"] for r in range(2)]
    assert ranks == [0, 1]


def test_a_missing_result_fails_at_the_deadline() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.monotonic()
        with pytest.raises(pytest.fail.Exception, match=r"missing: \['1.pt'\]"):
            run_workers(_rank_one_never_writes, (out_dir,), 2, out_dir, deadline_s=5.0)
        assert time.monotonic() - start < 60


def test_a_worker_error_is_raised() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        with pytest.raises(Exception, match="rank . failed"):
            run_workers(_raises, (out_dir,), 2, out_dir)
