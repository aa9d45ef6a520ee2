"""The stability study: its runs, its pre-registered criteria, its report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from benchmarks.common.records import RunResult
from benchmarks.studies import stability, stability_report, stats
from benchmarks.studies.stability import study_config, study_specs
from benchmarks.studies.stability_report import (
    Cell,
    Comparison,
    entropy_deviation,
    h1,
    h4,
    robustness,
    verdicts,
)
from tests.benchmarks.records import make_record as _record
from tests.benchmarks.scripts import load_script


def _pair(
    base: str, batch: int, ema: Optional[float], original: List[float], er: List[float]
) -> List[RunResult]:
    return [_record(base, batch, ema, s, v) for s, v in enumerate(original)] + [
        _record(f"{base}_er", batch, ema, s, v) for s, v in enumerate(er)
    ]


def test_the_study_has_the_preregistered_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stability.os, "cpu_count", lambda: 2)  # one run per core
    specs = study_specs(study_config())
    assert len(specs) == 90
    assert len(set(specs)) == 90
    byol = [s for s in specs if s.method == "byol"]
    assert sorted({(s.batch_size, s.ema) for s in byol}, key=str) == sorted(
        {(128, 0.99), (128, 0.9), (128, 0.5), (128, 0.0), (32, 0.99), (16, 0.99)},
        key=str,
    )
    simclr = [s for s in specs if s.method == "simclr_er"]
    assert {(s.batch_size, s.ema) for s in simclr} == {
        (128, None),
        (32, None),
        (16, None),
    }
    assert {s.seed for s in specs} == {0, 1, 2}
    only = study_specs(study_config(), methods=["dino"])
    assert {s.method for s in only} == {"dino"} and len(only) == 18
    config = study_config()
    # protocol v2 (benchmarks/stability_preregistration_v2.md): v1 had 2,048 images
    assert (config.image_size, config.train_subset, config.test_subset) == (
        16,
        1024,
        1000,
    )
    assert (config.epochs, config.seeds, config.backbone) == (30, [0, 1, 2], "small")
    assert (config.accelerator, config.jobs) == ("cpu", 2)


def test_comparison_interval_is_a_t_interval_with_n_minus_1_df() -> None:
    c = Comparison({0: 0.01, 1: 0.03, 2: 0.02})
    assert c.mean == pytest.approx(0.02)
    assert c.se == pytest.approx(0.01 / math.sqrt(3))
    half = (
        4.302653 * 0.01 / math.sqrt(3)
    )  # t_{0.975, 2}, not the old 2 (an 82 % interval)
    assert (c.low, c.high) == pytest.approx((0.02 - half, 0.02 + half), rel=1e-6)
    c.confidence = 1 - 0.05 / 15
    assert c.high - c.mean == pytest.approx(stats.t_quantile(1 - 0.025 / 15, 2) * c.se)


@pytest.mark.parametrize(
    ("er", "verdict"),
    [
        ([0.70, 0.71, 0.69], "supported"),  # d = 0 exactly, tight
        ([0.60, 0.61, 0.59], "not supported"),  # d = -0.10, tight
        ([0.75, 0.62, 0.68], "inconclusive"),  # d = -0.017, wide
    ],
)
def test_h1_non_inferiority(er: List[float], verdict: str) -> None:
    results = _pair("byol", 128, 0.99, [0.70, 0.71, 0.69], er)
    got, diff = h1(results, "byol")
    assert got == verdict
    assert diff is not None and diff.n == 3


def test_h1_missing_and_single_seed() -> None:
    assert h1([], "dino")[0] == "missing"
    results = _pair("simclr", 128, None, [0.7], [0.7])
    assert h1(results, "simclr")[0].startswith("inconclusive (fewer than 2 seeds)")


def _robust(
    original: Dict[str, List[float]], er: Dict[str, List[float]]
) -> List[RunResult]:
    return _pair("dino", 128, 0.99, original["default"], er["default"]) + _pair(
        "dino", 128, 0.0, original["small"], er["small"]
    )


def test_robustness_supported_when_er_drops_less() -> None:
    results = _robust(
        {"default": [0.70, 0.71, 0.72], "small": [0.50, 0.52, 0.51]},  # drop ~0.20
        {"default": [0.70, 0.71, 0.72], "small": [0.68, 0.70, 0.70]},  # drop ~0.017
    )
    verdict, d, drop = robustness(results, "dino", (128, 0.99), (128, 0.0))
    assert verdict == "supported"
    assert d is not None and drop is not None
    assert d.mean == pytest.approx(0.2 - 0.01667, abs=1e-3)
    assert drop.mean == pytest.approx(0.2, abs=1e-3)


def test_robustness_not_supported_when_er_drops_more() -> None:
    results = _robust(
        {"default": [0.70, 0.71, 0.72], "small": [0.60, 0.61, 0.62]},  # drop 0.10
        {"default": [0.70, 0.71, 0.72], "small": [0.40, 0.42, 0.41]},  # drop ~0.30
    )
    assert robustness(results, "dino", (128, 0.99), (128, 0.0))[0] == (
        "not supported (ER is hurt more)"
    )


def test_robustness_inconclusive_when_the_original_is_not_hurt() -> None:
    results = _robust(
        {"default": [0.70, 0.71, 0.72], "small": [0.70, 0.72, 0.71]},  # no drop
        {"default": [0.70, 0.71, 0.72], "small": [0.60, 0.60, 0.60]},
    )
    # The rule as pre-registered: "the original is not hurt" comes first, even
    # when ER is hurt (the first implementation let "ER is hurt more" override it).
    verdict = robustness(results, "dino", (128, 0.99), (128, 0.0))[0]
    assert verdict == "inconclusive (the original is not hurt)"
    results = _robust(
        {"default": [0.70, 0.71, 0.72], "small": [0.70, 0.72, 0.71]},
        {"default": [0.70, 0.71, 0.72], "small": [0.72, 0.73, 0.74]},
    )
    verdict = robustness(results, "dino", (128, 0.99), (128, 0.0))[0]
    assert verdict == "inconclusive (the original is not hurt)"


def test_h4_stability_of_the_entropy() -> None:
    stable = [(2.0, 1.0, 1.05, 0.95, 1.0)] * 3  # epoch 1 is excluded
    unstable = [(1.0, 1.0, 0.5, 0.2, 0.1)] * 2 + [(1.0, 1.0, 1.0, 1.0, 1.0)]
    for entropies, verdict in ((stable, "supported"), (unstable, "not supported")):
        results = [
            _record("byol", 128, 0.99, seed, 0.7, entropy, epochs=len(entropy))
            for seed, entropy in enumerate(entropies)
        ]
        got, deviations = h4(results, "byol")
        assert got == verdict
        assert len(deviations) == 3
    assert entropy_deviation([3.0, 1.0, 1.1, 0.9]) == pytest.approx(0.1)


def test_verdicts_read_every_interval_at_its_holm_level_over_15() -> None:
    # H2 DINO EMA 0: a large, consistent collapse of the original, ER robust; every
    # other comparison is absent (p = 1, still in the family of 15).
    results = _robust(
        {"default": [0.70, 0.71, 0.72], "small": [0.40, 0.41, 0.42]},  # drop 0.30
        {"default": [0.70, 0.71, 0.72], "small": [0.70, 0.71, 0.715]},  # drop ~0
    )
    rows = verdicts(results)
    (dino0,) = [r for r in rows if r[1] == "DINO, EMA 0.99 → 0"]
    assert dino0[2] == "supported"
    # Second in the family (H1 DINO, decided too, comes first): 1 - 0.05 / 14.
    assert "Holm level 0.9964" in dino0[3]
    d = Comparison({0: 0.30, 1: 0.30, 2: 0.295}, 1 - 0.05 / 14)
    assert str(d) in dino0[3]
    # The same data decided at 95 % but not at the first Holm step:
    wide = _robust(
        {"default": [0.70, 0.71, 0.72], "small": [0.60, 0.58, 0.64]},
        {"default": [0.70, 0.71, 0.72], "small": [0.69, 0.70, 0.72]},
    )
    verdict95 = robustness(wide, "dino", (128, 0.99), (128, 0.0))[0]
    (holm,) = [r for r in verdicts(wide) if r[1] == "DINO, EMA 0.99 → 0"]
    assert (verdict95, holm[2]) == (
        "supported",
        "inconclusive (the original is not hurt)",  # its drop's interval reaches 0
    )


def test_verdicts_cover_every_preregistered_case() -> None:
    rows = verdicts([])
    assert [r[0] for r in rows].count("H1") == 3
    assert [r[0] for r in rows].count("H2") == 6  # 2 methods x 3 smaller EMAs
    assert [r[0] for r in rows].count("H3") == 6  # 3 methods x 2 smaller batches
    assert [r[0] for r in rows].count("H4") == 2
    assert all(r[2] == "missing" for r in rows)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed uint8 IDX file (the MNIST format) holding array."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_fashion_mnist(folder: Path, train: int = 128, test: int = 300) -> Path:
    """Fashion-MNIST's four IDX files with generated 28x28 images in 10 classes."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, n in (("train", train), ("t10k", test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 64, size=(n, 28, 28))
        for i, label in enumerate(labels):  # a bright band per class
            images[i, 2 * label : 2 * label + 8, :] += 160
        _write_idx(folder / f"{split}-images-idx3-ubyte", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


def test_preset_end_to_end_on_a_tiny_budget(tmp_path: Path) -> None:
    """--preset stability with one seed, one epoch and a subset: every output.

    On generated IDX files, so that it runs everywhere (the real Fashion-MNIST is
    what the study reads; here the pipeline is the point).
    """
    data_dir = _fake_fashion_mnist(tmp_path / "fashion-mnist")
    cli = _cli()
    code = cli.main(
        [
            *("--preset", "stability", "--epochs", "1", "--seeds", "0"),
            *("--train-subset", "128", "--test-subset", "100", "--knn-k", "10"),
            *("--data-dir", str(data_dir), "--num-workers", "0"),
            *("--log-dir", str(tmp_path / "logs"), "--no-progress-bar"),
        ]
    )
    tmp_path = tmp_path / "logs"
    assert code == 0
    assert len(list((tmp_path / "runs").glob("*.json"))) == 30
    report = (tmp_path / "stability_report.md").read_text()
    for section in ("## Verdicts", "## H1 and H2", "## H1 and H3", "## H4", "## Have"):
        assert section in report
    rows = [
        line
        for line in report.splitlines()
        if line.startswith("| H") and "| Case |" not in line
    ]
    assert len(rows) == 17  # 3 + 6 + 6 + 2 pre-registered cases
    assert all("missing" not in line for line in rows)
    for name in (
        "stability_knn_vs_ema.png",
        "stability_knn_vs_batch.png",
        "stability_curves.png",
    ):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert (tmp_path / "results.md").is_file()


def test_flattening_table() -> None:
    """kNN after epochs E-10, E-5, E at the default setting, and the last 5 epochs' gain."""
    runs = []
    for seed, offset in ((0, 0.0), (1, 0.02)):
        r = _record("byol", 128, 0.99, seed, 0.5)
        r.knn_top1_per_epoch = [0.01 * e + offset for e in range(1, 13)]
        runs.append(r)
    other = _record("byol", 128, 0.0, 0, 0.9)  # not the default setting
    other.knn_top1_per_epoch = [0.9] * 12
    table = stability_report.flattening_table([*runs, other])
    rows = [line for line in table.splitlines() if line.startswith("| BYOL")]
    assert rows == [
        "| BYOL | original | 2: 0.030 → 7: 0.080 → 12: 0.130 | +0.050 | 2 |"
    ]


def test_report_leaves_out_records_of_other_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pilot at other epochs in the log directory must not count as a seed."""
    monkeypatch.setattr(stability, "run_specs", lambda specs, config: None)
    config = study_config(epochs=3, log_dir=tmp_path)
    study = _record("byol", 128, 0.99, 0, 0.6)
    pilot = _record("byol", 128, 0.99, 0, 0.1, epochs=2)
    for r in (study, pilot):
        r.save(tmp_path / "runs" / f"{r.run_id}.json")
    results = stability.run_study(config, ["byol"])
    assert [(r.epochs, r.knn_top1_final) for r in results] == [(3, 0.6)]


def test_preset_rejects_fixed_axes(capsys: pytest.CaptureFixture[str]) -> None:
    cli = _cli()
    with pytest.raises(SystemExit) as info:
        cli.main(["--preset", "stability", "--batch-sizes", "64"])
    assert info.value.code == 2
    assert "--batch-sizes is fixed by --preset stability" in capsys.readouterr().err


def test_preset_trains_two_runs_at_once_on_one_cpu_device_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stability.os, "cpu_count", lambda: 2)  # one run per core
    cli = stability
    log = ["--log-dir", str(tmp_path)]
    assert cli.parse_config([*log]).jobs == 2
    assert cli.parse_config(["--jobs", "3", *log]).jobs == 3
    ddp = cli.parse_config(["--devices", "2", *log])
    assert (ddp.devices, ddp.jobs) == (2, 1)


def _cli() -> Any:
    return load_script("cifar10")


def test_module_exports() -> None:
    assert set(stability.__all__) >= {"run_study", "study_specs", "verdicts"}


def test_a_cell_of_one_seed_shows_no_spread() -> None:
    assert str(Cell({0: 0.75})) == "0.750"
    # statistics.stdev of 0.7 and 0.8: 0.0707...
    assert str(Cell({0: 0.7, 1: 0.8})) == "0.750 ± 0.071"
