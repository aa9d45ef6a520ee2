"""Run records: JSON round trip, refusals, and the records already on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.common.records import RunResult, load_results, run_id
from tests.benchmarks.records import sweep_record

DATA = Path(__file__).resolve().parents[1] / "data"


def test_round_trip(tmp_path: Path) -> None:
    r = sweep_record("byol_er", 32, 1, 0.8)
    r.save(tmp_path / "runs" / "a.json")
    assert load_results(tmp_path) == [r]


def test_load_rejects_partial_json(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"method": "byol"')
    with pytest.raises(ValueError, match="not a run record"):
        RunResult.load(tmp_path / "x.json")


def test_load_rejects_records_of_another_version(tmp_path: Path) -> None:
    record = sweep_record("byol", 32, 0, 0.7)
    record.record_version = 1
    record.save(tmp_path / "old.json")
    with pytest.raises(ValueError, match="version 1, not 2"):
        RunResult.load(tmp_path / "old.json")


def test_run_id() -> None:
    assert run_id("byol_er", 32, 0.9, 200, 1) == "byol_er-bs32-ema0.9-ep200-seed1"
    assert run_id("simclr", 128, None, 5, 0) == "simclr-bs128-ep5-seed0"


def test_loads_a_record_written_before_the_move(tmp_path: Path) -> None:
    """A version-2 record of lightly_er.benchmarking (before benchmarks/common) loads
    unchanged and is written back with every old value as it was, plus the fields
    issue 23 added at their defaults."""
    old = DATA / "record_v2.json"
    record = RunResult.load(old)
    assert (record.method, record.record_version, record.kappa) == ("byol_er", 2, 10.0)
    assert record.knn_top1_per_epoch == [0.55, 0.594444465637207]
    assert record.settings["meter"] == {
        "estimator": "plugin",
        "kappa": 10.0,
        "support": "sphere",
    }
    record.save(tmp_path / "runs" / "again.json")
    again = json.loads((tmp_path / "runs" / "again.json").read_text())
    before = json.loads(old.read_text())
    assert {k: again[k] for k in before} == before
    assert {k: v for k, v in again.items() if k not in before} == {
        "rebuilt_from_checkpoint": False,
        "runtime_parts_s": [],
    }
    (tmp_path / "runs" / "again.json").unlink()
    shutil.copy(old, tmp_path / "runs" / "old.json")
    assert load_results(tmp_path) == [record]
