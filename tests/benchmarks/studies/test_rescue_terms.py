"""The comparator terms on the mechanism engine: where they read, what they add."""

from __future__ import annotations

import math
from typing import List

import pytest
import torch
from torch.nn import functional as F

from benchmarks.studies.mechanism import terms
from benchmarks.studies.mechanism.config import RunSpec
from benchmarks.studies.mechanism.models import (
    build_model,
    head_outputs,
    loss_description,
    training_loss,
)


def views(seed: int = 0, n: int = 16) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, 3, 28, 28, generator=g).contiguous(
            memory_format=torch.channels_last
        )
        for _ in range(2)
    ]


def koleo(z: torch.Tensor) -> torch.Tensor:
    x = F.normalize(z, dim=1)
    d = torch.cdist(x, x) + torch.diag(torch.full((len(x),), math.inf))
    return -torch.log(d.min(dim=1).values + 1e-8).mean()


def uniformity(z: torch.Tensor) -> torch.Tensor:
    x = F.normalize(z, dim=1)
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    return torch.log(torch.exp(-2 * (x[i] - x[j]).pow(2).sum(1)).mean())


def vicreg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    def var(x: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - torch.sqrt(x.var(0) + 1e-4)).mean()

    def cov(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(0)
        c = x.T @ x / (len(x) - 1)
        off = c - torch.diag(torch.diag(c))
        return off.pow(2).sum() / x.shape[1]

    return 0.5 * (var(a) + var(b)) + (cov(a) + cov(b)) / 25


@pytest.mark.parametrize(
    "arm", ["byol-nopred-ema0", "dino-ema0", "byol", "swav-nosinkhorn"]
)
@pytest.mark.parametrize("name", ["koleo", "uniformity", "vicreg", "sigreg"])
def test_term_adds_its_weight_times_its_value_on_the_head(arm: str, name: str) -> None:
    plain = build_model(RunSpec(arm, 0.0, 16, 10, 3))
    treated = build_model(RunSpec(arm, 0.0, 16, 10, 3, name))
    # The term leaves the arm's weights alone (built after the model).
    theirs = {
        k: v for k, v in treated.state_dict().items() if not k.startswith("rescue_term")
    }
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(theirs[key], value, rtol=0, atol=0)
    head = terms.term_input(treated)
    kept: List[torch.Tensor] = []
    head.register_forward_hook(lambda m, i, o: kept.append(o.detach()))
    x = views()
    plain.train()
    treated.train()
    torch.manual_seed(11)
    with_term = training_loss(treated, x, 0)
    base = training_loss(plain, x, 0)
    assert len(kept) == 2
    if name == "koleo":
        expected = 0.1 * (koleo(kept[0]) + koleo(kept[1])) / 2
    elif name == "uniformity":
        expected = (uniformity(kept[0]) + uniformity(kept[1])) / 2
    elif name == "vicreg":
        expected = vicreg(kept[0], kept[1])
    else:
        torch.manual_seed(11)  # SIGReg draws its slices from the global generator
        from lightly.loss import SIGReg

        expected = SIGReg()(torch.stack(kept)) * 0.05 / 0.95
    torch.testing.assert_close(with_term - base, expected, rtol=1e-4, atol=1e-5)
    assert loss_description(treated)["term"] == name
    assert "term" not in loss_description(plain)


def test_the_hook_reads_the_online_heads_only() -> None:
    byol = build_model(RunSpec("byol", 0.0, 16, 10, 0, "koleo"))
    assert terms.term_input(byol) is byol.prediction_head
    nopred = build_model(RunSpec("byol-nopred", 0.0, 16, 10, 0, "koleo"))
    assert terms.term_input(nopred) is nopred.projection_head
    dino = build_model(RunSpec("dino", 0.0, 16, 10, 0, "koleo"))
    assert terms.term_input(dino) is dino.head.layers  # type: ignore[union-attr]
    swav = build_model(RunSpec("swav", 0.0, 16, 10, 0, "koleo"))
    assert terms.term_input(swav) is swav.projection_head
    simsiam = build_model(RunSpec("simsiam", 0.0, 16, 10, 0, "koleo"))
    assert terms.term_input(simsiam) is simsiam.prediction_head


def test_eval_mode_snapshots_keep_nothing() -> None:
    model = build_model(RunSpec("dino-ema0", 0.0, 16, 10, 0, "uniformity"))
    model.eval()
    head_outputs(model, views()[0])
    term = model.rescue_term
    assert isinstance(term, terms.Term)
    with pytest.raises(RuntimeError, match="2 views per step, got 0"):
        term.pop_loss()


def test_unknown_term_is_refused() -> None:
    with pytest.raises(ValueError, match="term must be one of"):
        terms.Term("dropout")
    with pytest.raises(TypeError, match="no comparator term"):
        terms.term_input(torch.nn.Linear(2, 2))
