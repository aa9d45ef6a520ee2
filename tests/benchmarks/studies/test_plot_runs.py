"""benchmarks/plot_runs.py: selection of run records and the plot of their curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from benchmarks.common.records import RunResult
from tests.benchmarks.records import make_record
from tests.benchmarks.scripts import load_script


def _cli() -> Any:
    return load_script("studies/plot_runs")


def _record(method: str, ema: Optional[float], seed: int, epochs: int) -> RunResult:
    return make_record(method, 128, ema, seed, 0.5, epochs=epochs)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    for r in (
        _record("byol", 0.99, 0, 3),
        _record("byol_er", 0.99, 0, 3),
        _record("byol", 0.0, 1, 3),
        _record("byol", 0.99, 0, 2),
        _record("simclr", None, 0, 3),
    ):
        r.save(tmp_path / "runs" / f"{r.run_id}.json")
    return tmp_path


def test_select_applies_every_filter(log_dir: Path) -> None:
    from benchmarks.common.records import load_results

    select = _cli().select
    results = load_results(log_dir)
    assert len(select(results)) == 5
    chosen = select(results, ["byol", "byol_er"], [128], [0.99], [0], 3)
    assert sorted(r.run_id for r in chosen) == [
        "byol-bs128-ema0.99-ep3-seed0",
        "byol_er-bs128-ema0.99-ep3-seed0",
    ]
    # An EMA filter leaves out the runs without a teacher.
    assert {r.method for r in select(results, emas=[0.0, 0.99])} == {"byol", "byol_er"}


def test_main_writes_the_plot(log_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    code = _cli().main(
        [
            str(log_dir),
            "--methods",
            "byol",
            "byol_er",
            "--epochs",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_refuses_an_empty_selection(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _cli().main([str(log_dir), "--methods", "dino"])
    assert info.value.code == 2
    assert "no run record" in capsys.readouterr().err


def test_main_refuses_a_directory_without_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _cli().main([str(tmp_path / "nowhere")])
    assert info.value.code == 2
    assert "log_dir" in capsys.readouterr().err
