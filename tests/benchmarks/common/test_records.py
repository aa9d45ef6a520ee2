"""Run records: JSON round trip, refusals, and the records already on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.common.code import CodeVersion
from benchmarks.common.records import RunRecord, RunResult, load_results
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


def test_record_names_its_run_and_code(tmp_path: Path) -> None:
    code = CodeVersion("a" * 40, True, "b" * 64, {"torch": "2.0"})
    r = sweep_record("byol_er", 32, 1, 0.8)
    r.code = code
    r.save(tmp_path / "runs" / "a.json")
    data = json.loads((tmp_path / "runs" / "a.json").read_text())
    assert (data["run_id"], data["engine"]) == (
        "byol_er-bs32-ema0.99-ep2-seed1",
        "cifar10",
    )
    assert data["code"] == {
        "commit": "a" * 40,
        "dirty": True,
        "diff": "b" * 64,
        "versions": {"torch": "2.0"},
    }
    loaded = RunResult.load(tmp_path / "runs" / "a.json")
    assert loaded == r and loaded.code is not None
    assert loaded.code.versions == {"torch": "2.0"}


def test_run_record_round_trip_and_envelope(tmp_path: Path) -> None:
    record = RunRecord("x_b4_s2_seed0", "mechanism", None, {"final_knn": 0.5})
    record.save(tmp_path / "x.json")
    assert RunRecord.load(tmp_path / "x.json") == record
    with pytest.raises(ValueError, match="may not set"):
        RunRecord("x", "mechanism", None, {"code": 1}).to_json()
    with pytest.raises(ValueError, match="may not set"):
        RunRecord("x", "mechanism", None, {"run_id": "y"}).to_json()
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        RunRecord.load(tmp_path / "list.json")


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
        "run_id": "byol_er-bs16-ema0.99-ep2-seed0",
        "engine": "cifar10",
        "code": None,  # written before records named their code
    }
    (tmp_path / "runs" / "again.json").unlink()
    shutil.copy(old, tmp_path / "runs" / "old.json")
    assert load_results(tmp_path) == [record]
