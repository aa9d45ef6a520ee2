"""ERKoLeoLoss: DINOv2's KoLeo as the Kozachenko-Leonenko entropy in nats.

With the knn estimator its gradient is KoLeo's and its value KoLeo's plus a constant;
its entropy is the functional estimate; other estimators and a 2-process gather work.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from lightly.loss import KoLeoLoss
from scipy.special import digamma, gammaln
from torch import Tensor
from torch.nn.functional import normalize

from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import knn_sphere_entropy, sphere_entropy
from lightly_er.loss import ERKoLeoLoss
from lightly_er.monitoring import entropy_settings
from tests.loss.dist_harness import run_distributed_and_single

F64 = torch.float64


def _features(n: int = 24, d: int = 16, seed: int = 0) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_knn_is_koleo_in_value_and_gradient() -> None:
    x = _features()
    grads, values = [], []
    for cls in (KoLeoLoss, ERKoLeoLoss):
        leaf = x.clone().requires_grad_(True)
        value = cls()(leaf)
        value.backward()
        values.append(float(value))
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-9)
    m = 15
    constant = digamma(24) - digamma(1) + m / 2 * math.log(math.pi) - gammaln(m / 2 + 1)
    assert values[1] == pytest.approx(values[0] - constant / m, rel=1e-6)


def test_entropy_is_the_functional_estimate() -> None:
    x = _features(seed=1)
    loss = ERKoLeoLoss()
    components = loss.forward_components(x)
    expected = knn_sphere_entropy(normalize(x, dim=1))
    torch.testing.assert_close(components.entropy, expected)
    assert float(components.reconstruction) == 0.0
    assert float(components.loss) == pytest.approx(-float(expected) / 15, rel=1e-12)
    for estimator in ("plugin", "renyi2", "logdet"):
        other = ERKoLeoLoss(kappa=5.0, estimator=EntropyEstimator(name=estimator))
        got = other.forward_components(x).entropy
        torch.testing.assert_close(
            got,
            sphere_entropy(normalize(x, dim=1), 5.0, estimator),  # type: ignore[arg-type]
        )
    assert entropy_settings(ERKoLeoLoss())["estimator"] == "knn"  # type: ignore[index]


def test_keeps_the_parents_signature_and_edges() -> None:
    for method in ("__init__", "forward"):
        parent = inspect.signature(getattr(KoLeoLoss, method)).parameters
        ours = inspect.signature(getattr(ERKoLeoLoss, method)).parameters
        assert list(ours)[: len(parent)] == list(parent)
    assert isinstance(ERKoLeoLoss(), KoLeoLoss)
    with pytest.raises(ValueError, match="p must be 2"):
        ERKoLeoLoss(p=1)
    # As the parent: one sample and one dimension are accepted.
    with pytest.warns(UserWarning, match="batch of 1"):
        assert torch.isfinite(ERKoLeoLoss()(torch.ones(1, 4)))
    assert torch.isfinite(ERKoLeoLoss()(torch.tensor([[1.0], [-1.0], [1.0]])))


def _koleo(gather_distributed: bool) -> ERKoLeoLoss:
    return ERKoLeoLoss(gather_distributed=gather_distributed)


def test_two_processes_equal_one() -> None:
    x = _features(n=16, d=8, seed=2).float()
    dist_loss, single_loss, dist_grads, single_grads = run_distributed_and_single(
        _koleo, [x]
    )
    torch.testing.assert_close(dist_loss, single_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dist_grads[0], single_grads[0], rtol=1e-5, atol=1e-6)
