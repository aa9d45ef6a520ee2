"""The original CIFAR-10 modules are lightly's benchmark, value for value.

Each test builds a module of benchmarks.cifar.methods the way the sweep does
and checks it against tests.benchmarks.lightly_cifar10.LIGHTLY_CIFAR10, the
transcription of lightly's script. The table of deliberate differences in
benchmarks/README.md must equal benchmarks.cifar.differences.DIFFERENCES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
from lightly.models.batchnorm import SplitBatchNorm
from lightly.transforms import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
    DINOTransform,
    SimCLRTransform,
    SimSiamTransform,
    SwaVTransform,
)
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.cifar import methods
from benchmarks.cifar.backbones import build_backbone
from benchmarks.cifar.config import SweepConfig
from benchmarks.cifar.data import (
    ImageArrayDataset,
    eval_transform,
    train_transform,
)
from benchmarks.cifar.differences import DIFFERENCES
from benchmarks.common.differences import differences_markdown
from lightly_er.experimental import EntropyEstimator
from tests.benchmarks.lightly_cifar10 import LIGHTLY_CIFAR10, LIGHTLY_SHARED
from tests.benchmarks.state import fingerprint

README = Path(__file__).resolve().parents[3] / "benchmarks" / "README.md"


def _lightly_transform(method: str) -> Any:
    """The augmentation exactly as lightly's CIFAR-10 script builds it."""
    if method == "byol":
        return BYOLTransform(
            view_1_transform=BYOLView1Transform(input_size=32, gaussian_blur=0.0),
            view_2_transform=BYOLView2Transform(input_size=32, gaussian_blur=0.0),
        )
    if method in ("simclr", "moco"):
        return SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)
    if method == "simsiam":
        return SimSiamTransform(input_size=32, gaussian_blur=0.0)
    if method == "swav":
        return SwaVTransform(
            crop_sizes=[32],  # type: ignore[arg-type]
            crop_counts=[2],  # type: ignore[arg-type]
            crop_min_scales=[0.14],  # type: ignore[arg-type]
            # lightly's script passes no crop_max_scales: its default (1.0, 0.14)
            # meant (1.0,) for one crop size before lightly 1.6, which rejects it.
            crop_max_scales=[1.0],  # type: ignore[arg-type]
            cj_strength=0.5,
            gaussian_blur=0,
        )
    return DINOTransform(
        global_crop_size=32, n_local_views=0, cj_strength=0.5, gaussian_blur=(0, 0, 0)
    )


def _build(method: str, batch_size: int = 128) -> methods.SSLMethod:
    cls, objective = methods.parse_method(method)
    images = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    knn = DataLoader(ImageArrayDataset(images, np.zeros(8), eval_transform(32)))
    splits = methods.MoCo.num_splits if cls is methods.MoCo else 0
    backbone, feature_dim = build_backbone("resnet18", splits)
    return cls(
        backbone,
        feature_dim,
        knn,
        10,
        max_epochs=200,
        batch_size=batch_size,
        objective=objective,
    )


def _linear_dims(module: nn.Module) -> tuple[int, ...]:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return (linears[0].in_features, *(m.out_features for m in linears))


@pytest.mark.parametrize("method", sorted(LIGHTLY_CIFAR10))
def test_transform_is_lightlys(method: str) -> None:
    ours = fingerprint(train_transform(method, 32))
    assert ours == fingerprint(_lightly_transform(method))
    # The ER objective trains on the same augmentation.
    assert fingerprint(train_transform(f"{method}_er", 32)) == ours


@pytest.mark.parametrize("method", sorted(LIGHTLY_CIFAR10))
def test_module_is_lightlys(method: str) -> None:
    expected = LIGHTLY_CIFAR10[method]
    model = _build(method)
    # Heads: class and layer widths (first input, then each linear output).
    for name, (cls_name, dims) in expected["heads"].items():
        head = model.get_submodule(name)
        assert type(head).__name__ == cls_name, name
        got = _linear_dims(head)
        if cls_name == "DINOProjectionHead":
            # lightly's 2-layer CIFAR head: 512 -> 2048 -> 256, prototypes 2048.
            assert got == (512, 2048, 256, 2048)
        elif cls_name == "SwaVPrototypes":
            assert got == dims
        else:
            assert (got[0], got[1], got[-1]) == dims, name
    # Loss: class and values.
    loss_cls, loss_values = expected["loss"]
    assert type(model.criterion).__name__ == loss_cls
    for key, value in loss_values.items():
        if key == "memory_bank_size":
            assert tuple(model.criterion.memory_bank.size) == value
        elif key == "output_dim":
            assert model.criterion.center.shape[-1] == value
        else:
            assert getattr(model.criterion, key) == pytest.approx(value), key
    # Optimizer, learning rate scaling and trained parameters.
    (optimizer,), (scheduler,) = model.configure_optimizers()
    opt_cls, opt = expected["optimizer"]
    assert type(optimizer).__name__ == opt_cls
    for batch_size in (128, 512):
        lr = _build(method, batch_size).configure_optimizers()[0][0].defaults["lr"]
        factor = batch_size / 128 if opt["scaled"] else 1.0
        assert lr == pytest.approx(opt["lr"] * factor)
    for key in ("momentum", "weight_decay"):
        if key in opt:
            assert optimizer.defaults[key] == opt[key]
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert scheduler.T_max == 200
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    wanted = {
        id(p)
        for name in expected["trained"]
        for p in model.get_submodule(name).parameters()
    }
    assert trained == wanted
    # Teacher, split batch norm.
    assert model.has_teacher == (expected["ema"] is not None)
    if expected["ema"] is not None:
        assert model.ema == expected["ema"]
    splits = [m for m in model.backbone.modules() if isinstance(m, SplitBatchNorm)]
    assert len(splits) == (20 if expected["num_splits"] else 0)
    assert all(m.num_splits == expected["num_splits"] for m in splits)


def test_dino_teacher_head_is_initialised_independently() -> None:
    torch.manual_seed(0)
    model = _build("dino")
    student = model.head.state_dict()
    teacher = model.teacher_head.state_dict()
    assert student.keys() == teacher.keys()
    assert not all(torch.equal(student[k], teacher[k]) for k in student)
    assert all(not p.requires_grad for p in model.teacher_head.parameters())
    # The teacher backbone, by contrast, is a copy of the student's.
    for a, b in zip(
        model.backbone.state_dict().values(),
        model.teacher_backbone.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_moco_shuffles_the_key_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = methods.model_utils.batch_shuffle

    def spy(batch: torch.Tensor, distributed: bool = False) -> Any:
        calls.append(len(batch))
        return original(batch, distributed=distributed)

    monkeypatch.setattr(methods.model_utils, "batch_shuffle", spy)
    model = _build("moco", batch_size=8)
    x0, x1 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    loss = model.training_step(([x0, x1], torch.zeros(8), None), 0)
    assert torch.isfinite(loss)
    assert calls == [8, 8]  # the key batch of each of the two symmetric terms


def test_defaults_are_lightlys() -> None:
    config = SweepConfig()
    assert config.backbone == LIGHTLY_SHARED["backbone"]
    assert config.batch_sizes == [LIGHTLY_SHARED["batch_size"]]
    assert config.epochs == LIGHTLY_SHARED["epochs"]
    assert (config.knn_k, config.knn_t) == (
        LIGHTLY_SHARED["knn_k"],
        LIGHTLY_SHARED["knn_t"],
    )
    assert config.precision == LIGHTLY_SHARED["precision"]
    assert config.emas == LIGHTLY_SHARED["emas"]
    assert config.dataset == LIGHTLY_SHARED["dataset"]
    assert (config.train_subset, config.test_subset, config.devices) == (None, None, 1)


def test_readme_lists_the_differences() -> None:
    text = README.read_text(encoding="utf-8")
    assert differences_markdown(DIFFERENCES) in text
    assert len(DIFFERENCES) == len({d.setting for d in DIFFERENCES}), (
        "a setting is listed twice"
    )


def test_er_defaults_are_the_authors() -> None:
    config = SweepConfig()
    assert (config.kappa, config.entropy_weight, config.estimator) == (
        None,
        1.0,
        "plugin",
    )
    kwargs: Dict[str, Any] = config.er_kwargs("byol_er")
    assert kwargs == {"entropy_weight": 1.0, "estimator": EntropyEstimator()}
    assert config.er_kwargs("byol") == {}
