"""The deadline of tests/processes.py: a hang fails or is cut short, never stalls."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.processes import run_workers, save_result


def _hangs_after_writing(rank: int, port: int, out_dir: str) -> None:
    save_result({"rank": rank}, out_dir, rank)
    time.sleep(600)  # a teardown that never returns


def _rank_one_never_writes(rank: int, port: int, out_dir: str) -> None:
    if rank == 0:
        save_result({"rank": rank}, out_dir, rank)
    time.sleep(600)


def _raises(rank: int, port: int, out_dir: str) -> None:
    raise RuntimeError(f"rank {rank} failed")


def test_a_hang_after_every_result_is_cut_short_with_a_warning() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.monotonic()
        with pytest.warns(UserWarning, match="teardown hung"):
            run_workers(_hangs_after_writing, (out_dir,), 2, out_dir, grace_s=1.0)
        assert time.monotonic() - start < 60
        ranks = [torch.load(Path(out_dir) / f"{r}.pt")["rank"] for r in range(2)]
    assert ranks == [0, 1]


def test_a_missing_result_fails_at_the_second_deadline() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.monotonic()
        with pytest.warns(UserWarning, match="attempt 1 of 2"):
            with pytest.raises(pytest.fail.Exception, match=r"missing: \['1.pt'\]"):
                run_workers(
                    _rank_one_never_writes, (out_dir,), 2, out_dir, deadline_s=5.0
                )
        assert time.monotonic() - start < 60


def test_a_worker_error_is_raised() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        with pytest.raises(Exception, match="rank . failed"):
            run_workers(_raises, (out_dir,), 2, out_dir)


def _hangs_on_the_first_port(rank: int, port: int, out_dir: str, first: str) -> None:
    marker = Path(first)
    if rank == 0 and not marker.exists():
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, marker)  # the other rank reads it whole
    while not marker.exists():
        time.sleep(0.1)
    if marker.read_text() == str(port):
        time.sleep(600)  # the first attempt hangs
    save_result({"port": port}, out_dir, rank)


def test_a_hang_is_retried_once_on_a_new_port(tmp_path: Path) -> None:
    out_dir, first = tmp_path / "out", tmp_path / "first_port"
    out_dir.mkdir()
    with pytest.warns(UserWarning, match="attempt 1 of 2"):
        run_workers(
            _hangs_on_the_first_port, (str(out_dir), str(first)), 2, str(out_dir),
            deadline_s=8.0,
        )  # fmt: skip
    ports = {torch.load(out_dir / f"{r}.pt")["port"] for r in range(2)}
    assert len(ports) == 1 and str(ports.pop()) != first.read_text()
