"""Tests of lightly_er.monitoring.report: the monitor's CSV and PNG files."""

from __future__ import annotations

import csv
import io
import math
import os
import struct
import sys
from pathlib import Path
from typing import List, Tuple

import matplotlib.image as mpimg
import numpy as np
import pytest

from lightly_er.monitoring import report
from lightly_er.monitoring.report import HistoryRow, history_csv, write_csv, write_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history() -> List[HistoryRow]:
    rows: List[HistoryRow] = []
    for step in (0, 10, 20, 30):
        rows.append((step, "projection_head", "collapse_score", 0.9 - 0.2 * step / 10))
        rows.append((step, "projection_head", "entropy_gap", 4.0 / (1 + step)))
        rows.append((step, "projection_head", "effective_rank", 12.5 - step / 3))
        rows.append((step, "projection_head", "std", 0.1))
        rows.append((step, "prototypes", "collapse_score", 0.8))
        rows.append((step, "prototypes", "normalized_entropy", 1 / 3 + step))
    return rows


def _png_size(path: Path) -> Tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# -- CSV -------------------------------------------------------------------------------
def test_history_csv_round_trips_exactly() -> None:
    history = _history() + [(40, 'odd, "name"', "entropy", -1e-300)]
    text = history_csv(history)
    lines = text.split("\n")
    assert lines[0] == "step,module,metric,value"
    assert text.endswith("\n") and "\r" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    parsed = [
        (int(r["step"]), r["module"], r["metric"], float(r["value"])) for r in rows
    ]
    assert parsed == history  # exact floats: repr round-trips
    assert lines[1] == "0,projection_head,collapse_score,0.9"
    # 1/3 + 0 written with all its digits.
    assert "prototypes,normalized_entropy,0.3333333333333333" in text


def test_history_csv_of_nothing_is_the_header() -> None:
    assert history_csv([]) == "step,module,metric,value\n"


def test_history_csv_keeps_non_finite_values() -> None:
    text = history_csv([(0, "head", "entropy", math.inf), (1, "head", "std", math.nan)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert float(rows[0]["value"]) == math.inf and math.isnan(float(rows[1]["value"]))


def test_write_csv_writes_the_text_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "entropy_monitor.csv"
    write_csv(path, _history()[:3])
    write_csv(path, _history())
    assert path.read_text(encoding="utf-8") == history_csv(_history())
    assert sorted(os.listdir(path.parent)) == ["entropy_monitor.csv"]


def test_interrupted_write_csv_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "entropy_monitor.csv"
    write_csv(path, _history()[:2])
    old = path.read_bytes()

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_csv(path, _history())
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["entropy_monitor.csv"]


# -- PNG -------------------------------------------------------------------------------
def test_write_png_lays_out_one_row_per_module(tmp_path: Path) -> None:
    path = tmp_path / "entropy_monitor.png"
    write_png(
        path, _history() + [(0, "criterion", "bound", -0.5)], thresholds={"x": 0.5}
    )
    # Two modules (rows; "criterion" has nothing plotted); the plotted metrics present
    # (columns): entropy gap, normalized entropy, collapse score, effective rank.
    # 3.6 x 2.8 inches at 100 dpi.
    assert _png_size(path) == (4 * 360, 2 * 280)
    assert os.listdir(tmp_path) == ["entropy_monitor.png"]


@pytest.mark.parametrize(
    "metrics, columns",
    [
        (("collapse_score",), 1),
        (("collapse_score", "entropy_gap", "std"), 2),
        (("normalized_entropy", "effective_rank", "std", "uniformity"), 2),
        (("dimension_score", "normalized_mutual_information", "kl"), 2),
    ],
)
def test_write_png_plots_only_known_metrics(
    tmp_path: Path, metrics: Tuple[str, ...], columns: int
) -> None:
    history = [(s, "head", m, 0.5) for s in range(3) for m in metrics]
    write_png(tmp_path / "plot.png", history)
    assert _png_size(tmp_path / "plot.png") == (columns * 360, 280)


def test_write_png_writes_nothing_without_plottable_rows(tmp_path: Path) -> None:
    write_png(tmp_path / "empty.png", [])
    write_png(tmp_path / "std.png", [(0, "head", "std", 0.1), (1, "head", "std", 0.2)])
    assert os.listdir(tmp_path) == []


def _pixels(path: Path) -> np.ndarray:
    image = np.asarray(mpimg.imread(path))
    assert image.dtype == np.float32 and image.shape[2] in (3, 4)
    return image[..., :3]


def test_write_png_marks_alarms_and_the_threshold(tmp_path: Path) -> None:
    history = [(s, "head", "collapse_score", 0.9 - 0.1 * s) for s in range(6)]
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    write_png(plain, history)
    write_png(
        marked,
        history,
        alarm_steps=[("head", 4), ("other", 2)],
        thresholds={"collapse_score": 0.5, "dimension_score": 0.1},
    )

    def red(image: np.ndarray) -> int:
        mask = (image[..., 0] > 0.9) & (image[..., 1] < 0.1) & (image[..., 2] < 0.1)
        return int(mask.sum())

    def grey_rows(image: np.ndarray) -> np.ndarray:
        mask = np.all(np.abs(image - 128 / 255) < 0.01, axis=2)
        return np.flatnonzero(mask.sum(axis=1) > 100)

    plain_pixels, marked_pixels = _pixels(plain), _pixels(marked)
    # The alarm of "head" is a red dashed vertical line; "other" is not plotted.
    assert red(plain_pixels) == 0
    assert red(marked_pixels) > 50
    columns = np.flatnonzero(
        ((marked_pixels[..., 0] > 0.9) & (marked_pixels[..., 1] < 0.1)).sum(axis=0)
    )
    assert columns.max() - columns.min() <= 3  # one vertical line
    # The threshold of the plotted metric is a gray horizontal line (the other is
    # not drawn).
    assert grey_rows(plain_pixels).size == 0
    assert 1 <= grey_rows(marked_pixels).size <= 2


def test_write_png_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "entropy_monitor.png"
    path.write_bytes(b"old")

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_png(path, _history())
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["entropy_monitor.png"]


def test_report_exports() -> None:
    assert set(report.__all__) == {
        "HistoryRow",
        "history_csv",
        "logger_folders",
        "write_csv",
        "write_png",
        "write_pngs",
        "wrote_message",
    }


def test_write_pngs_reports_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [tmp_path / "a" / "plot.png", tmp_path / "b" / "plot.png"]
    for path in paths:
        path.parent.mkdir()
    written, missing = report.write_pngs(paths, _history())
    assert (written, missing) == (paths, None)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    # Nothing to plot: nothing written, nothing reported.
    empty = [tmp_path / "a" / "empty.png"]
    assert report.write_pngs(empty, [(0, "head", "std", 0.1)]) == ([], None)
    assert not empty[0].exists()
    # Without matplotlib: why, and no path.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    written, missing = report.write_pngs([tmp_path / "c.png"], _history())
    assert written == [] and missing is not None and "pip install matplotlib" in missing
    assert report.wrote_message(paths) == f"EntropyMonitor wrote {paths[0]}, {paths[1]}"


def test_logger_folders_are_distinct_and_local() -> None:
    class Logger:
        def __init__(self, log_dir: object, save_dir: object = None) -> None:
            self.log_dir, self.save_dir = log_dir, save_dir

    class Online:
        save_dir = None

    folders = report.logger_folders(
        [Logger("a/v0"), Logger(None, "b"), Logger("a/v0"), Online()]
    )
    assert folders == [Path("a/v0"), Path("b")]
    assert report.CSV_COLUMNS == ("step", "module", "metric", "value")


def test_write_png_without_matplotlib_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ModuleNotFoundError, match="needs matplotlib.*pip install"):
        write_png(tmp_path / "plot.png", _history())
    assert list(tmp_path.iterdir()) == []
