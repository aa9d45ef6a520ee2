"""lightly's weights, and the ER twin's, in the ImageNet ResNet-50 benchmark.

Built in lightly's order, the original modules hold lightly's weights bit for bit;
an ER module and its original, built under one seed, have identical weights, buffers
and outputs; the ER entropy on a batch gathered from two processes equals that of one
process holding the whole batch.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.models.modules import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    MoCoProjectionHead,
    SimCLRProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
)
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.utils.benchmarking import (
    OnlineLinearClassifier,
)
from torch import Tensor, nn
from torchvision.models import resnet50

from benchmarks.imagenet.resnet50 import main as bench
from tests.benchmarks.imagenet.helpers import (
    NUM_CLASSES,
)
from tests.benchmarks.imagenet.resnet50_models import (
    original_module,
)
from tests.benchmarks.lightly_imagenet import (
    LIGHTLY_RESNET50,
)
from tests.benchmarks.state import assert_same_state, unset_buffers
from tests.loss.dist_harness import run_distributed_and_single

README = Path(__file__).resolve().parents[3] / "benchmarks" / "imagenet" / "README.md"


def _resnet50() -> nn.Module:
    resnet = resnet50()
    resnet.fc = nn.Identity()
    return resnet


def _lightly_build(method: str) -> Dict[str, nn.Module]:
    """The modules of lightly's ResNet-50 script, in the order it builds them."""
    out: Dict[str, nn.Module] = {"backbone": _resnet50()}
    if method == "simclr":
        out["projection_head"] = SimCLRProjectionHead()
        out["criterion"] = NTXentLoss(temperature=0.1, gather_distributed=True)
    elif method == "mocov2":
        out["projection_head"] = MoCoProjectionHead()
        out["key_backbone"] = copy.deepcopy(out["backbone"])
        out["key_projection_head"] = MoCoProjectionHead()
        out["criterion"] = NTXentLoss(
            temperature=0.2, memory_bank_size=(65536, 128), gather_distributed=True
        )
    elif method == "byol":
        out["projection_head"] = BYOLProjectionHead()
        out["prediction_head"] = BYOLPredictionHead()
        out["teacher_backbone"] = copy.deepcopy(out["backbone"])
        out["teacher_projection_head"] = BYOLProjectionHead()
        out["criterion"] = NegativeCosineSimilarity()
    elif method == "dino":
        out["projection_head"] = DINOProjectionHead()
        out["student_backbone"] = copy.deepcopy(out["backbone"])
        out["student_projection_head"] = DINOProjectionHead(freeze_last_layer=1)
        out["criterion"] = DINOLoss()
    else:
        out["projection_head"] = SwaVProjectionHead()
        out["prototypes"] = SwaVPrototypes(n_steps_frozen_prototypes=1)
        out["criterion"] = SwaVLoss(sinkhorn_gather_distributed=True)
    out["online_classifier"] = OnlineLinearClassifier(num_classes=1000)
    if method == "swav":
        out["queues"] = nn.ModuleList(
            [MemoryBankModule(size=(15 * 128, 128)) for _ in range(2)]
        )
    return out


def _head_inputs(model: Any, method: str) -> Dict[str, Tensor]:
    dims = {n: h[1][0][0] for n, h in LIGHTLY_RESNET50[method]["heads"].items()}
    return {name: torch.randn(8, dim) for name, dim in dims.items()}


@pytest.mark.parametrize("method", sorted(LIGHTLY_RESNET50))
def test_lightly_weights_and_er_twin_are_bitwise_equal(method: str) -> None:
    torch.manual_seed(0)
    reference = _lightly_build(method)
    original = original_module(method)  # built under torch.manual_seed(0)
    for name, module in reference.items():
        assert_same_state(original.get_submodule(name), module)
    torch.manual_seed(0)
    er = bench.build_model(f"{method}_er", 128, 1000)
    assert type(er.criterion) is not type(original.criterion)
    assert type(er.criterion).__mro__[1:].__contains__(type(original.criterion))
    assert_same_state(er, original)
    assert len(unset_buffers(original)) == (1 if method == "simclr" else 0)
    # The same outputs: backbone and every head, in training mode.
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    assert torch.equal(er.backbone(images), original.backbone(images))
    for name, x in _head_inputs(original, method).items():
        # SwAV's prototypes take the step that decides whether they are frozen.
        kwargs = {"step": 0} if name == "prototypes" else {}
        out_er = er.get_submodule(name)(x, **kwargs)
        out = original.get_submodule(name)(x, **kwargs)
        if isinstance(out, list):  # SwAV's prototypes: one tensor per set
            assert all(torch.equal(a, b) for a, b in zip(out_er, out, strict=True))
        else:
            assert torch.equal(out_er, out), name
    # The ER heads' meters use the loss's kappa or temperature by the rule.
    meters = {
        n: m.entropy_meter for n, m in er.named_modules() if hasattr(m, "entropy_meter")
    }
    assert meters or method == "mocov2"
    for meter in meters.values():
        if meter.support == "sphere":
            assert meter.kappa == (10.0 if method != "simclr" else 1 / 0.1)
        else:
            assert meter.temperature == 0.1


# -- the entropy on a batch gathered from two processes --------------------------------
class _MethodEntropy(nn.Module):
    """The entropy term of simclr_er's loss, built by the benchmark's build_model."""

    def __init__(self, gather_distributed: bool) -> None:
        super().__init__()
        model = bench.build_model(
            "simclr_er", 4, NUM_CLASSES, backbone="resnet18", knn_k=3
        )
        # lightly's losses gather over processes; with one process it does nothing.
        assert model.criterion.gather_distributed is True
        self.criterion = model.criterion

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        entropy: Tensor = self.criterion.forward_components(z0, z1).entropy
        return entropy


def test_er_entropy_on_gathered_batch_equals_single_process() -> None:
    torch.manual_seed(0)
    z0 = torch.randn(8, 128, dtype=torch.float64)
    z1 = torch.randn(8, 128, dtype=torch.float64)
    factory: Callable[..., nn.Module] = functools.partial(_MethodEntropy)
    d_entropy, s_entropy, d_grads, s_grads = run_distributed_and_single(
        factory, [z0, z1]
    )
    torch.testing.assert_close(d_entropy, s_entropy)
    for d, s in zip(d_grads, s_grads, strict=True):
        torch.testing.assert_close(d, s)
