"""benchmarks/cifar10.py's runs: one owner each, crashes, kill -9 and resume.

Every test runs tiny budgets (64 digit images, a small CNN), in subprocesses where a
second process or a signal is the point; they wait for files, never for a fixed time.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

import pytest

from benchmarks.cifar.config import SweepConfig
from benchmarks.cifar.sweep import run_sweep
from benchmarks.common.lock import LOCK_NAME
from benchmarks.common.records import RunResult, load_results
from tests.benchmarks.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "cifar10.py"
HANG_GUARD_S = 3600
"""A subprocess's time limit: a guard against a hang, not a speed check."""
TINY = [
    *("--dataset", "digits", "--batch-sizes", "16", "--train-subset", "64"),
    *("--test-subset", "50", "--knn-k", "5", "--backbone", "small"),
    *("--num-workers", "0", "--accelerator", "cpu", "--no-progress-bar"),
]


def _env() -> dict[str, str]:
    # One thread per process: two processes share the two cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _logged_knn_epochs(metrics: Path) -> List[int]:
    """The epochs of the kNN rows of a Lightning metrics.csv, header-consistent."""
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(None not in row for row in rows), rows  # no row longer than the header
    return [int(row["epoch"]) for row in rows if row.get("kNN_accuracy")]


def test_two_sweeps_on_one_log_dir_train_each_run_once(tmp_path: Path) -> None:
    """Started together on one --log-dir, they share the runs and both finish."""
    methods = ["simclr", "byol_er", "simsiam"]
    command = [sys.executable, str(SCRIPT), *TINY, "--methods", *methods]
    command += ["--epochs", "2", "--log-dir", str(tmp_path / "logs")]
    sweeps = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(),
        )
        for _ in range(2)
    ]
    outputs = [sweep.communicate(timeout=HANG_GUARD_S) for sweep in sweeps]
    for sweep, (_, err) in zip(sweeps, outputs, strict=True):
        assert sweep.returncode == 0, err[-3000:]
    started = [
        line.split()[1]
        for out, _ in outputs
        for line in out.splitlines()
        if line.endswith("  started")
    ]
    assert sorted(started) == sorted(methods)  # each run trained by one of the two
    results = load_results(tmp_path / "logs")
    assert sorted(r.method for r in results) == sorted(methods)
    for result in results:
        assert len(result.knn_top1_per_epoch) == 2
        run_dir = tmp_path / "logs" / "lightning" / result.run_id
        assert _logged_knn_epochs(run_dir / "metrics.csv") == [0, 1]
        assert not (run_dir / LOCK_NAME).exists()
    for out, _ in outputs:  # both end with the whole table
        assert all(f"| {m} " in out for m in ("SimCLR", "BYOL", "SimSiam"))


_CRASH = """
import runpy, sys
from benchmarks.cifar import methods

def boom(self, batch, batch_idx):
    raise ValueError("boom inside training")

methods.SimCLR.training_step = boom
sys.argv = [{script!r}, *{argv!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_a_crash_inside_a_run_exits_non_zero_with_its_traceback(
    tmp_path: Path,
) -> None:
    """Not the one line of a bad argument: a ValueError raised while training."""
    argv = [*TINY, "--methods", "simclr", "--epochs", "1", "--log-dir", str(tmp_path)]
    completed = subprocess.run(
        [sys.executable, "-c", _CRASH.format(script=str(SCRIPT), argv=argv)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=HANG_GUARD_S,
    )
    assert completed.returncode == 1, completed.stderr[-3000:]
    err = completed.stderr
    assert "Traceback (most recent call last)" in err
    assert "ValueError: boom inside training" in err
    assert "in boom" in err  # the frame that raised
    assert (
        err.rstrip()
        .splitlines()[-1]
        .startswith("benchmarks/cifar10.py: a run failed (traceback above)")
    )
    assert "error: boom" not in err
    run_dir = tmp_path / "lightning" / "simclr-bs16-ep1-seed0"
    assert not (run_dir / LOCK_NAME).exists()  # released on the way out
    assert not list((tmp_path / "runs").glob("*.json"))


def test_a_setting_that_needs_the_data_is_one_line_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*TINY, "--methods", "simclr", "--epochs", "1", "--knn-k", "100"]
    code = load_script("cifar10").main([*argv, "--log-dir", str(tmp_path)])
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "benchmarks/cifar10.py: error: knn k 100 exceeds the 64 training images of "
        "the kNN bank"
    )
    assert not (tmp_path / "lightning").exists()  # checked before any run


def _clock_parts(checkpoint: Path) -> List[float]:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    (clock,) = [v for k, v in state["callbacks"].items() if k.startswith("RunClock")]
    return [float(s) for s in clock["parts_s"]]


def test_runtime_after_kill_and_resume_is_the_sum(tmp_path: Path) -> None:
    """kill -9 after the first checkpoint, run again: one record, both processes'
    time, every epoch's log row, the dead process's lock taken over."""
    epochs = 6
    command = [sys.executable, str(SCRIPT), *TINY, "--methods", "simclr"]
    command += ["--epochs", str(epochs), "--log-dir", str(tmp_path)]
    run_dir = tmp_path / "lightning" / f"simclr-bs16-ep{epochs}-seed0"
    last = run_dir / "checkpoints" / "last.ckpt"
    first = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while not last.is_file():
            assert first.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not list((tmp_path / "runs").glob("*.json")), "killed too late"
    assert (run_dir / LOCK_NAME).is_file()  # left behind by the killed process
    saved = _clock_parts(last)
    assert len(saved) == 1 and saved[0] > 0

    second = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=HANG_GUARD_S,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"taking over from pid {first.pid} on " in second.stdout
    assert "resuming from last.ckpt" in second.stdout
    (result,) = load_results(tmp_path)
    assert len(result.runtime_parts_s) == 2
    assert result.runtime_parts_s[0] == pytest.approx(saved[0], rel=1e-12)
    assert result.runtime_s == pytest.approx(sum(result.runtime_parts_s))
    assert result.runtime_s > result.runtime_parts_s[1] > 0
    assert "(2 processes)" in second.stdout
    assert len(result.knn_top1_per_epoch) == epochs
    assert _logged_knn_epochs(run_dir / "metrics.csv") == list(range(epochs))
    assert not (run_dir / LOCK_NAME).exists()


def _tiny(log_dir: Path, **overrides: Any) -> SweepConfig:
    settings: dict[str, Any] = dict(
        methods=["simclr"],
        batch_sizes=[16],
        epochs=2,
        dataset="digits",
        log_dir=log_dir,
        backbone="small",
        accelerator="cpu",
        num_workers=0,
        train_subset=64,
        knn_k=5,
        progress_bar=False,
    )
    settings.update(overrides)
    return SweepConfig(**settings)


def test_a_record_rebuilt_from_the_checkpoint_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated record is rebuilt from the complete last.ckpt, not retrained."""
    (first,) = run_sweep(_tiny(tmp_path))
    assert not first.rebuilt_from_checkpoint
    path = tmp_path / "runs" / f"{first.run_id}.json"
    path.write_text(path.read_text()[:200])  # cut short, as a full disk might
    capsys.readouterr()
    (again,) = run_sweep(_tiny(tmp_path))
    assert again.rebuilt_from_checkpoint
    assert RunResult.load(path).rebuilt_from_checkpoint
    assert "(record rebuilt from last.ckpt)" in capsys.readouterr().out
    assert again.knn_top1_per_epoch == first.knn_top1_per_epoch
    # The time is the training's (from the checkpoint), not the rebuild's.
    assert len(again.runtime_parts_s) == 2
    assert 0.5 * first.runtime_s < again.runtime_parts_s[0] <= first.runtime_s
    assert again.runtime_s == pytest.approx(sum(again.runtime_parts_s))
