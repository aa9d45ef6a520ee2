"""benchmarks/cifar10.py end to end: the smoke preset, bad arguments, DDP, jobs.

Resuming: test_cifar10_resume.py."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

from benchmarks.cifar import config as cifar_config
from benchmarks.cifar import data, pool, run, sweep
from benchmarks.cifar.methods import METHODS
from benchmarks.cifar.sweep import run_sweep
from benchmarks.common.records import RunResult, load_results
from tests.benchmarks.cifar.sweeps import (
    HANG_GUARD_S,
    ROOT,
    SCRIPT,
    cli,
    run_main,
    tiny,
)


def test_smoke_preset_end_to_end_on_a_tiny_budget(tmp_path: Path) -> None:
    """The README's main job as a user runs it, every method, on a tiny budget.

    CI runs the preset itself (the README's first command); here it runs on 128
    training images for 2 epochs, so that the test does not depend on an idle machine.
    """
    log_dir = tmp_path / "smoke"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--preset", "smoke", "--epochs", "2", "--train-subset", "128"),
            *("--test-subset", "100", "--log-dir", str(log_dir)),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=HANG_GUARD_S,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = sorted((log_dir / "runs").glob("*.json"))
    assert len(records) == len(METHODS)
    results = [RunResult.load(path) for path in records]
    assert sorted(r.method for r in results) == sorted(METHODS)
    for result in results:
        # 10 classes: chance is 0.1 (an untrained CNN already scores far above it).
        assert result.knn_top1 > 0.2, (result.method, result.knn_top1)
        assert len(result.knn_top1_per_epoch) == result.epochs == 2
        assert result.knn_top1 == max(result.knn_top1_per_epoch)
        assert result.knn_top1_final == result.knn_top1_per_epoch[-1]
        for curve in (
            result.er_entropy_per_epoch,
            result.output_collapse_score_per_epoch,
            result.collapse_score_per_epoch,
            result.rankme_per_epoch,
        ):
            assert len(curve) == 2
        assert all(0.0 <= c <= 1.0 for c in result.collapse_score_per_epoch)
        # The ER entropy: a gap in [0, log 256] on the sphere, H / log K otherwise.
        ceiling = math.log(256) if result.er_entropy_kind == "gap" else 1.0
        assert all(0.0 <= h <= ceiling for h in result.er_entropy_per_epoch)
        assert result.settings["dataset"] == "digits"
        assert result.settings["train_images"] == 128
        assert result.peak_gpu_memory_gb is None  # CPU run
        assert result.runtime_parts_s == [result.runtime_s]  # one process
        assert not result.rebuilt_from_checkpoint
    # A line when each run starts, one when it ends, then the table.
    lines = completed.stdout.splitlines()
    started = [line for line in lines if line.endswith("  started")]
    summaries = [line for line in lines if "kNN top-1" in line]
    assert len(started) == len(summaries) == len(METHODS)
    for start in started:  # (runs may train side by side, one per core)
        label = start.removesuffix("  started")
        (end,) = [line for line in summaries if line.startswith(label + "  kNN")]
        assert lines.index(start) < lines.index(end)
    assert {line.split()[0] for line in started} == {
        f"[{i}/{len(METHODS)}]" for i in range(1, len(METHODS) + 1)
    }
    table = (log_dir / "results.md").read_text()
    assert table.strip() in completed.stdout
    assert "±" not in table  # one seed: no spread to show
    for model in ("SimCLR", "MoCo", "BYOL", "SimSiam", "DINO", "SwaV"):
        assert f"| {model} " in table
    with open(log_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(METHODS)
    assert {row["objective"] for row in rows} == {"original", "ER"}
    assert {row["model"] for row in rows} == {
        "SimCLR",
        "MoCo",
        "BYOL",
        "SimSiam",
        "DINO",
        "SwaV",
    }
    data = (log_dir / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    # One batch size and one EMA value: nothing to plot against them.
    assert not (log_dir / "top1_vs_batch_size.png").exists()
    assert not (log_dir / "top1_vs_ema.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "simclr", "byol_xx"], "unknown method 'byol_xx'"),
        (["--preset", "smoke", "--batch-sizes", "0"], "batch sizes must be >= 2"),
        (["--dataset", "fashion-mnist", "--data-dir", "{missing}"], "does not exist"),
        (["--preset", "smoke", "--knn-k", "0"], "knn k must be >= 1"),
        (["--preset", "smoke", "--knn-t", "-1"], "knn t must be positive"),
        (["--preset", "smoke", "--accelerator", "gpu"], "no CUDA GPU is available"),
        (["--preset", "smoke", "--log-dir", "{file}"], "is not a directory"),
        (
            ["--preset", "smoke", "--methods", "moco", "--batch-sizes", "12"],
            "divisible by 8",
        ),
        (
            ["--preset", "smoke", "--entropy-weight", "-1"],
            "entropy weight must be >= 0",
        ),
        (["--preset", "smoke", "--kappa", "0"], "kappa must be positive"),
        (["--preset", "smokey"], "invalid choice: 'smokey'"),
        (["--epochs", "0", "--preset", "smoke"], "epochs must be >= 1"),
        (["--ema", "1.0", "--preset", "smoke"], "EMA coefficients must be in [0, 1)"),
    ],
)
def test_bad_arguments_exit_with_one_line(
    tmp_path: Path,
    argv: List[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a-file").write_text("x")
    argv = [
        a.replace("{missing}", str(tmp_path / "missing")).replace(
            "{file}", str(tmp_path / "a-file")
        )
        for a in argv
    ]
    with pytest.raises(SystemExit) as exit_info:
        cli().main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("benchmarks/cifar10.py: error: ")
    assert message in lines[0]


def test_missing_cifar10_files_exit_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No network and no files: one line naming what was expected, exit code 2."""
    datasets = data

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Error downloading cifar-10-python.tar.gz:\nno network")

    monkeypatch.setattr(datasets.torchvision.datasets, "CIFAR10", no_network)
    config = tiny(tmp_path / "logs", dataset="cifar10", data_dir=tmp_path)
    assert run_main(cli(), config, monkeypatch) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("benchmarks/cifar10.py: error: CIFAR-10 is not in")
    assert "data_batch_1..5" in lines[0] and "--data-dir" in lines[0]
    assert "no network" in lines[0]


def test_cifar10_downloads_to_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --data-dir, CIFAR-10 goes to datasets/cifar10 (download requested)."""
    datasets = data
    # The default folder, not one the environment names (CI names Debian's).
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    seen: List[Any] = []

    def fake(root: str, train: bool = True, download: bool = False) -> Any:
        seen.append((root, train, download))
        raise RuntimeError("stop here")

    monkeypatch.setattr(datasets.torchvision.datasets, "CIFAR10", fake)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 is not in datasets/cifar10"):
        datasets.load_dataset("cifar10")
    assert seen == [("datasets/cifar10", True, True)]


def test_knn_k_larger_than_the_bank_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="knn k 100 exceeds the 64 training images"):
        run_sweep(tiny(tmp_path, knn_k=100))


def test_the_benchmark_imports_no_study() -> None:
    """cifar10.py imports nothing of benchmarks/studies (the studies import it)."""
    code = (
        "import sys, benchmarks.cifar10; "
        "print(sorted(m for m in sys.modules if m.startswith('benchmarks.studies')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    assert out.strip() == "[]"


def test_help_lists_every_option_with_a_default() -> None:
    text = cli().build_parser().format_help()
    for method in METHODS:
        assert method in text
    for action in cli().build_parser()._actions:
        if action.option_strings and action.dest not in ("help",):
            assert action.help, action.option_strings


def test_records_are_json_with_every_setting(tmp_path: Path) -> None:
    (result,) = run_sweep(tiny(tmp_path, methods=["dino_er"], emas=[0.9]))
    record = json.loads((tmp_path / "runs" / f"{result.run_id}.json").read_text())
    assert record["ema"] == 0.9 and record["batch_size"] == 16
    for key in ("backbone", "train_subset", "knn_k", "lightly_version"):
        assert key in record["settings"]
    assert record["settings"]["train_images"] == 64
    assert record["settings"]["precision"] == "32-true"  # lightly's
    assert record["kappa"] is None  # DINO: a discrete support
    assert record["settings"]["meter"] == {"support": "discrete", "temperature": 0.1}
    assert record["entropy_weight"] == 1.0


def test_history_matches_the_logged_accuracy_of_every_epoch(tmp_path: Path) -> None:
    """The record holds each epoch's own kNN top-1, the last one included."""
    (result,) = run_sweep(tiny(tmp_path, methods=["simclr"], epochs=2))
    metrics = tmp_path / "lightning" / result.run_id / "metrics.csv"
    with open(metrics, newline="") as handle:
        logged = [
            float(row["kNN_accuracy"]) / 100.0
            for row in csv.DictReader(handle)
            if row.get("kNN_accuracy")
        ]
    assert len(logged) == 2
    assert result.knn_top1_per_epoch == pytest.approx(logged, abs=1e-6)
    assert result.knn_top1 == pytest.approx(max(logged), abs=1e-6)


def test_precision_auto_is_mixed_only_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cifar_config.resolve_precision("auto", "auto") == "16-mixed"
    assert cifar_config.resolve_precision("auto", "gpu") == "16-mixed"
    assert cifar_config.resolve_precision("auto", "cpu") == "32-true"
    assert cifar_config.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cifar_config.resolve_precision("auto", "auto") == "32-true"


def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    """--devices 2 trains with Lightning DDP (gloo), gathered losses, one record."""
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--dataset", "digits", "--methods", "simclr_er", "--batch-sizes", "16"),
            *("--epochs", "1", "--train-subset", "128", "--knn-k", "10"),
            *("--backbone", "small", "--num-workers", "0", "--accelerator", "cpu"),
            *("--devices", "2", "--log-dir", str(tmp_path), "--no-progress-bar"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=HANG_GUARD_S,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summaries = [line for line in completed.stdout.splitlines() if "kNN top-1" in line]
    assert len(summaries) == 1  # rank 0 alone reports
    (result,) = load_results(tmp_path)
    assert result.settings["devices"] == 2
    assert len(result.knn_top1_per_epoch) == 1
    assert result.knn_top1 > 0.2  # 10 classes; one epoch on 128 images


def test_test_subset_is_the_same_for_every_seed(tmp_path: Path) -> None:
    digits = data.load_dataset("digits")
    config = tiny(tmp_path, test_subset=50)
    _, knn_train_0, test_0 = run.make_loaders(digits, "simclr", 16, config, seed=0)
    _, knn_train_1, test_1 = run.make_loaders(digits, "simclr", 16, config, seed=1)
    labels_0 = [int(y) for _, y, _ in test_0.dataset]  # type: ignore[attr-defined]
    labels_1 = [int(y) for _, y, _ in test_1.dataset]  # type: ignore[attr-defined]
    assert len(labels_0) == 50 and labels_0 == labels_1
    assert len(knn_train_0.dataset) == 64  # type: ignore[arg-type]
    train_0 = knn_train_0.dataset.images  # type: ignore[attr-defined]
    train_1 = knn_train_1.dataset.images  # type: ignore[attr-defined]
    assert not (train_0 == train_1).all()  # the train subset follows the seed


def test_jobs_train_in_processes_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs at once, one thread each, give the records one process gives."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = {r.method: r for r in run_sweep(tiny(tmp_path / "one"))}
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(pool.os, "cpu_count", lambda: 2)  # 2 // jobs = 1 thread
    together = {r.method: r for r in run_sweep(tiny(tmp_path / "two", jobs=2))}
    assert sorted(together) == ["byol_er", "simclr"]
    for method, record in together.items():
        assert record.settings["device"] == "CPU (1 threads)"
        assert record.knn_top1_per_epoch == alone[method].knn_top1_per_epoch
        assert record.er_entropy_per_epoch == pytest.approx(
            alone[method].er_entropy_per_epoch, rel=1e-5
        )
        assert "jobs" not in record.settings  # not a setting of the run
    out = capsys.readouterr().out
    assert "[1/2] simclr" in out and "[2/2] byol_er" in out


def test_run_processes_start_their_loader_workers_as_this_process_does() -> None:
    """Not as the spawned run process would by default (a torch import per epoch)."""
    import multiprocessing

    if multiprocessing.get_start_method() == "spawn":
        pytest.skip("this platform starts processes by spawn: nothing to tell apart")
    with pool._worker_pool(1, 2) as processes:
        # a function of this module, run there: multiprocessing.get_start_method
        # itself would be pickled with this process's context and report it
        method = processes.submit(_start_method).result()
        threads = processes.submit(_threads).result()
    assert method == multiprocessing.get_start_method()
    assert threads == max(1, (os.cpu_count() or 1) // 2)


def _start_method() -> str:
    import multiprocessing

    return multiprocessing.get_start_method()


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def test_jobs_pass_a_failed_run_to_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that raises in its process raises here, and leaves no record."""
    config = tiny(tmp_path, batch_sizes=[128], jobs=2)  # 128 > the 64 images
    # Past the check made before any run, so that the run processes fail.
    monkeypatch.setattr(
        sweep, "preflight", lambda config, specs: data.load_dataset(config.dataset)
    )
    with pytest.raises(ValueError, match="batch size 128 exceeds the 64 training"):
        run_sweep(config)
    assert not (tmp_path / "runs").exists() or not list(
        (tmp_path / "runs").glob("*.json")
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(jobs=-1), "jobs must be >= 0"),
        (dict(jobs=2, accelerator="auto"), "needs accelerator 'cpu' and devices 1"),
    ],
)
def test_jobs_are_checked(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny(Path("unused"), **overrides).validate()
