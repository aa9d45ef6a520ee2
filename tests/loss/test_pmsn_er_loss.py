"""ERPMSNLoss: the entropy relative to PMSN's power-law prior.

It equals lightly's PMSNLoss at regularization weight 0, lightly's MSNLoss at
exponent 0 (a uniform prior), and its entropy term is -KL(m || pi) by an independent
computation; the constructor and forward keep PMSNLoss's signature.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightly.loss import MSNLoss, PMSNLoss
from lightly.loss.pmsn_loss import _power_law_distribution

from lightly_er.loss import ERPMSNLoss
from tests.loss.test_msn_er_loss import _inputs


def _run(loss: torch.nn.Module, seed: int = 0):  # type: ignore[no-untyped-def]
    anchors, targets, prototypes = _inputs(seed=seed)
    a = anchors.clone().requires_grad_(True)
    value = loss(a, targets, prototypes)
    value.backward()
    return float(value), a.grad


@pytest.mark.parametrize("sinkhorn_iterations", [0, 3])
def test_equals_pmsn_without_regularisation(sinkhorn_iterations: int) -> None:
    ours = _run(
        ERPMSNLoss(sinkhorn_iterations=sinkhorn_iterations, regularization_weight=0)
    )
    theirs = _run(
        PMSNLoss(sinkhorn_iterations=sinkhorn_iterations, regularization_weight=0)
    )
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_equals_msn_with_a_uniform_prior(weight: float) -> None:
    ours = _run(ERPMSNLoss(power_law_exponent=0.0, regularization_weight=weight))
    theirs = _run(MSNLoss(regularization_weight=weight))
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("exponent", [0.25, 1.0])
def test_entropy_is_minus_kl_to_the_prior(exponent: float) -> None:
    anchors, targets, prototypes = _inputs(seed=4)
    loss = ERPMSNLoss(power_law_exponent=exponent, sinkhorn_iterations=0)
    components = loss.forward_components(anchors, targets, prototypes)
    a = torch.nn.functional.normalize(anchors, dim=1).numpy()
    p = torch.nn.functional.normalize(prototypes, dim=1).numpy()
    logits = a @ p.T / 0.1
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    m = probs.mean(axis=0)
    prior = np.arange(1, 7, dtype=float) ** -exponent
    prior /= prior.sum()
    expected = -float(np.sum(m * np.log(m / prior)))
    assert float(components.entropy) == pytest.approx(expected, rel=1e-11)
    assert float(components.entropy) <= 0.0
    # The prior is lightly's power law.
    ours = loss.prior_log_probabilities(6, torch.zeros(6, dtype=torch.float64)).exp()
    theirs = _power_law_distribution(6, exponent, torch.device("cpu"))
    torch.testing.assert_close(ours.float(), theirs.float())
