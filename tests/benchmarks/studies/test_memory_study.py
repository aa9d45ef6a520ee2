"""The memory study's plan and verdicts, held to its pre-registration.

The verdict code (benchmarks/studies/memory_study.py) must say exactly what
memory_preregistration.md says: paired differences by seed, t-intervals with n - 1
degrees of freedom read at Holm's level within each family of four, better / worse /
inconclusive from the interval, not evaluable for a missing run. Crafted numbers,
and an independent computation with scipy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest
from scipy import stats as scipy_stats

from benchmarks.cifar.config import RunSpec
from benchmarks.studies import memory_study as study
from benchmarks.studies.memory_study import (
    BETTER,
    INCONCLUSIVE,
    NOT_EVALUABLE,
    WORSE,
    Top1,
    family_verdicts,
    verdicts,
)
from tests.benchmarks.records import make_record

PREREGISTRATION = Path(study.__file__).with_name("memory_preregistration.md")


def test_plan_is_the_preregistered_one(tmp_path: Path) -> None:
    planned = study.plan(tmp_path)
    runs = [spec for _, specs in planned for spec in specs]
    part1 = [c for c, _ in planned if c.batch_sizes[0] in (16, 32)]
    part2 = [c for c, _ in planned if c.batch_sizes[0] == 128]
    assert len(runs) == 36 + 18
    for config in part1:
        # A fixed number of steps at either batch size.
        steps = config.epochs * (config.train_subset // config.batch_sizes[0])
        assert steps == 1920
        assert config.dataset == "fashion-mnist" and config.image_size == 16
        assert config.train_subset == 1024 and config.seeds == [0, 1, 2]
        memory = config.er_extra.get("entropy_memory_size")
        assert memory == (256 if config.arm == "er_memory" else None)
        for method in config.methods:
            kwargs = config.er_kwargs(method)
            if config.arm == "original":
                assert not method.endswith("_er") and kwargs == {}
            else:
                assert method.endswith("_er")
                assert kwargs.get("entropy_memory_size") == memory
    assert {c.estimator for c in part2} == set(study.ESTIMATORS)
    assert all(c.epochs == 30 for c in part2)
    assert {tuple(c.methods) for c in part2} == {("byol",), ("byol_er",)}
    # Every arm writes in its own folder: run ids cannot collide.
    assert len({c.log_dir for c, _ in planned if c.batch_sizes[0] == 16}) == 3
    assert all(spec.ema == 0.99 for spec in runs)
    assert "1,920 optimizer steps" in PREREGISTRATION.read_text().replace("**", "")


def test_steps_must_be_whole_epochs() -> None:
    assert study.epochs_for(1920, 32, 1024) == 60
    with pytest.raises(ValueError, match="whole number of epochs"):
        study.epochs_for(100, 16, 1024)


def _interval(values: Sequence[float], level: float) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = scipy_stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def _holm_levels(p: Dict[str, float], alpha: float = 0.05) -> Dict[str, float]:
    """Holm's level of each comparison, written from the definition."""
    order = sorted(p, key=lambda name: p[name])
    levels: Dict[str, float] = {}
    stopped = None
    for rank, name in enumerate(order):
        step = alpha / (len(p) - rank)
        if stopped is None and p[name] > step:
            stopped = step
        levels[name] = 1 - (stopped if stopped is not None else step)
    return levels


def test_family_verdicts_follow_holm_and_the_t_interval() -> None:
    better = {0: 0.050, 1: 0.052, 2: 0.048}
    worse = {0: -0.030, 1: -0.031, 2: -0.029}
    noisy = {0: 0.010, 1: 0.030, 2: -0.020}
    found = family_verdicts("F", {"a": better, "b": worse, "c": noisy, "d": None})
    by_name = {v.name: v for v in found}
    assert by_name["a"].verdict == BETTER
    assert by_name["b"].verdict == WORSE
    assert by_name["c"].verdict == INCONCLUSIVE
    assert by_name["d"].verdict == NOT_EVALUABLE
    # Independent p-values (scipy's t-test) and Holm's levels over the 3 evaluable.
    data = {"a": better, "b": worse, "c": noisy}
    p = {
        k: scipy_stats.ttest_1samp(list(v.values()), 0.0).pvalue
        for k, v in data.items()
    }
    levels = _holm_levels(p)
    for name, values in data.items():
        v = by_name[name]
        assert v.p_value == pytest.approx(p[name], rel=1e-6)
        assert v.level == pytest.approx(levels[name], rel=1e-12)
        low, high = _interval(list(values.values()), levels[name])
        assert (v.low, v.high) == (pytest.approx(low), pytest.approx(high))
        assert v.n == 3


def test_a_raw_95_percent_interval_is_not_the_verdict() -> None:
    # p = 0.039: its own 95% interval excludes 0, but as the smallest p-value of a
    # family of 3 it is tested at 0.05 / 3 and Holm stops there.
    marginal = {0: 0.015, 1: 0.030, 2: 0.020}
    low95, _ = _interval(list(marginal.values()), 0.95)
    assert low95 > 0
    others = {0: 0.05, 1: -0.05, 2: 0.01}, {0: -0.02, 1: 0.03, 2: 0.0}
    found = family_verdicts("F", {"m": marginal, "e": others[0], "f": others[1]})
    by_name = {v.name: v for v in found}
    assert by_name["m"].verdict == INCONCLUSIVE
    assert by_name["m"].level == pytest.approx(1 - 0.05 / 3)
    # Alone in its family, the same numbers are "better".
    (alone,) = family_verdicts("F", {"m": marginal})
    assert alone.verdict == BETTER


def _top1(shift: Dict[str, float]) -> Top1:
    """Crafted results: a base accuracy per run plus an arm's shift, small noise."""
    noise = {0: 0.0, 1: 0.002, 2: -0.001}
    top1: Top1 = {}
    for method in study.METHODS:
        for batch in study.BATCHES:
            for arm in study.ARMS:
                name = method if arm == "original" else f"{method}_er"
                top1[(arm, name, batch)] = {
                    s: 0.6 + shift.get(arm, 0.0) + noise[s] * (arm == "er_memory")
                    for s in (0, 1, 2)
                }
    for estimator in ("original",) + study.ESTIMATORS:
        name = "byol" if estimator == "original" else "byol_er"
        top1[(f"estimator_{estimator}", name, 128)] = {
            s: 0.7 + shift.get(estimator, 0.0) + 0.001 * s * (estimator == "knn")
            for s in (0, 1, 2)
        }
    return top1


def test_study_verdicts_on_crafted_results() -> None:
    top1 = _top1({"er_memory": 0.05, "original": 0.02, "knn": -0.2})
    found = verdicts(top1)
    families = {v.family for v in found}
    assert families == {
        "F1 memory - ER",
        "F2 memory - original",
        "F3 estimator - plugin",
    }
    f1 = [v for v in found if v.family == "F1 memory - ER"]
    f2 = [v for v in found if v.family == "F2 memory - original"]
    f3 = {v.name: v for v in found if v.family == "F3 estimator - plugin"}
    assert len(f1) == len(f2) == 4 and set(f3) == {"joe", "renyi2", "knn", "logdet"}
    assert all(v.verdict == BETTER for v in f1 + f2)
    assert all(v.mean == pytest.approx(0.05 + 0.0 / 3, abs=0.002) for v in f1)
    assert f3["knn"].verdict == WORSE
    # Equal arms: zero differences have se 0 and p 1, inconclusive.
    assert f3["joe"].verdict == INCONCLUSIVE
    # A missing seed makes every comparison that needs the run not evaluable.
    del top1[("er", "dino_er", 16)][2]
    found = {(v.family, v.name): v for v in verdicts(top1)}
    assert found[("F1 memory - ER", "dino batch 16")].verdict == NOT_EVALUABLE
    assert found[("F2 memory - original", "dino batch 16")].verdict == BETTER


def test_the_study_writes_its_report(tmp_path: Path, monkeypatch: Any) -> None:
    # The sweep machinery is the CIFAR benchmark's (tested there); here a fake run
    # writes records, and the study collects them into its report and verdicts.
    def fake_run_specs(specs: List[RunSpec], config: Any) -> None:
        runs = config.log_dir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            top1 = 0.6 + 0.05 * (config.arm == "er_memory") + 0.001 * spec.seed
            result = make_record(
                spec.method, spec.batch_size, spec.ema, spec.seed, top1, epochs=3
            )
            result.save(runs / f"{spec.run_id(config.epochs)}.json")

    monkeypatch.setattr(study, "run_specs", fake_run_specs)
    text = study.main(["--log-dir", str(tmp_path), "--jobs", "1"])
    assert (tmp_path / "memory_report.md").read_text() == text
    assert "| F1 memory - ER | byol batch 16 |" in text
    assert text.count("| better |") == 8  # F1 and F2; F3's arms are equal
    assert text.count("| inconclusive |") == 4


def test_report_only_trains_nothing_and_marks_missing_runs(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # A run that failed twice has no record: --report-only reports the others and
    # every comparison that needs it as not evaluable (the pre-registration's rule).
    def no_training(specs: List[RunSpec], config: Any) -> None:
        raise AssertionError("--report-only must not train")

    monkeypatch.setattr(study, "run_specs", no_training)
    planned = study.plan(tmp_path, jobs=1)
    for config, specs in planned:
        runs = config.log_dir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            if config.arm == "er" and spec.method == "byol_er" and spec.seed == 1:
                continue  # the failed run
            top1 = 0.6 + 0.05 * (config.arm == "er_memory") + 0.001 * spec.seed
            record = make_record(
                spec.method, spec.batch_size, spec.ema, spec.seed, top1, epochs=3
            )
            record.save(runs / f"{spec.run_id(config.epochs)}.json")
    text = study.main(["--log-dir", str(tmp_path), "--jobs", "1", "--report-only"])
    assert text.count("| not evaluable |") == 2  # F1's BYOL at batch 16 and 32
    assert "| F1 memory - ER | byol batch 16 | - | - | - | - | not evaluable |" in text
    assert "| F1 memory - ER | dino batch 16 |" in text


def test_a_single_seed_is_not_evaluable() -> None:
    # One seed has no standard error: a smoke test's report says so, it does not
    # fail; the comparisons with seeds are decided in a family without it.
    found = family_verdicts(
        "F", {"one": {0: 0.1}, "three": {0: 0.05, 1: 0.052, 2: 0.048}}
    )
    by_name = {v.name: v for v in found}
    assert by_name["one"].verdict == NOT_EVALUABLE
    assert by_name["three"].verdict == BETTER
    assert by_name["three"].level == pytest.approx(0.95)  # a family of one
    top1 = {k: {0: v[0]} for k, v in _top1({"er_memory": 0.05}).items()}
    assert {v.verdict for v in verdicts(top1, seeds=(0,))} == {NOT_EVALUABLE}
