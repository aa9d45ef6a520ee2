"""Each lightly-style method trains under Lightning with its original and ER objective.

The ER module differs from the original only by the loss and head classes: same
parameters, same shapes, same training loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.models.modules import heads
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

import lightly_er.loss as er_loss
import lightly_er.models.modules as er_heads
from benchmarks.cifar.backbones import build_backbone
from benchmarks.cifar.data import (
    ImageArrayDataset,
    eval_transform,
    train_transform,
)
from benchmarks.cifar.methods import METHOD_CLASSES, METHODS, MoCo, parse_method
from tests.benchmarks.state import assert_same_state

PARENT_LOSS = {
    "simclr": NTXentLoss,
    "moco": NTXentLoss,
    "byol": NegativeCosineSimilarity,
    "simsiam": NegativeCosineSimilarity,
    "dino": DINOLoss,
    "swav": SwaVLoss,
}
ER_LOSS = {
    "simclr": er_loss.ERNTXentLoss,
    "moco": er_loss.ERNTXentLoss,
    "byol": er_loss.ERNegativeCosineSimilarity,
    "simsiam": er_loss.ERNegativeCosineSimilarity,
    "dino": er_loss.ERDINOLoss,
    "swav": er_loss.ERSwaVLoss,
}


def _data(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), np.arange(n) % 4


def _build(method: str, seed: int = 0) -> Any:
    cls, objective = parse_method(method)
    images, labels = _data()
    knn = DataLoader(
        ImageArrayDataset(images, labels, eval_transform(16)), batch_size=12
    )
    torch.manual_seed(seed)
    splits = MoCo.num_splits if cls is MoCo else 0
    backbone, feature_dim = build_backbone("small", splits)
    return cls(
        backbone,
        feature_dim,
        knn,
        num_classes=4,
        max_epochs=1,
        batch_size=8,
        objective=objective,
        knn_k=5,
    )


def test_method_names() -> None:
    assert set(METHOD_CLASSES) == set(PARENT_LOSS)
    assert len(METHODS) == 12
    with pytest.raises(ValueError, match="unknown method 'byol_xx'"):
        parse_method("byol_xx")


@pytest.mark.parametrize("name", sorted(METHOD_CLASSES))
def test_er_module_differs_only_in_loss_and_heads(name: str) -> None:
    original, er = _build(name), _build(f"{name}_er")
    assert type(original.criterion) is PARENT_LOSS[name]
    assert type(er.criterion) is ER_LOSS[name]
    assert isinstance(er.criterion, PARENT_LOSS[name])
    # Every head that has an ER subclass uses it in the ER module.
    for module_name, module in er.named_modules():
        if module_name == "criterion" or module_name.startswith("criterion."):
            continue
        parent = type(original.get_submodule(module_name))
        if parent.__module__ == heads.__name__ and hasattr(
            er_heads, f"ER{parent.__name__}"
        ):
            assert type(module) is getattr(er_heads, f"ER{parent.__name__}")
        else:
            assert type(module) is parent, module_name


@pytest.mark.parametrize("name", sorted(METHOD_CLASSES))
def test_er_module_has_the_originals_parameters_and_outputs(name: str) -> None:
    # Built with the same seed, the ER module holds the same parameters and
    # buffers, bit for bit, and every backbone and head computes the same output.
    original, er = _build(name, seed=3), _build(f"{name}_er", seed=3)
    assert_same_state(original, er)
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for mode in ("train", "eval"):
        original.train(mode == "train")
        er.train(mode == "train")
        with torch.no_grad():
            features = original.features(x)
            assert torch.equal(er.features(x), features)
            for module_name, module in original.named_children():
                if module_name.startswith(("backbone", "teacher_backbone")):
                    continue
                if module_name in ("criterion",) or not any(
                    isinstance(m, nn.Linear) for m in module.modules()
                ):
                    continue
                first = next(m for m in module.modules() if isinstance(m, nn.Linear))
                inputs = torch.randn(
                    8, first.in_features, generator=torch.Generator().manual_seed(2)
                )
                expected = module(inputs)
                got = er.get_submodule(module_name)(inputs)
                if isinstance(expected, list):
                    assert all(
                        torch.equal(g, e) for g, e in zip(got, expected, strict=True)
                    )
                else:
                    assert torch.equal(got, expected), (module_name, mode)
            assert torch.equal(er.objective_output(x), original.objective_output(x))


@pytest.mark.parametrize("method", METHODS)
def test_trains_with_lightning(method: str, tmp_path: Path) -> None:
    images, labels = _data()
    train = DataLoader(
        ImageArrayDataset(images, labels, train_transform(method, 16)),
        batch_size=8,
        shuffle=True,
        drop_last=True,
    )
    val = DataLoader(
        ImageArrayDataset(images, labels, eval_transform(16)), batch_size=12
    )
    model = _build(method)
    before = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=CSVLogger(str(tmp_path)),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train, val)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train_loss_ssl"])
    assert 0.0 <= float(metrics["kNN_accuracy"]) <= 100.0
    changed = [
        k
        for k, v in model.backbone.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert changed, "training did not update the backbone"
    if method.endswith("_er"):
        assert model.criterion.last_components is not None
        assert "train_entropy" in metrics and torch.isfinite(metrics["train_entropy"])


@pytest.mark.parametrize(
    "method, loss, switch",
    [("dino_er", "ERDINOLoss", "centering"), ("swav_er", "ERSwaVLoss", "use_sinkhorn")],
)
def test_er_twins_are_the_papers_variants_by_name(
    method: str, loss: str, switch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DINO-ER and SwAV-ER pass ``centering=False`` / ``use_sinkhorn=False`` themselves:
    the entropy term replaces the device, whatever the library's default."""
    from benchmarks.cifar import methods

    seen: dict[str, Any] = {}
    real = getattr(methods, loss)

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(methods, loss, spy)
    model = _build(method)
    assert seen[switch] is False
    assert getattr(model.criterion, switch) is False
    # the results table's "ER Variant" column reads the same loss
    from benchmarks.common.er_options import er_variant

    assert er_variant(model.criterion).startswith("paper:")
