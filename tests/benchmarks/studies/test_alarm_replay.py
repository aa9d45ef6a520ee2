"""The alarm replay end to end on a crafted corpus (synthetic npz written here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from benchmarks.studies.alarm.cli import main
from benchmarks.studies.alarm.replay import replay_corpus
from benchmarks.studies.mechanism.corpus import FORMAT, VERSION

N, D, K = 64, 32, 16
STEPS = np.arange(0, 550, 50)  # 11 snapshots, 0 ... 500
RNG = np.random.default_rng(0)
# Spread (dimension score 0.99); spread along one direction (dimension score 0.226,
# collapse score 0.287, normalized entropy 0.31, but the head's spread 0.18 > 0.1:
# no head collapse); one output for every input (head collapse).
SPREAD = RNG.normal(size=(N, D))
LINE = np.zeros((N, D))
LINE[:, 0], LINE[:, 1] = 1.0, 2.0 * RNG.normal(size=N)
ONE = np.tile(RNG.normal(size=(1, D)), (N, 1))
SCORES = 5.0 * RNG.normal(size=(N, K))  # a prototype per input
ONE_PROTOTYPE = np.tile(np.eye(K)[3] * 10.0, (N, 1))
SWAV_LOSS = {"sinkhorn": False, "epsilon": 0.05, "temperature": 0.1}


def entry(run_id: str, loss: Dict[str, Any], final: float = 0.7) -> Dict[str, Any]:
    arm, seed = run_id.split("_")[0], int(run_id.rsplit("seed", 1)[1])
    method = arm.split("-")[0]
    return {"run_id": run_id, "file": f"{run_id}.npz", "arm": arm, "method": method,
            "seed": seed, "loss": loss, "final_knn": final, "untrained_knn": 0.7,
            "label": "learned"}  # fmt: skip


def write_run(corpus: Path, run_id: str, **heads: List[np.ndarray]) -> None:
    arrays = {k: np.stack(v).astype(np.float16) for k, v in heads.items()}
    arrays["backbone"] = np.stack([SPREAD] * len(STEPS)).astype(np.float16)
    np.savez(corpus / f"{run_id}.npz", step=STEPS, **arrays)  # type: ignore[arg-type]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    c = tmp_path / "corpus"
    c.mkdir()
    byol = {"kappa": 10.0}
    runs = [
        entry("byol-nopred-ema0_w0_b128_s1000_seed200", byol, final=0.6),
        entry("byol_w0_b128_s1000_seed200", byol),
        entry("simsiam_w0_b128_s1000_seed200", {"kappa": 10.0}),
        entry("byol_w0_b128_s1000_seed0", byol),  # not in the plan
        entry("swav-nosinkhorn_w0_b128_s1000_seed200", SWAV_LOSS),
        entry("swav_w0_b128_s1000_seed200", SWAV_LOSS),
        dict(entry("dino-ema0_w0_b128_s1000_seed200", {}), label="diverged"),
    ]
    # Collapsing: spread, along a line from step 100, one output from step 300.
    write_run(c, runs[0]["run_id"], projection=[SPREAD] * 2 + [LINE] * 4 + [ONE] * 5)
    write_run(c, runs[1]["run_id"], projection=[SPREAD] * 11)
    write_run(c, runs[2]["run_id"], projection=[SPREAD] * 2 + [LINE] * 9)
    write_run(c, runs[3]["run_id"], projection=[ONE] * 11)
    # One prototype for every input from step 300; every input its own before.
    write_run(c, runs[4]["run_id"], prototype_scores=[SCORES] * 6 + [ONE_PROTOTYPE] * 5)
    write_run(c, runs[5]["run_id"], prototype_scores=[SCORES] * 11)
    index = {
        "format": FORMAT,
        "version": VERSION,
        "held_out": {},
        "knn": {},
        "runs": runs,
    }
    (c / "index.json").write_text(json.dumps(index))
    return c  # fmt: skip


def test_ground_truth_alarms_and_lead_times(corpus: Path) -> None:
    results, skipped = replay_corpus([corpus])
    assert skipped == ["byol_w0_b128_s1000_seed0"]
    by = {r.run_id.split("_")[0] + ("" if r.seed else "?"): r for r in results}
    collapsing = by["byol-nopred-ema0"]
    assert (collapsing.collapsed, collapsing.first_met, collapsing.onset) == (
        True,
        300,
        300,
    )
    # Flagged at 100, 150, 200 (patience 3): the alarm at 200, 100 steps ahead.
    assert collapsing.alarms["E0"] == {"all": 200, "student": 200, "teacher": None}
    assert (
        collapsing.alarms["E1"]["all"] == 200 and collapsing.alarms["E2"]["all"] == 200
    )
    assert collapsing.knn_below is True
    healthy, line = by["byol"], by["simsiam"]
    assert not healthy.collapsed and healthy.alarms["E0"]["all"] is None
    assert not line.collapsed and line.alarms["E0"]["all"] == 200  # a false alarm
    swav = by["swav-nosinkhorn"]
    assert (swav.collapsed, swav.first_met, swav.mode) == (True, 300, "one prototype")
    assert swav.alarms["P0"]["all"] == 400  # flagged at 300, 350, 400: lead -100
    assert not by["swav"].collapsed and by["swav"].alarms["P0"]["all"] is None
    assert by["dino-ema0"].diverged and by["dino-ema0"].alarms == {}
    assert healthy.scores["effective_rank"] > 20.0  # RankMe of 64 spread rows in 32-d
    assert np.isnan(healthy.scores["lidar"])  # no second views in this corpus  # fmt: skip


def test_the_command_writes_the_report(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--corpus", str(corpus), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert (
        "| E0 | all | 0.95 | 1 | 1 | 0.025 | +100 | +100 | 2 | 1 | 0.987 | 1/1 | 1/2 | fail: sensitivity, false alarms |"
        in report
    )
    assert (
        "| P0 | all | 0.95 | 1 | 1 | 0.025 | -100 | -100 | 1 | 0 | 0.975 | 0/0 | 1/2 | fail: sensitivity, lead time, false alarms |"
        in report
    )
    assert "Diverged (listed, not scored): dino-ema0_w0_b128_s1000_seed200." in report
    assert "Shipped: E0 (dimension_score < 0.25): not validated." in report
    runs = json.loads((out / "results.json").read_text())
    assert len(runs["runs"]) == 6 and runs["skipped"] == ["byol_w0_b128_s1000_seed0"]  # fmt: skip


def test_snapshots_must_be_every_50_steps(corpus: Path) -> None:
    path = corpus / "byol_w0_b128_s1000_seed200.npz"
    arrays = dict(np.load(path))
    arrays["step"] = STEPS * 2
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="every 50 steps"):
        replay_corpus([corpus])
