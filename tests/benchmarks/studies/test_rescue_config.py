"""The rescue study's plan (its runs' code record and resume rule are the engine's:
tests/benchmarks/common)."""

from __future__ import annotations

import pytest

from benchmarks.studies.mechanism.config import ARMS, RunSpec
from benchmarks.studies.rescue import config
from benchmarks.studies.rescue.config import preset, spec_of


def test_registered_plan_counts_seeds_and_order() -> None:
    cfg = preset("rescue")
    runs = config.run_specs(cfg)
    primary = 2 * 6 * 10
    intact = len(cfg.intact) * 6 * len(cfg.intact_seeds)
    secondary = len(cfg.secondary) * 6 * len(cfg.secondary_seeds)
    assert len(runs) == primary + intact + secondary == 120 + 48
    assert secondary == 0 and cfg.intact == ("byol", "dino")
    follow_up = config.run_specs(preset("secondary"))
    assert len(follow_up) == 3 * 6 * 4 + 6 * 4
    assert {r.arm for r in follow_up} == {
        "byol-nopred", "swav-nosinkhorn", "dino-nocenter", "swav"
    }  # fmt: skip
    assert len({r.run_id for r in runs}) == len(runs)
    seeds = {r.seed for r in runs}
    assert not seeds & set(range(5))  # fresh: not the mechanism study's 0-4
    assert not seeds & set(cfg.pilot_seeds)
    assert set(cfg.primary_seeds) == set(range(100, 110))
    # primary first, seed by seed, every treatment of both removals per seed
    assert [r.arm for r in runs[:primary]] == (
        ["dino-ema0"] * 6 + ["byol-nopred-ema0"] * 6
    ) * 10
    assert [r.seed for r in runs[:primary:12]] == list(range(100, 110))
    tasks = config.all_tasks(cfg)
    seen: set[str] = set()
    for task in tasks:  # every run's stream and untrained evaluation come first
        assert set(task.depends) <= seen
        seen.add(task.key)
    streams = [t for t in tasks if t.kind == "stream"]
    assert len(streams) == len({t.key for t in streams})


def test_treatments_are_weight_and_term() -> None:
    engine = preset("rescue").engine
    assert engine.steps == 1000 and engine.evaluations == 20 and engine.knn_every == 100
    assert spec_of("dino-ema0", "none", 100, engine) == RunSpec(
        "dino-ema0", 0.0, 128, 1000, 100
    )
    assert spec_of("dino-ema0", "entropy", 100, engine).weight == 1.0
    koleo = spec_of("byol-nopred-ema0", "koleo", 103, engine)
    assert (koleo.weight, koleo.term) == (0.0, "koleo")
    assert koleo.run_id == "byol-nopred-ema0_w0+koleo_b128_s1000_seed103"
    assert config.treatment_of(0.0, "vicreg") == "vicreg"
    assert config.treatment_of(1.0, None) == "entropy"
    assert config.treatment_of(0.0, None) == "none"
    assert ARMS["byol-nopred-ema0"].ema == 0.0
    with pytest.raises(ValueError, match="treatment"):
        spec_of("dino-ema0", "dropout", 100, engine)


def test_timing_configs_start_with_the_intact_arm() -> None:
    cfg = preset("rescue")
    dino = config.timing_configs(cfg, "dino")
    assert dino[0] == ("dino", "none")
    assert (
        len(dino)
        == len(set(dino))
        == 6 * (1 + sum(ARMS[r].method == "dino" for r in cfg.removals))
    )
    assert ("dino-ema0", "sigreg") in dino


def test_pilot_seeds_must_not_be_study_seeds() -> None:
    cfg = preset("smoke")
    with pytest.raises(ValueError, match="pilot"):
        config.RescueConfig("x", cfg.engine, (900,), (), (), (), ())
