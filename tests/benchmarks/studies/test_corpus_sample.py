"""The committed sample of the mechanism study's collapse corpus, read back.

The sample (``tests/benchmarks/data/corpus_sample``) was cut from the real study
with ``python benchmarks/studies/mechanism.py --log-dir DIR --corpus-sample OUT``
(archived since; benchmarks/studies/ARCHIVE.md gives the commit to run it at).
These tests hold it to the registered format and to the registered outcome
definitions, recomputed here from the arrays rather than trusted from the index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from benchmarks.studies.mechanism import corpus

SAMPLE = Path(__file__).parents[1] / "data" / "corpus_sample"
COLLAPSE_MARGIN = 0.05  # the pre-registration's c
LEARN_MARGIN = 0.02  # "learned": at least 0.02 above the untrained network


@pytest.fixture(scope="module")
def index() -> Dict[str, Any]:
    return corpus.read_index(SAMPLE)


def _runs(index: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(index["runs"])


def test_sample_is_small_and_versioned(index: Dict[str, Any]) -> None:
    size = sum(p.stat().st_size for p in SAMPLE.iterdir())
    assert size <= 5 * 2**20
    assert index["version"] == 1
    assert index["held_out"]["size"] == 8
    assert index["knn"]["k"] == 20


def test_every_arm_has_its_w0_and_w1_run_of_one_seed(index: Dict[str, Any]) -> None:
    by_arm: Dict[str, List[Dict[str, Any]]] = {}
    for run in _runs(index):
        by_arm.setdefault(run["arm"], []).append(run)
    assert set(by_arm) == {
        "byol-nopred",
        "simsiam-nosg",
        "dino-nocenter",
        "swav-nosinkhorn",
        "simclr-er",
    }
    for runs in by_arm.values():
        assert sorted(r["entropy_weight"] for r in runs) == [0.0, 1.0]
        assert len({r["seed"] for r in runs}) == 1


def test_arrays_match_the_index(index: Dict[str, Any]) -> None:
    first = index["held_out"]["first"]
    for run in _runs(index):
        arrays = corpus.load_run(SAMPLE / run["file"])
        steps = arrays["step"]
        assert steps[0] == 0 and steps[-1] == run["steps"]
        assert np.all(np.diff(steps) > 0)
        t = len(steps)
        np.testing.assert_array_equal(
            arrays["image_index"], np.arange(first, first + 8)
        )
        assert arrays["label"].min() >= 0 and arrays["label"].max() <= 9
        for head, dim in run["heads"].items():
            # Per-image outputs are (T, 8, dim); DINO's center is one vector per step.
            expected = (t, dim) if head == "center" else (t, 8, dim)
            assert arrays[head].shape == expected, (run["run_id"], head)
            assert np.isfinite(arrays[head].astype(np.float32)).all()
        knn = arrays["knn_top1"]
        assert knn.shape == (t,)
        # The step-0 evaluation is the seed's untrained network (registered check).
        assert knn[0] == pytest.approx(run["untrained_knn"], abs=1e-4)
        assert knn[-1] == pytest.approx(run["final_knn"], abs=1e-4)


def test_labels_follow_the_registered_definition(index: Dict[str, Any]) -> None:
    for run in _runs(index):
        knn = corpus.load_run(SAMPLE / run["file"])["knn_top1"].astype(float)
        steps = corpus.load_run(SAMPLE / run["file"])["step"]
        base = float(knn[0])
        final = float(knn[-1])
        if final < base - COLLAPSE_MARGIN:
            expected = "collapsed"
        elif final >= base + LEARN_MARGIN:
            expected = "learned"
        else:
            expected = "no gain"
        assert run["label"] == expected, run["run_id"]
        below = [
            int(s)
            for s, v in zip(steps, knn, strict=True)
            if v < base - COLLAPSE_MARGIN
        ]
        assert run["first_below_step"] == (below[0] if below else None)


def test_the_same_seed_starts_from_the_same_backbone(index: Dict[str, Any]) -> None:
    # The backbone is built first after seeding, so every run of a seed holds the
    # same step-0 backbone features of the held-out images, bit for bit.
    by_seed: Dict[int, List[np.ndarray]] = {}
    for run in _runs(index):
        arrays = corpus.load_run(SAMPLE / run["file"])
        by_seed.setdefault(run["seed"], []).append(arrays["backbone"][0])
    for seed, firsts in by_seed.items():
        assert len(firsts) == 10
        for other in firsts[1:]:
            np.testing.assert_array_equal(firsts[0], other, err_msg=str(seed))
