"""Tests of lightly_er.monitoring._watch: which modules the monitor watches, and the
support of each, which the loss states (entropy_settings), not a table of heads."""

from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, Optional

import pytest
import torch
from lightly.loss import DINOLoss, MSNLoss, NTXentLoss, SwaVLoss
from lightly.models.modules.heads import (
    DINOProjectionHead,
    MSNProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
)
from lightly.models.utils import deactivate_requires_grad
from torch import nn

from lightly_er.loss import ERLoss
from lightly_er.monitoring import EntropyMeter, _watch
from lightly_er.monitoring._watch import MeterSettings, find_watches, support_of

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated.*")

SETTINGS = MeterSettings(None, None, None, False)


def _supports(model: nn.Module) -> Dict[str, str]:
    return {w.name: w.meter.support for w in find_watches(model, None, SETTINGS)}


class SwaV(nn.Module):
    """lightly's SwAV layout: the projection head embeds, the prototypes score."""

    def __init__(self, criterion: Optional[nn.Module]) -> None:
        super().__init__()
        self.backbone = nn.Linear(16, 32)
        self.projection_head = SwaVProjectionHead(32, 32, 8)
        self.prototypes = SwaVPrototypes(8, n_prototypes=12)
        if criterion is not None:
            self.criterion = criterion


class DINO(nn.Module):
    """lightly's DINO layout: the heads end in the prototypes."""

    def __init__(self, criterion: Optional[nn.Module]) -> None:
        super().__init__()
        self.backbone = nn.Linear(16, 32)
        self.student_head = DINOProjectionHead(32, 32, 8, 12)
        self.teacher_head = DINOProjectionHead(32, 32, 8, 12)
        deactivate_requires_grad(self.teacher_head)
        if criterion is not None:
            self.criterion = criterion


class MSN(nn.Module):
    """lightly's MSN layout: the prototypes are a weight the loss reads."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(16, 32)
        self.projection_head = MSNProjectionHead(32, 32, 8)
        self.anchor_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.projection_head)
        self.prototypes = nn.Linear(8, 12, bias=False).weight
        self.criterion = MSNLoss()


def test_the_loss_says_which_heads_output_prototype_scores() -> None:
    assert _supports(SwaV(SwaVLoss())) == {
        "backbone": "sphere",
        "projection_head": "sphere",
        "prototypes": "discrete",
    }
    assert _supports(DINO(DINOLoss(output_dim=12))) == {
        "backbone": "sphere",
        "student_head": "discrete",
        "teacher_head": "discrete",
    }
    # MSN's projection heads embed: the loss scores them against the weights.
    assert _supports(MSN()) == {"backbone": "sphere", "projection_head": "sphere"}


@pytest.mark.parametrize("criterion", [None, NTXentLoss()])
def test_a_loss_on_embeddings_or_none_makes_every_module_an_embedding(
    criterion: Optional[nn.Module],
) -> None:
    """The same heads as above: without a loss on prototype scores nothing is
    discrete (the support is the loss's answer, not the class of the head)."""
    for model in (SwaV(criterion), DINO(criterion)):
        assert set(_supports(model).values()) == {"sphere"}


def test_any_loss_that_states_a_discrete_support_is_followed() -> None:
    class Model(nn.Module):
        def __init__(self, support: str) -> None:
            super().__init__()
            self.backbone = nn.Linear(4, 8)
            self.head = nn.Linear(8, 6)
            self.criterion = ERLoss(support, temperature=0.2)  # type: ignore[arg-type]

    assert _supports(Model("discrete")) == {"backbone": "sphere", "head": "discrete"}
    assert _supports(Model("sphere")) == {"backbone": "sphere", "head": "sphere"}
    watches = {w.name: w for w in find_watches(Model("discrete"), None, SETTINGS)}
    # Measured at the loss's temperature, the rows' kind detected.
    head = watches["head"].meter
    assert (head.temperature, head.inputs) == (0.2, "auto")


def test_support_of_keeps_no_table_of_head_classes() -> None:
    source = inspect.getsource(_watch)
    for name in ("DINOProjectionHead", "SwaVPrototypes", "isinstance(module, ("):
        assert name not in source, name
    assert support_of("head", DINOLoss(output_dim=4), has_prototypes=False) == (
        "discrete"
    )
    assert support_of("backbone", DINOLoss(output_dim=4), has_prototypes=False) == (
        "sphere"
    )


def test_meters_detect_probabilities_by_default() -> None:
    class Softmax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Sequential(nn.Linear(4, 6), nn.Softmax(dim=1))

    (watch,) = find_watches(Softmax(), {"head": "discrete"}, SETTINGS)
    assert watch.meter.inputs == "auto"
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    p = watch.module(x).detach()
    with pytest.warns(UserWarning, match="already probabilities"):
        metrics: Dict[str, Any] = watch.meter.update(p)
    reference = EntropyMeter("discrete", inputs="probabilities").compute(p)
    assert metrics == pytest.approx(reference, rel=1e-6, abs=1e-7)
