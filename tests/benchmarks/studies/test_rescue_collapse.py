"""Head collapse, read from crafted corpus arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.studies.rescue import collapse
from benchmarks.studies.rescue.collapse import Thresholds, read_head, terminal_onset

K = 16
DINO_LOSS = {"teacher_temp": 0.04, "student_temp": 0.1, "centering": False}


def test_embedding_spread_is_zero_for_one_output_and_about_one_spread() -> None:
    rng = np.random.default_rng(0)
    one = np.tile(rng.normal(size=(1, 1, 32)), (1, 256, 1))
    spread = rng.normal(size=(1, 4096, 32))
    assert collapse.embedding_spread(one)[0] == pytest.approx(0.0, abs=1e-6)
    # Uniform on the sphere: every coordinate has variance 1/d, so the value is 1.
    assert collapse.embedding_spread(spread)[0] == pytest.approx(1.0, abs=0.02)


def test_embedding_spread_is_scale_invariant_per_row() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 64, 8))
    scaled = z * rng.uniform(0.5, 3.0, size=(2, 64, 1))
    np.testing.assert_allclose(
        collapse.embedding_spread(z), collapse.embedding_spread(scaled), rtol=1e-5
    )


@pytest.mark.parametrize(
    ("met", "onset"),
    [
        ([False, True, True, True], 50),
        ([False, True, False, True], 150),
        ([False, True, True, False], None),
        ([False, False, False, False], None),
    ],
)
def test_terminal_onset(met: list[bool], onset: int | None) -> None:
    assert terminal_onset([0, 50, 100, 150], met) == onset


def test_prototype_stats_closed_forms() -> None:
    import torch

    uniform = torch.full((4, K), 1.0 / K)
    kl, marginal, per_image = collapse.prototype_stats(uniform, torch.log(uniform))
    assert kl == pytest.approx(0.0, abs=1e-7)
    assert marginal == pytest.approx(math.log(K))
    assert per_image == pytest.approx(math.log(K))
    one_hot = torch.eye(K)[:4]  # four inputs on four prototypes
    student = torch.log_softmax(torch.zeros(4, K), dim=-1)
    kl, marginal, per_image = collapse.prototype_stats(one_hot, student)
    assert kl == pytest.approx(math.log(K), rel=1e-6)  # KL(one-hot || uniform)
    assert marginal == pytest.approx(math.log(4), rel=1e-6)
    assert per_image == pytest.approx(0.0, abs=1e-6)


def dino_arrays(teacher: np.ndarray, student: np.ndarray) -> dict[str, np.ndarray]:
    steps = np.arange(len(teacher)) * 50
    return {"step": steps, "teacher_logits": teacher, "student_logits": student}


def test_dino_one_prototype_collapse_and_its_onset() -> None:
    rng = np.random.default_rng(0)
    n = 32
    healthy = rng.uniform(-1, 1, size=(n, K))
    collapsed = np.full((n, K), -1.0)
    collapsed[:, 3] = 1.0  # every input on prototype 3, student and teacher
    teacher = np.stack([healthy, healthy, collapsed, collapsed])
    student = np.stack([healthy, healthy, collapsed, collapsed])
    reading = read_head(dino_arrays(teacher, student), "dino", DINO_LOSS)
    assert reading.family == "prototype"
    assert reading.met == [False, False, True, True]
    assert reading.collapsed and reading.onset == 100
    assert reading.mode == "one prototype"
    assert reading.values["marginal"][-1] < 1e-6
    assert reading.values["kl"][-1] < 1e-6


def test_dino_uniform_collapse_and_a_sharp_healthy_head() -> None:
    n = 32
    flat = np.zeros((2, n, K))
    reading = read_head(dino_arrays(flat, flat), "dino", DINO_LOSS)
    assert reading.collapsed and reading.mode == "uniform"
    # A sharp teacher whose prototype depends on the input: per-image entropy 0,
    # but the batch-mean spread over prototypes: not collapsed, whatever the KL.
    sharp = np.full((n, K), -1.0)
    sharp[np.arange(n), np.arange(n) % K] = 1.0
    arrays = dino_arrays(np.stack([sharp, sharp]), np.stack([sharp, sharp]))
    reading = read_head(arrays, "dino", DINO_LOSS)
    assert not reading.collapsed
    assert reading.values["per_image"][-1] < 0.01
    assert reading.values["marginal"][-1] == pytest.approx(math.log(K), rel=1e-3)


def test_dino_center_is_subtracted_only_with_centering() -> None:
    n = 8
    logits = np.zeros((2, n, K))
    center = np.zeros((2, K), dtype=np.float32)
    center[:, 0] = -1.0  # subtracting it favors prototype 0 for every input
    arrays = dict(dino_arrays(logits, logits), center=center)
    off = read_head(arrays, "dino", DINO_LOSS)
    on = read_head(arrays, "dino", dict(DINO_LOSS, centering=True))
    assert off.values["per_image"][-1] == pytest.approx(math.log(K), rel=1e-6)
    assert on.values["marginal"][-1] < 1e-6  # one prototype for the teacher
    assert on.values["kl"][-1] > 1.0  # but the student stays uniform: no collapse
    assert not on.collapsed


def test_swav_codes_with_and_without_sinkhorn() -> None:
    n = 64
    scores = np.full((2, n, K), -1.0, dtype=np.float32)
    scores[:, :, 5] = 1.0  # every input closest to prototype 5
    arrays = {"step": np.array([0, 50]), "prototype_scores": scores}
    plain = read_head(
        arrays, "swav", {"sinkhorn": False, "epsilon": 0.05, "temperature": 0.1}
    )
    assert plain.collapsed and plain.mode == "one prototype"
    # Sinkhorn spreads the codes over the prototypes within the batch.
    spread = read_head(
        arrays, "swav", {"sinkhorn": True, "epsilon": 0.05, "temperature": 0.1}
    )
    assert spread.values["marginal"][-1] > math.log(K) - 0.1
    assert not spread.collapsed


def test_embedding_head_reading_skips_step_zero() -> None:
    rng = np.random.default_rng(2)
    spread = rng.normal(size=(64, 8))
    one = np.tile(spread[:1], (64, 1))
    z = np.stack([one, spread, one, one])  # the untrained head "collapsed" at step 0
    arrays = {"step": np.array([0, 50, 100, 150]), "projection": z}
    reading = read_head(arrays, "byol", {})
    assert reading.family == "embedding" and reading.head == "projection"
    assert reading.met == [False, False, True, True]
    assert reading.onset == 100
    strict = read_head(arrays, "byol", {}, Thresholds(embedding=0.0))
    assert not strict.collapsed
    with pytest.raises(ValueError, match="no registered head"):
        read_head(arrays, "simclr", {})


def test_cached_reading_is_kept_and_keyed(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 16, 8)).astype(np.float16)
    (tmp_path / "corpus").mkdir()
    np.savez(tmp_path / "corpus" / "r.npz", step=np.array([0, 50, 100]), projection=z)
    first = collapse.cached_reading(tmp_path, "r", "byol", {})
    assert first is not None and not first["collapsed"]
    cache = tmp_path / "head_collapse" / "r.json"
    assert cache.exists()
    assert collapse.cached_reading(tmp_path, "r", "byol", {}) == first
    other = collapse.cached_reading(
        tmp_path, "r", "byol", {}, Thresholds(embedding=5.0)
    )
    assert other is not None and other["collapsed"]
    assert collapse.cached_reading(tmp_path, "missing", "byol", {}) is None
