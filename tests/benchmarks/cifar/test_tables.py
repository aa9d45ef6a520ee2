"""The results table of a sweep (aggregated over seeds, Markdown and CSV) and its plots."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from benchmarks.cifar.plots import plot_curves, plot_sweep, sweep_series
from benchmarks.cifar.tables import aggregate, csv_table, markdown_table, write_tables
from tests.benchmarks.records import sweep_record


def test_aggregate_mean_std_over_seeds() -> None:
    rows = aggregate(
        [
            sweep_record("byol", 32, 0, 0.70),
            sweep_record("byol", 32, 1, 0.80),
            sweep_record("byol_er", 32, 0, 0.75),
        ]
    )
    assert [(r["Objective"], r["Runs"]) for r in rows] == [("ER", 1), ("original", 2)]
    original = rows[1]
    assert original["top1_mean"] == pytest.approx(0.75)
    assert original["top1_std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std
    assert original["kNN Top-1 (best)"] == "0.750 ± 0.071"
    assert original["kNN Top-1 (final)"] == "0.700 ± 0.071"
    assert original["Collapse Score (final)"] == "0.300"  # mean of 0.25 and 0.35
    assert original["ER Entropy (final)"] == "3.500 nats"  # mean of 3 and 4
    assert (original["κ"], original["Estimator"]) == ("10", "plugin")
    assert original["Entropy Weight"] == "-"
    assert rows[0]["Entropy Weight"] == "1"
    assert original["Runtime"] == "2.0 Min"
    assert original["Peak GPU Memory"] == "- (CPU)"
    # One seed: no spread to show, so no "± 0.000".
    assert rows[0]["kNN Top-1 (best)"] == "0.750"
    assert rows[0]["kNN Top-1 (final)"] == "0.700"


def test_tables_written_and_parse(tmp_path: Path) -> None:
    rs = [
        sweep_record("byol", 32, 0, 0.7),
        sweep_record("byol_er", 128, 0, 0.9, ema=0.9),
    ]
    table = write_tables(tmp_path, rs)
    assert (tmp_path / "results.md").read_text() == table
    header = table.splitlines()[0]
    for column in (
        "Model",
        "Batch Size",
        "EMA",
        "kNN Top-1 (best)",
        "kNN Top-1 (final)",
        "κ",
        "Estimator",
        "Entropy Weight",
        "Collapse Score (final)",
    ):
        assert column in header
    assert len(table.splitlines()) == 2 + len(rs)
    parsed = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert [float(p["knn_top1_best_mean"]) for p in parsed] == [0.9, 0.7]
    assert [float(p["knn_top1_final_mean"]) for p in parsed] == [0.85, 0.65]
    assert parsed[0]["ema"] == "0.9"
    assert [p["kappa"] for p in parsed] == ["10", "10"]
    assert [p["entropy_weight"] for p in parsed] == ["1", ""]
    # One seed per row: the standard deviations are empty, not 0.
    assert [p["knn_top1_best_std"] for p in parsed] == ["", ""]
    assert [p["knn_top1_final_std"] for p in parsed] == ["", ""]
    assert "±" not in table


def test_markdown_table_of_nothing_is_header_only() -> None:
    assert len(markdown_table([]).splitlines()) == 2


def test_plots_are_written(tmp_path: Path) -> None:
    rs = [
        sweep_record("byol", 32, 0, 0.7),
        sweep_record("byol_er", 32, 0, 0.8),
        sweep_record("byol", 128, 0, 0.75),
        sweep_record("byol_er", 128, 0, 0.85),
    ]
    plot_curves(rs, tmp_path / "curves.png")
    assert plot_sweep(rs, "batch_size", tmp_path / "bs.png") == tmp_path / "bs.png"
    assert plot_sweep(rs, "ema", tmp_path / "ema.png") is None  # one EMA value only
    for name in ("curves.png", "bs.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "ema.png").exists()
    with pytest.raises(ValueError, match="axis"):
        plot_sweep(rs, "epochs", tmp_path / "x.png")


def test_sweep_series_never_averages_over_the_other_axis() -> None:
    rs = [
        sweep_record("byol", 32, 0, 0.50),
        sweep_record("byol", 32, 1, 0.60),
        sweep_record("byol", 128, 0, 0.40),
        sweep_record("byol", 128, 0, 0.90, ema=0.9),  # the EMA sweep, at batch 128 only
        sweep_record("byol_er", 32, 0, 0.70),
        sweep_record("byol_er", 128, 0, 0.80),
    ]
    rows = aggregate(rs)
    by_batch = sweep_series(rows, "BYOL", "batch_size")
    assert set(by_batch) == {"original ema=0.9", "original ema=0.99", "ER ema=0.99"}
    xs, means, stds = by_batch["original ema=0.99"]
    assert xs == [32, 128]
    assert means == pytest.approx([0.55, 0.40])  # seeds averaged, not EMA values
    assert stds[0] == pytest.approx(0.0707107, abs=1e-6) and stds[1] == 0.0
    assert by_batch["original ema=0.9"] == ([128], [0.90], [0.0])
    by_ema = sweep_series(rows, "BYOL", "ema")
    assert by_ema["original bs=128"][:2] == ([0.9, 0.99], [0.90, 0.40])
    assert by_ema["ER bs=32"][:2] == ([0.99], [0.70])
    # One value of the other axis: plain labels.
    only = sweep_series(aggregate(rs[:3] + rs[4:]), "BYOL", "batch_size")
    assert set(only) == {"original", "ER"}
    final = sweep_series(rows, "BYOL", "batch_size", value="final")
    assert final["original ema=0.99"][1] == pytest.approx([0.50, 0.35])


def test_er_variant_column_reads_the_run_record() -> None:
    er = sweep_record("dino_er", 32, 0, 0.75)
    er.model, er.settings = "DINO", {"er_variant": "paper: centering off"}
    old = sweep_record("swav_er", 32, 0, 0.70)  # written before the column existed
    old.model, old.settings = "SwAV", {}
    original = sweep_record("dino", 32, 0, 0.72)
    original.model, original.settings = "DINO", {"er_variant": "-"}
    rows = {
        (r["Model"], r["Objective"]): r["ER Variant"]
        for r in aggregate([er, old, original])
    }
    assert rows[("DINO", "ER")] == "paper: centering off"
    assert rows[("DINO", "original")] == "-"
    assert rows[("SwAV", "ER")] == "not recorded"
    assert "| ER Variant |" in markdown_table(aggregate([er]))
    (line,) = csv.DictReader(io.StringIO(csv_table(aggregate([er]))))
    assert line["er_variant"] == "paper: centering off"
