"""benchmarks/knn_at_init.py: the kNN floor of an untrained backbone."""

from __future__ import annotations

from types import ModuleType

import pytest

from benchmarks.cifar.config import SweepConfig
from tests.benchmarks.scripts import load_script


def _module() -> ModuleType:
    return load_script("studies/knn_at_init")


def test_untrained_backbone_is_far_above_chance_on_digits() -> None:
    module = _module()
    config = SweepConfig(dataset="digits", backbone="small", knn_k=20, num_workers=0)
    first = module.knn_top1_at_init(config, seed=0)
    # 10 classes: chance is 0.1, yet random conv features already cluster digits.
    assert 0.6 < first < 1.0
    assert module.knn_top1_at_init(config, seed=0) == first  # seeded
    assert module.knn_top1_at_init(config, seed=1) != first


def test_cli_prints_mean_and_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    _module().main(["--knn-k", "20", "--test-subset", "100", "--seeds", "0", "1"])
    line = capsys.readouterr().out.strip()
    assert line.startswith("digits small at init: kNN top-1 ")
    assert "(seeds: " in line and line.count(", ") == 1
    assert line.count(" ± ") == 1


def test_cli_shows_no_spread_for_one_seed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _module()
    monkeypatch.setattr(module, "knn_top1_at_init", lambda config, seed: 0.875)
    module.main(["--seeds", "3"])
    line = capsys.readouterr().out.strip()
    assert line == "digits small at init: kNN top-1 0.875 (seeds: 0.875)"
