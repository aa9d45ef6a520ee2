"""The one run id and RunSpec: both spellings, as the records on disk name them."""

from __future__ import annotations

import pickle

import pytest

from benchmarks.cifar.config import SweepConfig, expand_runs
from benchmarks.common.runs import RunSpec, run_id
from benchmarks.studies.mechanism import config as mechanism


def test_epoch_budget_spelling() -> None:
    assert run_id("byol_er", batch_size=32, seed=1, ema=0.9, epochs=200) == (
        "byol_er-bs32-ema0.9-ep200-seed1"
    )
    assert (
        run_id("simclr", batch_size=128, seed=0, epochs=5) == "simclr-bs128-ep5-seed0"
    )


def test_step_budget_spelling() -> None:
    assert run_id("dino-nocenter", batch_size=128, seed=3, steps=1000, weight=0.0) == (
        "dino-nocenter_w0_b128_s1000_seed3"
    )
    # the arm names its EMA: the id leaves it out
    assert run_id("simclr", batch_size=128, seed=0, steps=750, ema=0.5) == (
        "simclr_b128_s750_seed0"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one budget"),
        ({"epochs": 1, "steps": 1}, "exactly one budget"),
        ({"epochs": 1, "weight": 1.0}, "no weight"),
    ],
)
def test_bad_budgets_are_refused(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        run_id("byol", batch_size=2, seed=0, **kwargs)


def test_the_sweep_and_the_study_share_the_spec() -> None:
    sweep = expand_runs(SweepConfig(methods=["byol_er"], epochs=3, emas=[0.5]))
    assert sweep == [RunSpec("byol_er", 128, 0.5, 0, epochs=3)]
    assert sweep[0].run_id == "byol_er-bs128-ema0.5-ep3-seed0"
    study = mechanism.RunSpec("byol-nopred", 1.0, 64, 500, 2)
    assert isinstance(study, RunSpec)
    assert (study.method, study.ema, study.arm, study.batch) == (
        "byol",
        mechanism.ARMS["byol-nopred"].ema,
        "byol-nopred",
        64,
    )
    assert study.run_id == "byol-nopred_w1_b64_s500_seed2"
    assert study == mechanism.RunSpec("byol-nopred", 1.0, 64, 500, 2)
    assert study != mechanism.RunSpec("byol-nopred", 0.0, 64, 500, 2)
    assert pickle.loads(pickle.dumps(study)) == study  # to a spawned worker
