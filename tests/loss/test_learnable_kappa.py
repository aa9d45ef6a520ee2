"""Learnable kappa on the sphere losses (``learn_kappa``, ``density_kappa``).

The gradient that reaches the parameter equals finite differences of the loss at a
fixed kappa (the exact gradient of log C_d(kappa) included, which matters when the
constants do not cancel); a separate kernel kappa gets the gradient of the
leave-one-out likelihood instead; kappa stays inside its bounds; and the one kappa
resolver reports a learned kappa's current value.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn.functional import normalize

from lightly_er.experimental import EntropyEstimator
from lightly_er.experimental._learnable_kappa import LearnableKappa, kappa_range
from lightly_er.functional import log_vmf_normalizer
from lightly_er.functional._sphere import relative_sphere_entropy
from lightly_er.loss import (
    ERLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    entropy_settings,
)
from lightly_er.monitoring import EntropyMeter

F64 = torch.float64


def _inputs(n: int = 12, d: int = 6, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(
        n, d, generator=g, dtype=F64
    )


def _dkappa_dlogit(module: LearnableKappa) -> float:
    logit = module.logit.detach().clone().requires_grad_(True)
    span = math.log(module.high) - math.log(module.low)
    kappa = torch.exp(math.log(module.low) + span * torch.sigmoid(logit))
    (grad,) = torch.autograd.grad(kappa, logit)
    return float(grad)


@pytest.mark.parametrize("estimator", ["plugin", "joe", "renyi2", "knn", "logdet"])
@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_shared_kappa_gradient_is_the_derivative_of_the_fixed_loss(
    estimator: str, weight: float
) -> None:
    x0, x1 = _inputs()
    kappa = 4.0
    learned = ERLoss(
        kappa=kappa,
        entropy_weight=weight,
        estimator=EntropyEstimator(learn_kappa=True, name=estimator),
    )
    learned(x0, x1).backward()
    assert learned.learned_kappa is not None
    grad_logit = float(learned.learned_kappa.logit.grad)  # type: ignore[arg-type]

    def fixed(k: float) -> float:
        loss = ERLoss(
            kappa=k, entropy_weight=weight, estimator=EntropyEstimator(name=estimator)
        )
        return float(loss(x0, x1))

    h = 1e-5
    derivative = (fixed(kappa + h) - fixed(kappa - h)) / (2 * h)
    expected = derivative * _dkappa_dlogit(learned.learned_kappa)
    assert grad_logit == pytest.approx(expected, rel=1e-6, abs=1e-8)
    # At entropy weight != 1 the constants do not cancel: (w - 1) d log C / d kappa
    # is part of the gradient, large enough that dropping it would fail above.
    k = torch.tensor(kappa, dtype=F64, requires_grad=True)
    (dlogc,) = torch.autograd.grad(log_vmf_normalizer(6, k), k)
    share = abs((weight - 1.0) * float(dlogc) * _dkappa_dlogit(learned.learned_kappa))
    assert share == 0.0 if weight == 1.0 else share > 1e-3 * abs(expected) + 1e-6


def test_value_at_the_initial_kappa_is_the_fixed_loss() -> None:
    x0, x1 = _inputs()
    for make in (
        lambda **kw: ERNegativeCosineSimilarity(**kw),
        lambda **kw: ERNTXentLoss(0.25, **kw),
        lambda **kw: ERLoss(**kw),
    ):
        a = make(learn_kappa=True)(x0.clone().requires_grad_(True), x1)
        b = make()(x0.clone().requires_grad_(True), x1)
        assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-12)


def test_byol_er_scale_stays_the_initial_kappa() -> None:
    # BYOL-ER divides by kappa so that entropy weight 0 has the parent's gradient; a
    # learned kappa keeps the initial value as that (constant) scale.
    loss = ERNegativeCosineSimilarity(
        kappa=5.0, estimator=EntropyEstimator(learn_kappa=True), prediction="x0"
    )
    assert loss.loss_scale == 5.0
    x0, x1 = _inputs()
    loss(x0.requires_grad_(True), x1).backward()
    assert loss.learned_kappa is not None and loss.learned_kappa.logit.grad is not None


def test_separate_kernel_kappa_gets_the_leave_one_out_likelihood_gradient() -> None:
    x0, x1 = _inputs(n=10, d=5, seed=3)
    loss = ERNegativeCosineSimilarity(
        kappa=6.0,
        estimator=EntropyEstimator(density_kappa=3.0, learn_kappa=True),
        prediction="x0",
    )
    p = x0.clone().requires_grad_(True)
    value = loss(p, x1)
    value.backward()
    assert loss.learned_density_kappa is not None and loss.learned_kappa is not None
    z = normalize(x0, dim=1)

    def loo(k: float) -> float:
        relative = relative_sphere_entropy(z, k, "joe", leave_one_out=True)
        return float(relative) - float(log_vmf_normalizer(5, k))

    h = 1e-5
    expected = (loo(3.0 + h) - loo(3.0 - h)) / (2 * h) / loss.loss_scale
    expected *= _dkappa_dlogit(loss.learned_density_kappa)
    got = float(loss.learned_density_kappa.logit.grad)  # type: ignore[arg-type]
    assert got == pytest.approx(expected, rel=1e-6)

    # The reconstruction kappa: the derivative of the loss at fixed kernel kappa.
    def fixed(k: float) -> float:
        other = ERNegativeCosineSimilarity(
            kappa=k, estimator=EntropyEstimator(density_kappa=3.0), prediction="x0"
        )
        return float(other(x0.clone(), x1)) * k / 6.0

    expected = (fixed(6.0 + h) - fixed(6.0 - h)) / (2 * h)
    expected *= _dkappa_dlogit(loss.learned_kappa)
    got = float(loss.learned_kappa.logit.grad)  # type: ignore[arg-type]
    assert got == pytest.approx(expected, rel=1e-6)
    # The value is the ER loss: the likelihood term adds 0.
    fixed_value = ERNegativeCosineSimilarity(
        kappa=6.0, estimator=EntropyEstimator(density_kappa=3.0), prediction="x0"
    )(x0.clone().requires_grad_(True), x1)
    assert float(value) == pytest.approx(float(fixed_value), rel=1e-12)


def test_separate_fixed_kernel_kappa_uses_both_constants() -> None:
    # With two kappas the constants no longer cancel: entropy and reconstruction
    # each carry their own log C_d.
    x0, x1 = _inputs(n=8, d=4, seed=4)
    loss = ERLoss(kappa=5.0, estimator=EntropyEstimator(density_kappa=2.0))
    components = loss.forward_components(x0, x1)
    z0, z1 = normalize(x0, dim=1), normalize(x1, dim=1)
    from lightly_er.functional import sphere_entropy, vmf_reconstruction

    entropy = 0.5 * (sphere_entropy(z0, 2.0) + sphere_entropy(z1, 2.0))
    reconstruction = vmf_reconstruction(z1, z0, 5.0)
    torch.testing.assert_close(components.entropy, entropy)
    torch.testing.assert_close(components.reconstruction, reconstruction)
    torch.testing.assert_close(components.loss, -(entropy + reconstruction))


def test_kappa_stays_inside_its_bounds() -> None:
    module = LearnableKappa(10.0, (1.0, 100.0))
    assert float(module()) == pytest.approx(10.0, rel=1e-14)
    for logit in (-1e3, -30.0, 0.0, 30.0, 1e3):
        with torch.no_grad():
            module.logit.fill_(logit)
        value = float(module())
        # Inside the bounds up to the rounding of exp(log(...)).
        assert 1.0 * (1 - 1e-14) <= value <= 100.0 * (1 + 1e-14)
    # The default bounds: two decades either side.
    assert kappa_range(4.0) == (0.04, 400.0)
    with pytest.raises(ValueError, match="strictly inside"):
        kappa_range(4.0, (5.0, 10.0))
    with pytest.raises(TypeError, match="pair"):
        kappa_range(4.0, (1.0,))
    with pytest.raises(ValueError, match="kappa_bounds"):
        ERNegativeCosineSimilarity(
            estimator=EntropyEstimator(learn_kappa=True, kappa_bounds=(0.0, 20.0)),
            prediction="x0",
        )


def _step(loss: nn.Module, lr: float = 0.5) -> None:
    optimizer = torch.optim.SGD(loss.parameters(), lr=lr)
    x0, x1 = _inputs()
    loss(x0.requires_grad_(True), x1).backward()
    optimizer.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ERNegativeCosineSimilarity(
            estimator=EntropyEstimator(learn_kappa=True), prediction="x0"
        ),
        lambda: ERNTXentLoss(0.5, estimator=EntropyEstimator(learn_kappa=True)),
        lambda: ERLoss(kappa=3.0, estimator=EntropyEstimator(learn_kappa=True)),
        lambda: ERLoss(
            kappa=3.0, estimator=EntropyEstimator(density_kappa=2.0, learn_kappa=True)
        ),
    ],
)
def test_the_resolver_reports_the_current_value(make: Callable[[], Any]) -> None:
    loss = make()
    before = loss.density_kappa
    _step(loss)
    after = loss.density_kappa
    assert after != before
    settings = entropy_settings(loss)
    assert settings is not None and settings["kappa"] == after
    assert EntropyMeter.for_loss(loss).effective_kappa == after
    assert "learned_kappa.logit" in loss.state_dict()


def test_a_learned_kappa_cannot_be_set_and_a_fixed_one_can() -> None:
    loss = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(learn_kappa=True), prediction="x0"
    )
    with pytest.raises(AttributeError, match="learned"):
        loss.kappa = 3.0
    fixed = ERNegativeCosineSimilarity(prediction="x0")
    fixed.kappa = 3.0
    assert fixed.kappa == 3.0 and entropy_settings(fixed)["kappa"] == 3.0  # type: ignore[index]
    assert list(fixed.parameters()) == []


def test_kappa_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="learn_kappa"):
        ERLoss(estimator=EntropyEstimator(learn_kappa=1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="density_kappa"):
        ERLoss(estimator=EntropyEstimator(density_kappa=-1.0))
    with pytest.raises(ValueError, match="has no kernel"):
        ERLoss(estimator=EntropyEstimator(density_kappa=2.0, name="knn"))
