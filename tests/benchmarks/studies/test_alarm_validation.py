"""benchmarks/studies/alarm_validation.py on a corpus generated here (crafted runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
import torch

from benchmarks.studies import alarm_validation as av
from benchmarks.studies.alarm_stats import MARGIN
from lightly_er import functional
from lightly_er.monitoring import AlarmRule, EntropyMeter

STEPS = [0, 100, 200, 300]
N, D, K = 16, 8, 12


def _healthy(rng: np.random.Generator, width: int) -> np.ndarray:
    return rng.standard_normal((len(STEPS), N, width)).astype(np.float16)


def _collapsing(rng: np.random.Generator, width: int, first: int) -> np.ndarray:
    """Random rows at the snapshots before step ``first``, one repeated row after."""
    x = _healthy(rng, width)
    for t, step in enumerate(STEPS):
        if step >= first:
            x[t] = x[t, :1]
    return x


def _write_run(
    corpus: Path,
    run_id: str,
    method: str,
    label: str,
    arrays: Dict[str, Any],
    **entry: Any,
) -> Dict[str, Any]:
    arrays = dict(
        step=np.array(STEPS, dtype=np.int64),
        knn_top1=np.array([0.7, 0.7, 0.6, 0.6], dtype=np.float32),
        **arrays,
    )
    np.savez(corpus / f"{run_id}.npz", **arrays)
    return dict(
        run_id=run_id,
        file=f"{run_id}.npz",
        method=method,
        label=label,
        first_below_step=entry.pop("first_below_step", None),
        loss=entry.pop("loss", {}),
        **entry,
    )


def _corpus(tmp_path: Path) -> Path:
    """byol and swav healthy (the fit methods), dino collapsing from step 100."""
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    dino_loss = {"teacher_temp": 0.04, "student_temp": 0.1, "centering": False}
    runs = [
        _write_run(
            corpus,
            "byol_seed0",
            "byol",
            "learned",
            {"backbone": _healthy(rng, D), "projection": _healthy(rng, D)},
        ),
        _write_run(
            corpus,
            "swav_seed0",
            "swav",
            "learned",
            {"backbone": _healthy(rng, D), "prototype_scores": _healthy(rng, K)},
            loss={"temperature": 0.1},
        ),
        _write_run(
            corpus,
            "dino_seed0",
            "dino",
            "collapsed",
            {
                "backbone": _collapsing(rng, D, 100),
                "student_logits": _healthy(rng, K),
                "teacher_logits": _collapsing(rng, K, 100),
            },
            first_below_step=100,
            loss=dino_loss,
        ),
        _write_run(
            corpus,
            "dino_seed1",
            "dino",
            "learned",
            {
                "backbone": _healthy(rng, D),
                "student_logits": _healthy(rng, K),
                "teacher_logits": _healthy(rng, K),
            },
            loss=dino_loss,
        ),
    ]
    # Listed before its file exists (a corpus being written): left out.
    runs.append(dict(runs[0], run_id="byol_seed9", file="byol_seed9.npz"))
    index = {"format": av.FORMAT, "version": av.VERSION, "runs": runs}
    (corpus / "index.json").write_text(json.dumps(index))
    return corpus


@pytest.mark.parametrize("family", ["sphere", "discrete"])
def test_candidate_metrics_are_the_meters(family: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 24, generator=g)
    x[:, :3] *= 5.0  # an uneven spread
    if family == "sphere":
        meter = EntropyMeter("sphere")
        temperature = 0.1
    else:
        temperature = 0.04
        meter = EntropyMeter("discrete", temperature=temperature)
    expected = meter.compute(x)
    assert expected is not None
    got = av.candidate_metrics(family, x, temperature)
    assert set(got) == set(av.CANDIDATES[family])
    for metric, value in got.items():
        assert value == pytest.approx(expected[metric], rel=1e-6, abs=1e-7)


def test_reading_skips_unfinished_runs_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path)
    cache = tmp_path / "cache"
    runs = av.read_corpus(corpus, None, cache=cache)
    assert [r.run_id for r in runs] == [
        "byol_seed0",
        "swav_seed0",
        "dino_seed0",
        "dino_seed1",
    ]
    dino = runs[2]
    with np.load(corpus / "dino_seed0.npz") as npz:
        rows = torch.from_numpy(npz["backbone"][2].astype(np.float32))
    z = torch.nn.functional.normalize(rows, dim=1)
    assert dino.heads["sphere"]["dimension_score"]["backbone"][2] == pytest.approx(
        float(functional.dimension_score(z, av.RESOLUTION)), abs=1e-6
    )
    # The collapsed snapshots read (about) 0 on both families.
    assert max(dino.values["sphere"]["dimension_score"][1:]) < 1e-3
    assert max(dino.values["discrete"]["normalized_mutual_information"][1:]) < 1e-6
    assert "projection" not in dino.heads["sphere"]["dimension_score"]

    def fail(*args: Any) -> None:
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(av, "measure", fail)
    again = av.read_corpus(corpus, None, cache=cache)
    assert [r.heads for r in again] == [r.heads for r in runs]
    with pytest.raises(AssertionError, match="cache"):
        av.read_corpus(corpus, 8, cache=cache)  # another image count: measured


def test_fit_is_the_margin_below_the_fit_methods_healthy_values(
    tmp_path: Path,
) -> None:
    runs = av.read_corpus(_corpus(tmp_path), None)
    found = av.fit(runs, "sphere", ["byol"])
    assert found is not None
    byol = runs[0]
    lowest = min(
        min(values) for values in byol.heads["sphere"]["dimension_score"].values()
    )
    assert found.metric == "dimension_score"
    assert found.lowest_healthy == lowest
    assert found.threshold == pytest.approx(MARGIN * lowest)
    # Fitted on byol only: dino's values do not move it.
    alone = av.fit(runs[:1], "sphere", ["byol"])
    assert alone is not None and alone.threshold == found.threshold
    assert av.fit(runs, "sphere", ["simclr"]) is None


def _alarm(
    runs: List[av.Run], run_id: str, rule: AlarmRule, every: int, patience: int
) -> Optional[int]:
    run = next(r for r in runs if r.run_id == run_id)
    return av.alarm_step(run, rule, every, patience)


def test_the_replayed_alarm_and_its_lead_time(tmp_path: Path) -> None:
    runs = av.read_corpus(_corpus(tmp_path), None)
    rule = AlarmRule("dimension_score", 0.1, "sphere")
    # Collapsed from the snapshot at 100: checks at 100, 150 (reading 100), 200.
    assert _alarm(runs, "dino_seed0", rule, 50, 3) == 200
    assert _alarm(runs, "dino_seed0", rule, 50, 1) == 100
    assert _alarm(runs, "dino_seed0", rule, 100, 2) == 200
    assert _alarm(runs, "dino_seed1", rule, 50, 1) is None
    outcome = av.evaluate(
        [r for r in runs if r.method == "dino"], rule, 50, 3, True, "dino"
    )
    assert (outcome.caught, outcome.collapsed) == (1, 1)
    assert (outcome.false_alarms, outcome.learned) == (0, 1)
    assert outcome.lead_times == [100 - 200]
    assert outcome.snapshot_auroc == 1.0 and outcome.run_auroc == 1.0
    # Teachers only: dino's collapsing teacher is caught, its healthy student is not read.
    teachers = AlarmRule(
        "normalized_mutual_information", 0.01, "discrete", ("teacher",)
    )
    assert _alarm(runs, "dino_seed0", teachers, 50, 3) == 200
    students = AlarmRule(
        "normalized_mutual_information", 0.01, "discrete", ("student",)
    )
    assert _alarm(runs, "dino_seed0", students, 50, 3) is None


def test_main_fits_on_some_methods_and_reports_the_held_out(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    report = tmp_path / "report.md"
    out = tmp_path / "out"
    assert (
        av.main(
            [str(corpus), "--images", "16", "--out", str(out), "--report", str(report)]
        )
        == 0
    )
    text = report.read_text()
    assert "| dino | 1 | 1 | 0 | 2 |" in text
    assert "| all | 1 | 3 | 0 | 4 |" in text
    record = json.loads((out / "alarm_validation.json").read_text())
    fits = {f["family"]: f for f in record["fits"]}
    assert fits["sphere"]["fit_methods"] == ["byol"]
    assert fits["discrete"]["fit_methods"] == ["swav"]
    dino = [o for o in record["fitted"] if o["methods"] == "dino"]
    assert [o["held_out"] for o in dino] == [True, True]  # embeddings, prototypes
    for outcome in dino:
        # The crafted collapse is caught on both families, the healthy dino is not.
        assert outcome["caught"] == 1 and outcome["false_alarms"] == 0
        assert outcome["lead_times"] == [-100]
    assert len(list((out / "cache").rglob("*.json"))) == 4
    # The backbone-only candidate: fitted on byol's backbone, dino's caught.
    assert "## The embedding rule on backbones only" in text
    assert record["backbone_fit"]["fit_methods"] == ["byol"]
    (held,) = [o for o in record["backbones"] if o["methods"] == "dino"]
    assert held["held_out"] and held["caught"] == 1 and held["false_alarms"] == 0
    # Every candidate score on both splits; the declared one repeats the fit above.
    candidates = {
        (o["split"], o["rule"]["metric"], o["methods"]): o for o in record["candidates"]
    }
    declared = candidates["declared", "dimension_score", "dino"]
    assert declared["caught"] == 1 and declared["held_out"]
    assert declared["rule"]["threshold"] == pytest.approx(
        fits["sphere"]["threshold"], rel=1e-3
    )
    for metric in ("normalized_mutual_information", "normalized_entropy"):
        assert candidates["reversed", metric, "swav"]["held_out"]
        assert not candidates["reversed", metric, "dino"]["held_out"]
    assert not candidates["reversed", "collapse_score", "dino"]["held_out"]
    assert candidates["reversed", "collapse_score", "byol"]["held_out"]
    assert "## Every candidate score, fitted on both splits" in text


def test_restrict_reads_only_the_named_heads() -> None:
    run = av.Run({"run_id": "r", "method": "byol", "label": "learned"}, [0, 1], [])
    run.heads = {
        "sphere": {
            "dimension_score": {"backbone": [0.5, 0.4], "projection": [0.1, 0.9]}
        },
        "discrete": {"normalized_mutual_information": {"prototype_scores": [0.2, 0.2]}},
    }
    run.values = {"sphere": {"dimension_score": [0.1, 0.4]}}
    run.monitor = {
        "sphere": {
            "dimension_score": [(0, "backbone", 0.3), (0, "projection_head", 0.1)]
        }
    }
    backbone = av.restrict(run, "sphere", av.BACKBONE_KEYS, av.BACKBONE_MODULES)
    assert backbone.values == {"sphere": {"dimension_score": [0.5, 0.4]}}
    assert backbone.monitor == {"sphere": {"dimension_score": [(0, "backbone", 0.3)]}}
    assert list(backbone.heads) == ["sphere"]
    assert av.restrict(run, "sphere", ("target_backbone",)).values == {}
    assert run.values["sphere"]["dimension_score"] == [0.1, 0.4]  # not changed


def _crafted(run_id: str, method: str, label: str, series: List[float]) -> av.Run:
    run = av.Run({"run_id": run_id, "method": method, "label": label}, [], [])
    run.heads = {"sphere": {"collapse_score": {"a": series, "b": [1.0] * len(series)}}}
    return run


def test_peak_ratio_is_the_lowest_value_over_the_running_peak() -> None:
    # Head a: peak 0.8 at the second snapshot, then 0.4: ratio 0.5; head b: 1.
    run = _crafted("r", "byol", "learned", [0.5, 0.8, 0.4, 0.6])
    assert av.lowest_peak_ratio(run, "sphere", "collapse_score") == pytest.approx(0.5)
    # A rise is never a drop: a growing series reads 1.
    rising = _crafted("s", "byol", "learned", [0.1, 0.2, 0.3])
    assert av.lowest_peak_ratio(rising, "sphere", "collapse_score") == 1.0
    assert av.lowest_peak_ratio(run, "discrete", "collapse_score") is None


def test_peak_ratio_rows_fit_the_fraction_and_count_catches() -> None:
    runs = [
        _crafted("fit", "byol", "learned", [1.0, 0.5]),  # lowest 0.5 -> 0.4
        _crafted("held", "dino", "learned", [1.0, 0.3]),  # 0.3 < 0.4: false alarm
        _crafted("c1", "dino", "collapsed", [1.0, 0.2]),  # caught
        _crafted("c2", "dino", "collapsed", [1.0, 0.45]),  # missed
    ]
    split = {"sphere": (("byol",), ("dino",))}
    rows = [r for r in av.peak_ratio_rows(runs, split) if r[1] == "collapse_score"]
    assert rows == [
        (
            "embeddings",
            "collapse_score",
            "byol",
            "0.50 (1 runs)",
            f"{MARGIN * 0.5:.2f}",
            "0.20, 0.45",
            "1/2",
            "1/1",
        )
    ]


def test_a_head_that_is_not_finite_does_not_hide_the_others(tmp_path: Path) -> None:
    # The backbone (read first) holds an inf at step 200; the projection is finite.
    rng = np.random.default_rng(1)
    backbone, projection = _healthy(rng, D), _healthy(rng, D)
    backbone[2, 0, 0] = np.inf
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    entry = _write_run(
        corpus,
        "r",
        "byol",
        "learned",
        {"backbone": backbone, "projection": projection},
    )
    index = {"format": av.FORMAT, "version": av.VERSION, "runs": [entry]}
    (corpus / "index.json").write_text(json.dumps(index))
    (run,) = av.read_corpus(corpus)
    scores = run.heads["sphere"]["dimension_score"]
    assert np.isnan(scores["backbone"][2]) and not np.isnan(scores["projection"][2])
    expected = av.candidate_metrics(
        "sphere", torch.from_numpy(projection[2].astype(np.float32)), 0.1
    )["dimension_score"]
    assert run.values["sphere"]["dimension_score"][2] == pytest.approx(expected)
    # No NaN among the healthy snapshots, and none in a peak ratio.
    _, healthy = av.snapshot_classes([run], "sphere", "dimension_score")
    assert len(healthy) == len(STEPS) and not np.isnan(healthy).any()
    ratio = av.lowest_peak_ratio(run, "sphere", "dimension_score")
    assert ratio is not None and not np.isnan(ratio)
