"""ERMSNLoss: MSN's loss as an ER objective, held to lightly's MSNLoss.

MSN's loss is -(reconstruction + lambda H(mean prediction)) + lambda log K, so the ER
loss plus lambda log K equals MSNLoss at every setting, gradients included; the terms
are held to an independent computation; a 2-process gather equals one process; the
constructor and forward keep the parent's signature.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from lightly.loss import MSNLoss
from scipy.special import log_softmax
from torch import Tensor, nn

from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import discrete_entropy
from lightly_er.loss import ERMSNLoss
from tests.loss.dist_harness import run_distributed_and_single

F64 = torch.float64


def _inputs(views: int = 3, batch: int = 8, dim: int = 10, k: int = 6, seed: int = 0):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(batch * views, dim, generator=g, dtype=F64)
    targets = torch.randn(batch, dim, generator=g, dtype=F64)
    prototypes = torch.randn(k, dim, generator=g, dtype=F64)
    return anchors, targets, prototypes


@pytest.mark.parametrize("sinkhorn_iterations", [0, 3])
@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_equals_msn_up_to_its_constant(
    sinkhorn_iterations: int, weight: float, temperature: float
) -> None:
    anchors, targets, prototypes = _inputs()
    values, grads = [], []
    for cls in (MSNLoss, ERMSNLoss):
        a = anchors.clone().requires_grad_(True)
        p = prototypes.clone().requires_grad_(True)
        loss = cls(
            temperature=temperature,
            sinkhorn_iterations=sinkhorn_iterations,
            regularization_weight=weight,
        )(a, targets, p, target_sharpen_temperature=0.3)
        loss.backward()
        values.append(float(loss.detach()))
        grads.append((a.grad, p.grad))
    assert values[1] + weight * math.log(6) == pytest.approx(values[0], rel=1e-12)
    for ours, theirs in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_terms_match_an_independent_computation() -> None:
    anchors, targets, prototypes = _inputs(views=2)
    loss = ERMSNLoss(temperature=0.2, sinkhorn_iterations=0)
    components = loss.forward_components(anchors, targets, prototypes)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, t, p = unit(anchors.numpy()), unit(targets.numpy()), unit(prototypes.numpy())
    log_q = log_softmax(a @ p.T / 0.2, axis=1)
    target = np.exp(log_softmax(t @ p.T / 0.2, axis=1)) ** 4  # sharpened at 0.25
    target /= target.sum(axis=1, keepdims=True)
    target = np.tile(target, (2, 1))
    reconstruction = float(np.mean(np.sum(target * log_q, axis=1)))
    mean = np.exp(log_q).mean(axis=0)
    entropy = float(-(mean * np.log(mean)).sum())
    assert float(components.reconstruction) == pytest.approx(reconstruction, rel=1e-12)
    assert float(components.entropy) == pytest.approx(entropy, rel=1e-12)
    assert float(components.loss) == pytest.approx(
        -(entropy + reconstruction), rel=1e-12
    )


def test_memory_joins_the_marginal() -> None:
    loss = ERMSNLoss(sinkhorn_iterations=0, estimator=EntropyEstimator(memory_size=64))
    anchors, targets, prototypes = _inputs(views=2, seed=1)
    first = anchors.clone().requires_grad_(True)
    loss(first, targets, prototypes).backward()
    second, targets2, _ = _inputs(views=2, seed=2)
    entropy = loss.forward_components(second, targets2, prototypes).entropy

    def probs(x: Tensor) -> Tensor:
        x = nn.functional.normalize(x.detach(), dim=1)
        p = nn.functional.normalize(prototypes, dim=1)
        return torch.softmax(x @ p.T / 0.1, dim=1)

    expected = discrete_entropy(torch.cat([probs(first), probs(second)]))
    torch.testing.assert_close(entropy, expected, rtol=1e-12, atol=1e-12)


def test_bad_input_is_rejected() -> None:
    anchors, targets, prototypes = _inputs()
    with pytest.raises(ValueError, match="whole number of views"):
        ERMSNLoss()(anchors[:-1], targets, prototypes)
    with pytest.raises(ValueError, match="same dim"):
        ERMSNLoss()(anchors, targets, prototypes[:, :-1])
    with pytest.raises(ValueError, match="regularization_weight"):
        ERMSNLoss(regularization_weight=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        ERMSNLoss(temperature=0.0)
    with pytest.raises(ValueError, match="target_sharpen_temperature"):
        ERMSNLoss()(anchors, targets, prototypes, target_sharpen_temperature=0.0)


class _WithPrototypes(nn.Module):
    """The harness splits every tensor argument; the prototypes are not split."""

    def __init__(self, loss: nn.Module, prototypes: Tensor) -> None:
        super().__init__()
        self.loss = loss
        self.prototypes = prototypes

    def forward(self, anchors: Tensor, targets: Tensor) -> Tensor:
        # The targets have no gradient; a zero term gives the harness one.
        loss = self.loss(anchors, targets, self.prototypes)
        return loss + 0.0 * targets.sum()  # type: ignore[no-any-return]


def _msn_factory(sinkhorn_iterations: int, gather_distributed: bool) -> nn.Module:
    # Module level (picklable for the worker processes); fixed prototypes.
    prototypes = _inputs(views=1, batch=8, seed=3)[2].float()
    loss = ERMSNLoss(
        sinkhorn_iterations=sinkhorn_iterations, gather_distributed=gather_distributed
    )
    return _WithPrototypes(loss, prototypes)


@pytest.mark.parametrize("sinkhorn_iterations", [0, 3])
def test_two_processes_equal_one(sinkhorn_iterations: int) -> None:
    anchors, targets, _ = _inputs(views=1, batch=8, seed=3)
    dist_loss, single_loss, dist_grads, single_grads = run_distributed_and_single(
        functools.partial(_msn_factory, sinkhorn_iterations),
        [anchors.float(), targets.float()],
    )
    torch.testing.assert_close(dist_loss, single_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dist_grads[0], single_grads[0], rtol=1e-5, atol=1e-6)
