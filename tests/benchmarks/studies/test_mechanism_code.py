"""The mechanism engine's resume rule, on crafted records (nothing is trained)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from benchmarks.common.code import CodeChanged, CodeVersion, write_started
from benchmarks.common.records import RunRecord
from benchmarks.studies.mechanism.config import RunSpec, Task
from benchmarks.studies.mechanism.runner import (
    checkpoint_path,
    record_path,
    started_code_path,
)
from benchmarks.studies.mechanism.schedule import check_code

A = CodeVersion("a" * 40)
B = CodeVersion("b" * 40)
DONE = RunSpec("byol", 1.0, 16, 6, 0)
STARTED = RunSpec("byol", 0.0, 16, 6, 0)
TASKS = [Task("stream", "byol", 0), Task("run", spec=DONE), Task("run", spec=STARTED)]


def test_finished_and_started_runs_of_other_code_stop_the_study(tmp_path: Path) -> None:
    RunRecord(DONE.run_id, "mechanism", A, {"final_knn": 0.5}).save(
        record_path(tmp_path, DONE.run_id)
    )
    check_code(TASKS, tmp_path, A)  # the same code
    with pytest.raises(CodeChanged, match=r"byol_w1_b16_s6_seed0.*commit bbbbbbb"):
        check_code(TASKS, tmp_path, B)
    write_started(started_code_path(tmp_path, STARTED.run_id), B)
    checkpoint_path(tmp_path, STARTED.run_id).write_bytes(b"")
    with pytest.raises(CodeChanged, match=r"byol_w0_b16_s6_seed0"):
        check_code(TASKS, tmp_path, A)
    out = io.StringIO()
    check_code(TASKS, tmp_path, A, allow_code_change=True, out=out)
    assert "1 run(s) were made with other code" in out.getvalue()


def test_records_before_the_code_was_named_stop_it_too(tmp_path: Path) -> None:
    record_path(tmp_path, DONE.run_id).parent.mkdir(parents=True)
    record_path(tmp_path, DONE.run_id).write_text('{"run_id": "x", "final_knn": 1}')
    with pytest.raises(CodeChanged, match="no commit recorded"):
        check_code(TASKS, tmp_path, A)


def test_the_study_run_id_and_record_keep_their_format() -> None:
    assert DONE.run_id == "byol_w1_b16_s6_seed0"
    assert DONE.to_dict() == {
        "arm": "byol",
        "weight": 1.0,
        "batch": 16,
        "steps": 6,
        "seed": 0,
    }
