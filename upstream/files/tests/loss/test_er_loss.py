import math
from typing import Tuple

import pytest
import torch
from torch import Tensor
from torch.nn.functional import normalize

from lightly.loss import ERComponents, ERLoss
from lightly.utils.entropy_reconstruction import log_vmf_normalizer


def _reference_sphere_entropy(z: Tensor, kappa: float) -> Tensor:
    """Plug-in entropy of the vMF kernel-density estimate, written out in float64."""
    n, dim = z.shape
    log_norm = log_vmf_normalizer(dim, torch.tensor(kappa, dtype=torch.float64))
    log_density = torch.stack(
        [
            log_norm + torch.logsumexp(kappa * (z @ z[i]), dim=0) - math.log(n)
            for i in range(n)
        ]
    )
    weights = torch.softmax(log_density, dim=0)
    return -(weights * log_density).sum()


def _reference_sphere(
    out0: Tensor, out1: Tensor, kappa: float, entropy_weight: float
) -> ERComponents:
    z0 = normalize(out0.double(), dim=1)
    z1 = normalize(out1.double(), dim=1)
    entropy = 0.5 * (
        _reference_sphere_entropy(z0, kappa) + _reference_sphere_entropy(z1, kappa)
    )
    log_norm = log_vmf_normalizer(z0.shape[1], torch.tensor(kappa).double())
    reconstruction = log_norm + kappa * (z0 * z1).sum(dim=1).mean()
    loss = -(entropy_weight * entropy + reconstruction)
    return ERComponents(loss, entropy, reconstruction)


def _reference_discrete(
    out0: Tensor, out1: Tensor, temperature: float, entropy_weight: float
) -> ERComponents:
    p0 = torch.softmax(out0.double() / temperature, dim=1)
    p1 = torch.softmax(out1.double() / temperature, dim=1)

    def entropy_of_mean(p: Tensor) -> Tensor:
        mean = p.mean(dim=0)
        return -(mean * mean.log()).sum()

    entropy = 0.5 * (entropy_of_mean(p0) + entropy_of_mean(p1))
    reconstruction = 0.5 * (
        (p1 * p0.log()).sum(dim=1).mean() + (p0 * p1.log()).sum(dim=1).mean()
    )
    loss = -(entropy_weight * entropy + reconstruction)
    return ERComponents(loss, entropy, reconstruction)


def _views(batch_size: int, dim: int, seed: int) -> Tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out0 = torch.randn(batch_size, dim, generator=generator, dtype=torch.float64)
    out1 = out0 + 0.3 * torch.randn(
        batch_size, dim, generator=generator, dtype=torch.float64
    )
    return out0, out1


class TestERLoss:
    @pytest.mark.parametrize("batch_size", [2, 8])
    @pytest.mark.parametrize("dim", [3, 16])
    @pytest.mark.parametrize("kappa", [1.0, 10.0])
    @pytest.mark.parametrize("entropy_weight", [0.0, 1.0, 2.0])
    def test_sphere_equal_to_reference(
        self, batch_size: int, dim: int, kappa: float, entropy_weight: float
    ) -> None:
        out0, out1 = _views(batch_size, dim, seed=batch_size + dim)
        criterion = ERLoss(kappa=kappa, entropy_weight=entropy_weight)
        components = criterion.forward_components(out0, out1)
        expected = _reference_sphere(out0, out1, kappa, entropy_weight)
        for value, reference in zip(components, expected):
            assert value.item() == pytest.approx(reference.item(), rel=1e-9)

    @pytest.mark.parametrize("temperature", [0.1, 1.0])
    @pytest.mark.parametrize("entropy_weight", [0.0, 1.0])
    def test_discrete_equal_to_reference(
        self, temperature: float, entropy_weight: float
    ) -> None:
        out0, out1 = _views(batch_size=8, dim=5, seed=0)
        criterion = ERLoss(
            support="discrete", temperature=temperature, entropy_weight=entropy_weight
        )
        loss = criterion(out0, out1)
        expected = _reference_discrete(out0, out1, temperature, entropy_weight)
        assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-9)

    def test_last_components_are_detached(self) -> None:
        out0, out1 = _views(batch_size=4, dim=3, seed=1)
        out0.requires_grad_(True)
        criterion = ERLoss()
        loss = criterion(out0, out1)
        loss.backward()
        assert criterion.last_components is not None
        assert not criterion.last_components.loss.requires_grad
        assert criterion.last_components.loss.item() == pytest.approx(loss.item())

    def test_invalid_arguments_raise(self) -> None:
        with pytest.raises(ValueError, match="support"):
            ERLoss(support="grid")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="kappa"):
            ERLoss(kappa=0.0)
        with pytest.raises(ValueError, match="entropy_weight"):
            ERLoss(entropy_weight=-1.0)
        with pytest.raises(ValueError, match="estimator"):
            ERLoss(estimator="histogram")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="temperature"):
            ERLoss(temperature=0.0)

    def test_different_shapes_raise(self) -> None:
        with pytest.raises(ValueError, match="same shape"):
            ERLoss()(torch.randn(4, 3), torch.randn(5, 3))
