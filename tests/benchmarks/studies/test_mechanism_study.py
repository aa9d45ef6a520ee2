"""The mechanism study's engine end to end on a tiny budget: plan, runs, resume, corpus.

The study's own analysis and report were archived (benchmarks/studies/ARCHIVE.md);
the engine they ran on stays, and the rescue study runs on it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from benchmarks.studies.mechanism import config, corpus, runner
from benchmarks.studies.mechanism.config import RunSpec, Task, preset
from benchmarks.studies.mechanism.models import training_loss
from benchmarks.studies.mechanism.runner import Env, Interrupted, checkpoint_path
from benchmarks.studies.mechanism.schedule import execute, status_line
from tests.benchmarks.studies.mechanism_data import fake_fashion_mnist


# ---------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------
def test_registered_plan_counts_and_order() -> None:
    cfg = preset("mechanism", 750)
    blocks = config.plan(cfg)
    runs = config.run_specs(cfg)
    assert len(runs) == 192
    assert len({r.run_id for r in runs}) == 192
    tasks = config.all_tasks(cfg)
    assert sum(t.kind == "stream" for t in tasks) == 25
    assert sum(t.kind == "untrained" for t in tasks) == 5
    sizes = [(name, sum(t.kind == "run" for t in block)) for name, block in blocks]
    assert [n for _, n in sizes] == [0, 54, 30, 54, 36, 18]
    # every run's stream and untrained evaluation come before it
    seen: set[str] = set()
    for task in tasks:
        assert set(task.depends) <= seen
        seen.add(task.key)
    # w = 0 and w = 1 of an arm and seed are adjacent
    for a, b in zip(runs, runs[1:], strict=False):
        if a.weight == 0.0:
            assert (b.arm, b.weight, b.seed, b.batch) == (a.arm, 1.0, a.seed, a.batch)
    assert {t.spec.seed for t in blocks[1][1] if t.spec} == {0, 1, 2}
    assert {t.spec.seed if t.spec else t.seed for t in blocks[4][1]} == {3, 4}


def test_run_ids_and_batch_axis() -> None:
    cfg = preset("mechanism", 750)
    assert RunSpec("dino-nocenter", 0.0, 128, 1000, 3).run_id == (
        "dino-nocenter_w0_b128_s1000_seed3"
    )
    assert RunSpec("simclr", None, 128, 750, 0).run_id == "simclr_b128_s750_seed0"
    axis = {
        (s.arm, s.weight, s.batch, s.steps) for s in config.batch_axis_specs(0, cfg)
    }
    assert ("byol", 0.0, 32, 750) in axis  # fixed steps
    assert ("byol", 0.0, 32, 3000) in axis  # fixed samples
    assert ("byol", 0.0, 512, 188) in axis  # fixed samples, S / 4 rounded up
    assert len(axis) == 18
    assert config.stream_samples(cfg) == 512 * 188


def test_eval_steps_are_every_tenth_rounded() -> None:
    assert config.eval_steps(750, 10) == list(range(0, 751, 75))
    assert config.eval_steps(188, 10) == [
        0,
        19,
        38,
        56,
        75,
        94,
        113,
        132,
        150,
        169,
        188,
    ]


def test_mechanism_preset_needs_the_pilots_s() -> None:
    if config.MECHANISM_STEPS is None:
        with pytest.raises(ValueError, match="pilot"):
            preset("mechanism")
    assert preset("mechanism", 500).steps == 500


# ---------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_fashion_mnist(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(scope="module")
def smoke_study(fashion: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_dir = tmp_path_factory.mktemp("study")
    cfg = preset("smoke")
    assert execute(config.all_tasks(cfg), cfg, log_dir, fashion, workers=1) == []
    return log_dir


def test_every_run_writes_its_record_and_corpus_file(smoke_study: Path) -> None:
    cfg = preset("smoke")
    specs = config.run_specs(cfg)
    records = {
        spec.run_id: json.loads(
            (smoke_study / "records" / f"{spec.run_id}.json").read_text()
        )
        for spec in specs
    }
    for spec in specs:
        record = records[spec.run_id]
        arrays = corpus.load_run(smoke_study / "corpus" / f"{spec.run_id}.npz")
        steps = config.eval_steps(spec.steps, cfg.evaluations)
        np.testing.assert_array_equal(arrays["step"], steps)
        assert arrays["backbone"].shape == (len(steps), 32, 128)
        assert arrays["backbone"].dtype == np.float16
        assert arrays["knn_top1"][-1] == pytest.approx(record["final_knn"])
        np.testing.assert_array_equal(arrays["image_index"], np.arange(32, 64))
        assert set(record["heads"]) == set(arrays) - {
            "step", "image_index", "label", *corpus.SCALARS,
        }  # fmt: skip
        assert record["label"] in ("collapsed", "learned", "no gain")
        assert (
            np.isnan(arrays["train_loss"][0])
            and np.isfinite(arrays["train_loss"][1:]).all()
        )
    dino = records["dino-nocenter_w1_b16_s4_seed0"]
    assert dino["loss"]["centering"] is False and dino["loss"]["class"] == "ERDINOLoss"
    assert dino["heads"]["student_logits"] == 2048 and dino["heads"]["center"] == 2048
    assert "prediction" not in records["byol-nopred_w0_b16_s4_seed0"]["heads"]
    assert records["swav-nosinkhorn_w0_b16_s4_seed0"]["loss"]["sinkhorn"] is False
    assert records["simclr_b16_s4_seed0"]["loss"]["class"] == "NTXentLoss"
    # nothing half-written or left over
    assert not list(smoke_study.rglob("*.tmp"))
    assert not list((smoke_study / "checkpoints").glob("*"))
    assert not (smoke_study / "corpus" / "partial").exists() or not list(
        (smoke_study / "corpus" / "partial").iterdir()
    )


def test_finished_study_is_not_run_again(
    smoke_study: Path, fashion: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: p.stat().st_mtime_ns for p in (smoke_study / "records").glob("*.json")}
    cfg = preset("smoke")
    assert execute(config.all_tasks(cfg), cfg, smoke_study, fashion, workers=1) == []
    assert "104 of 104 tasks already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_status_line(smoke_study: Path) -> None:
    assert status_line(smoke_study).startswith("104/104 tasks done")


# ---------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------
def _without_timing(record: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in record.items() if k != "timing"}


@pytest.mark.parametrize(
    "arm, weight", [("byol", 1.0), ("dino-nocenter", 0.0), ("swav", 1.0)]
)
def test_resume_after_an_interruption_gives_the_same_record(
    fashion: Path, tmp_path: Path, arm: str, weight: float
) -> None:
    cfg = config.StudyConfig(
        "resume", 6, batch=16, small_batch=4, large_batch=64, evaluations=3,
        seeds=(0,), small_seeds=(0,), train_size=None, test_size=None,
        bank_size=200, held_out=32, probe_iterations=10,
    )  # fmt: skip
    spec = RunSpec(arm, weight, 16, 6, 0)
    method = spec.method
    tasks = [
        Task("stream", method, 0),
        Task("untrained", seed=0),
        Task("run", spec=spec),
    ]

    whole = tmp_path / "whole"
    execute(tasks, cfg, whole, fashion, workers=1)

    cut = tmp_path / "cut"
    for stop in (3, 1, 2):  # stopped three times, between and after evaluations
        env = Env(cfg, cut, fashion, stop_after=stop)
        with pytest.raises(Interrupted):
            execute(tasks, cfg, cut, fashion, workers=1, env=env)
        assert checkpoint_path(cut, spec.run_id).exists()
    execute(tasks, cfg, cut, fashion, workers=1)

    a = json.loads((whole / "records" / f"{spec.run_id}.json").read_text())
    b = json.loads((cut / "records" / f"{spec.run_id}.json").read_text())
    # resumed three times; the second stop came before its next checkpoint, so
    # the checkpoints remember two of them
    assert b["timing"]["resumes"] == 2
    assert _without_timing(a) == _without_timing(b)
    ca = corpus.load_run(whole / "corpus" / f"{spec.run_id}.npz")
    cb = corpus.load_run(cut / "corpus" / f"{spec.run_id}.npz")
    assert set(ca) == set(cb)
    for key in ca:
        np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)


@pytest.mark.parametrize("at_step", [2, 5])
def test_a_run_that_diverges_stops_and_scores_chance(
    fashion: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_step: int
) -> None:
    cfg = config.StudyConfig(
        "diverge", 6, batch=16, small_batch=4, large_batch=64, evaluations=3,
        seeds=(0,), small_seeds=(0,), train_size=None, test_size=None,
        bank_size=200, held_out=32, probe_iterations=10,
    )  # fmt: skip
    spec = RunSpec("byol", 0.0, 16, 6, 0)
    tasks = [
        Task("stream", spec.method, 0),
        Task("untrained", seed=0),
        Task("run", spec=spec),
    ]
    real = training_loss

    def nan_from(model: Any, views: Any, step: int) -> Any:
        loss = real(model, views, step)
        return loss * float("nan") if step + 1 >= at_step else loss

    monkeypatch.setattr(runner, "training_loss", nan_from)
    execute(tasks, cfg, tmp_path, fashion, workers=1)
    record = json.loads((tmp_path / "records" / f"{spec.run_id}.json").read_text())
    assert record["diverged_step"] == at_step
    assert record["label"] == "diverged"
    assert record["final_knn"] == record["final_probe"]
    assert 0.0 < record["final_knn"] <= 0.5  # the most frequent test label's share
    assert record["gain"] == pytest.approx(
        record["final_knn"] - record["untrained_knn"]
    )
    # snapshots stop before the step that diverged; the corpus keeps them
    assert all(step < at_step for step in record["evals"]["step"])
    assert not checkpoint_path(tmp_path, spec.run_id).exists()


def test_a_worker_stops_when_its_main_process_is_gone(tmp_path: Path) -> None:
    env = Env(preset("smoke"), tmp_path, None, parent=os.getppid())
    env.check_parent()
    env.parent = -1
    with pytest.raises(SystemExit, match="main process is gone"):
        env.check_parent()


def test_eta_follows_the_rate_of_the_last_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.studies.mechanism import schedule

    cfg = preset("smoke")
    tasks = config.all_tasks(cfg)
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    progress = schedule.Progress(tasks, [], cfg, tmp_path, 2, open(os.devnull, "w"))
    total = progress.remaining_cost
    # a slow start (100 s per task), then 10 s per task: once the window of the last
    # 12 tasks holds only fast ones, the ETA is the fast rate's
    steps = [100.0] * 3 + [10.0] * 14
    for step in steps:
        clock[0] += step
        progress.update(tasks[0], {"wall_s": step, "cpu_s": step})
    cost = schedule.task_cost(tasks[0], cfg)
    assert progress.remaining_cost == pytest.approx(total - len(steps) * cost)
    assert progress.eta() == pytest.approx(progress.remaining_cost * 10.0 / cost)
    cumulative = progress.remaining_cost * sum(steps) / (len(steps) * cost)
    assert progress.eta() < cumulative / 2
    assert json.loads((tmp_path / "status.json").read_text())["done"] == len(steps)


def test_status_does_not_list_a_finished_task_as_running(tmp_path: Path) -> None:
    from benchmarks.studies.mechanism import schedule

    cfg = preset("smoke")
    tasks = config.all_tasks(cfg)
    progress = schedule.Progress(tasks, [], cfg, tmp_path, 2, open(os.devnull, "w"))
    progress.running = [tasks[0].key, tasks[1].key]
    progress.update(tasks[0], {"wall_s": 1.0, "cpu_s": 1.0})
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["running"] == [tasks[1].key]
    progress.update(tasks[1], {"wall_s": 1.0, "cpu_s": 1.0})
    assert json.loads((tmp_path / "status.json").read_text())["running"] == []


def test_a_head_beyond_float16s_range_is_stored_finite(tmp_path: Path) -> None:
    small = np.array([[1.0, 2.5], [-3.0, 0.5]], dtype=np.float32)
    big = np.array([[1.0, 7.0e4], [2.0, -3.0]], dtype=np.float32)
    assert corpus.head_array("projection", small).dtype == np.float16
    assert corpus.head_array("center", small).dtype == np.float32
    kept = corpus.head_array("projection", big)
    assert kept.dtype == np.float32 and np.array_equal(kept, big)
    # A value that already is inf does not by itself ask for float32.
    assert corpus.head_array("projection", small * np.inf).dtype == np.float16
    corpus.write_snapshot(tmp_path, "r", 0, {"projection": small}, {})
    corpus.write_snapshot(tmp_path, "r", 10, {"projection": big}, {})
    path = corpus.merge_run(tmp_path, "r", [0, 10], np.arange(2), np.zeros(2))
    stored = corpus.load_run(path)["projection"]
    assert stored.dtype == np.float32 and np.isfinite(stored).all()
    assert np.array_equal(stored, np.stack([small, big]))
