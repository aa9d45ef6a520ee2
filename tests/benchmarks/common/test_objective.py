"""The objective switch: one kappa, the loss's, wherever a benchmark measures.

Every ER head's meter, the meter of a CIFAR-10 run's held-out batch and the kappa of
its record come from the loss object; a user's --kappa reaches them only through the
loss. These tests fail when any of them works a kappa (or temperature) out itself.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import pytest
import torch
from lightly.loss import NTXentLoss
from torch.utils.data import DataLoader

from benchmarks.cifar.backbones import build_backbone
from benchmarks.cifar.config import SweepConfig
from benchmarks.cifar.data import ImageArrayDataset, eval_transform
from benchmarks.cifar.methods import MoCo, parse_method
from benchmarks.common.objective import ObjectiveSwitch
from benchmarks.imagenet.resnet50 import main as resnet50
from lightly_er.experimental import EntropyEstimator
from lightly_er.loss import ERNTXentLoss
from lightly_er.monitoring import EntropyMeter, entropy_settings


def _cifar(method: str, kappa: Optional[float] = None) -> Any:
    images = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    knn = DataLoader(ImageArrayDataset(images, np.zeros(4), eval_transform(16)))
    cls, objective = parse_method(method)
    backbone, feature_dim = build_backbone(
        "small", MoCo.num_splits if cls is MoCo else 0
    )
    config = SweepConfig(kappa=kappa)
    return cls(
        backbone,
        feature_dim,
        knn,
        10,
        max_epochs=1,
        batch_size=8,
        objective=objective,
        er_kwargs=config.er_kwargs(method),
    )


def _meters(model: Any) -> Dict[str, EntropyMeter]:
    return {
        name: module.entropy_meter
        for name, module in model.named_modules()
        if isinstance(getattr(module, "entropy_meter", None), EntropyMeter)
    }


def _assert_heads_measure_as_the_loss(model: Any) -> None:
    """Every ER head on the loss's support measures at the loss's kappa/temperature."""
    loss = EntropyMeter.for_loss(model.criterion).settings()
    meters = _meters(model)
    assert meters
    same = [m for m in meters.values() if m.support == loss["support"]]
    assert same, "no head measures what the loss sees"
    for meter in same:
        assert meter.settings() == loss
    for meter in meters.values():
        if meter.support != loss["support"]:  # SwAV's projection head
            assert meter.settings() == EntropyMeter(meter.support).settings()


@pytest.mark.parametrize("method", ["simclr_er", "byol_er", "dino_er", "swav_er"])
def test_cifar_heads_measure_as_the_loss(method: str) -> None:
    _assert_heads_measure_as_the_loss(_cifar(method))


@pytest.mark.parametrize("method", ["simclr_er", "byol_er", "dino_er", "swav_er"])
def test_imagenet_heads_measure_as_the_loss(method: str) -> None:
    torch.manual_seed(0)
    model = resnet50.build_model(method, 4, 5, backbone="resnet18")
    _assert_heads_measure_as_the_loss(model)


@pytest.mark.parametrize("method", ["simclr_er", "byol_er", "simsiam_er", "moco_er"])
def test_a_users_kappa_reaches_everything_through_the_loss(method: str) -> None:
    model = _cifar(method, kappa=3.0)
    assert model.criterion.kappa == 3.0
    # What a run's record and its held-out meter read (benchmarks/cifar/run.py).
    assert entropy_settings(model.criterion)["kappa"] == 3.0  # type: ignore[index]
    assert EntropyMeter.for_loss(model.criterion).settings()["kappa"] == 3.0
    for meter in _meters(model).values():
        assert meter.kappa == 3.0


def test_the_original_objective_builds_lightlys_classes() -> None:
    original, er = _cifar("simclr"), _cifar("simclr_er")
    assert type(original.criterion) is NTXentLoss
    assert type(er.criterion) is ERNTXentLoss
    assert _meters(original) == {}
    assert original.meter_kwargs("sphere") == {}


JOE = EntropyEstimator(name="joe")


def test_make_loss_gives_er_arguments_to_the_er_class_only() -> None:
    switch = ObjectiveSwitch()
    switch.init_objective("er", {"entropy_weight": 0.5})
    loss = switch.make_loss(
        NTXentLoss, ERNTXentLoss, er_only={"estimator": JOE}, temperature=0.2
    )
    assert isinstance(loss, ERNTXentLoss)
    assert (loss.temperature, loss.entropy_weight, loss.estimator) == (0.2, 0.5, JOE)
    switch.init_objective("original")
    loss = switch.make_loss(
        NTXentLoss, ERNTXentLoss, er_only={"estimator": JOE}, temperature=0.2
    )
    assert type(loss) is NTXentLoss and loss.temperature == 0.2
    with pytest.raises(ValueError, match="apply to the ER objective only"):
        switch.init_objective("original", {"kappa": 2.0})
    with pytest.raises(ValueError, match="objective must be 'original' or 'er'"):
        switch.init_objective("ER")
