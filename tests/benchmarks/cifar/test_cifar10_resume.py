"""benchmarks/cifar10.py resumes: finished runs kept, interrupted ones continued from
their checkpoint, records of other settings or other code refused."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, List

import pytest

from benchmarks.cifar import run
from benchmarks.cifar.sweep import run_sweep
from benchmarks.common.code import CodeChanged
from benchmarks.common.records import RunResult, load_results
from tests.benchmarks.cifar.sweeps import (
    ROOT,
    cli,
    run_main,
    tiny,
)


def test_resume_keeps_finished_runs_and_redoes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny(tmp_path)
    real_run_one = run.run_one
    calls: List[str] = []

    def interrupted_second_run(spec: Any, *args: Any) -> RunResult:
        calls.append(spec.method)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_one(spec, *args)

    monkeypatch.setattr(run, "run_one", interrupted_second_run)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config)
    records = list((tmp_path / "runs").glob("*.json"))
    assert [p.name for p in records] == ["simclr-bs16-ep1-seed0.json"]
    first = records[0].read_bytes()

    calls.clear()
    results = run_sweep(config)
    assert calls == ["byol_er"]  # the finished run is not redone
    assert records[0].read_bytes() == first  # and its record is untouched
    assert sorted(r.method for r in results) == ["byol_er", "simclr"]
    assert "(done before, kept)" in capsys.readouterr().out

    # A third invocation has nothing left to do but still writes the tables.
    calls.clear()
    (tmp_path / "results.md").unlink()
    run_sweep(config)
    assert calls == []
    assert "| BYOL " in (tmp_path / "results.md").read_text()


def test_resume_keeps_a_record_written_before_the_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record of lightly_er.benchmarking (record version 2) counts as done once
    the sweep is told that it may keep a record of unknown code."""
    old = ROOT / "tests" / "benchmarks" / "data" / "record_v2.json"
    record = RunResult.load(old)
    (tmp_path / "runs").mkdir()
    shutil.copy(old, tmp_path / "runs" / f"{record.run_id}.json")

    def no_run(*args: Any) -> RunResult:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(run, "run_one", no_run)
    config = tiny(tmp_path, methods=["byol_er"], epochs=2, knn_k=5)
    with pytest.raises(CodeChanged, match="no commit recorded"):
        run_sweep(config)  # the record names no code: the resume rule stops
    (result,) = run_sweep(replace(config, allow_code_change=True))
    assert result == record
    out = capsys.readouterr().out
    assert "1 run(s) were made with other code" in out
    assert "(done before, kept)" in out


def test_interrupted_run_resumes_from_its_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl+C in epoch 2 keeps epoch 1 (checkpoint and history); the rerun finishes."""
    import pytorch_lightning as pl

    class CtrlC(pl.Callback):
        def on_train_epoch_start(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule
        ) -> None:
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    real_trainer = pl.Trainer

    def trainer_with(*callbacks: pl.Callback) -> Any:
        def make(*args: Any, **kwargs: Any) -> pl.Trainer:
            kwargs["callbacks"] = list(kwargs["callbacks"]) + list(callbacks)
            return real_trainer(*args, **kwargs)

        return make

    config = tiny(tmp_path, methods=["simclr_er"], epochs=2)
    script = cli()
    monkeypatch.setattr(run.pl, "Trainer", trainer_with(CtrlC()))
    code = run_main(script, config, monkeypatch)
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted; finished runs are kept" in err
    run_dir = tmp_path / "lightning" / "simclr_er-bs16-ep2-seed0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "runs").exists()

    epochs_started: List[int] = []

    class Record(pl.Callback):
        def on_train_epoch_start(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule
        ) -> None:
            epochs_started.append(trainer.current_epoch)

    monkeypatch.setattr(run.pl, "Trainer", trainer_with(Record()))
    assert run_main(script, config, monkeypatch) == 0
    assert epochs_started == [1]  # epoch 0 came from the checkpoint
    (result,) = load_results(tmp_path)
    assert len(result.knn_top1_per_epoch) == 2  # history survived the interruption
    assert len(result.er_entropy_per_epoch) == 2
    assert len(result.collapse_score_per_epoch) == 2
    # Both processes' time counts; the per-epoch log of the first one survived.
    assert len(result.runtime_parts_s) == 2
    assert result.runtime_s == pytest.approx(sum(result.runtime_parts_s))
    assert not result.rebuilt_from_checkpoint
    assert _logged_knn_epochs(run_dir / "metrics.csv") == [0, 1]


def _logged_knn_epochs(metrics: Path) -> List[int]:
    """The epochs of the kNN rows of a Lightning metrics.csv, header-consistent."""
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # A row with more fields than the header would have them under the key None.
    assert all(None not in row for row in rows), rows
    return [int(row["epoch"]) for row in rows if row.get("kNN_accuracy")]


def test_resume_refuses_records_made_with_other_settings(tmp_path: Path) -> None:
    run_sweep(tiny(tmp_path, methods=["simclr"]))
    with pytest.raises(ValueError, match="was run with train_subset=64 but this sweep"):
        run_sweep(tiny(tmp_path, methods=["simclr"], train_subset=32))
    with pytest.raises(ValueError, match="knn_k=5 but this sweep has knn_k=7"):
        run_sweep(tiny(tmp_path, methods=["simclr"], knn_k=7))
