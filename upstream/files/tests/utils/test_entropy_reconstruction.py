import math

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.nn.functional import normalize

from lightly.utils import entropy_reconstruction as er
from lightly.utils.entropy_reconstruction import _special


def _reference_log_vmf_normalizer(dim: int, kappa: float) -> float:
    """Closed forms of log C_d(kappa) (Mardia & Jupp, Section 9.3)."""
    if dim == 1:
        # S^0 = {-1, +1} with the counting measure.
        return -math.log(2.0 * math.cosh(kappa))
    if dim == 2:
        return -math.log(2.0 * math.pi * float(np.i0(kappa)))
    if dim == 3:
        return math.log(kappa) - math.log(4.0 * math.pi * math.sinh(kappa))
    if dim == 5:
        # I_{3/2}(x) = sqrt(2 / (pi x)) (cosh(x) - sinh(x) / x)
        bessel = math.sqrt(2.0 / (math.pi * kappa)) * (
            math.cosh(kappa) - math.sinh(kappa) / kappa
        )
        return 1.5 * math.log(kappa) - 2.5 * math.log(2.0 * math.pi) - math.log(bessel)
    raise NotImplementedError(dim)


def _reference_log_density(z: Tensor, support: Tensor, kappa: float) -> Tensor:
    """log p(z_i) of the vMF kernel-density estimate, one sample at a time."""
    log_norm = _reference_log_vmf_normalizer(z.shape[1], kappa)
    values = []
    for i in range(z.shape[0]):
        terms = [kappa * float(z[i] @ support[j]) for j in range(support.shape[0])]
        values.append(
            log_norm + float(np.logaddexp.reduce(terms)) - math.log(len(terms))
        )
    return torch.tensor(values, dtype=torch.float64)


def _reference_sphere_entropy(z: Tensor, kappa: float, support: Tensor) -> float:
    """The plug-in estimate: the entropy of the kernel density on the samples."""
    log_density = _reference_log_density(z, support, kappa)
    weights = torch.softmax(log_density, dim=0)
    return float(-(weights * log_density).sum())


def _autograd_sphere_entropy(z: Tensor, kappa: Tensor, support: Tensor) -> Tensor:
    """The plug-in estimate + log C_d(kappa) by plain autograd (no custom backward)."""
    log_density = torch.logsumexp(kappa * z @ support.T, dim=1) - math.log(
        support.shape[0]
    )
    weights = torch.softmax(log_density, dim=0)
    return -(weights * log_density).sum()


def _unit_rows(n: int, dim: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return normalize(
        torch.randn(n, dim, generator=generator, dtype=torch.float64), dim=1
    )


class TestLogVMFNormalizer:
    @pytest.mark.parametrize("dim", [1, 2, 3, 5])
    @pytest.mark.parametrize("kappa", [0.01, 1.0, 10.0, 50.0])
    def test_closed_forms(self, dim: int, kappa: float) -> None:
        value = er.log_vmf_normalizer(dim, torch.tensor(kappa, dtype=torch.float64))
        expected = _reference_log_vmf_normalizer(dim, kappa)
        assert value.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)

    def test_gradient_is_minus_the_bessel_ratio(self) -> None:
        # d/dkappa log C_3(kappa) = 1 / kappa - coth(kappa)
        kappa = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
        er.log_vmf_normalizer(3, kappa).backward()
        assert kappa.grad is not None
        expected = 1.0 / 2.5 - 1.0 / math.tanh(2.5)
        assert kappa.grad.item() == pytest.approx(expected, rel=1e-10)

    def test_large_dimension_is_finite(self) -> None:
        value = er.log_vmf_normalizer(65536, 10.0)
        assert torch.isfinite(value)

    @pytest.mark.parametrize("kappa", [-1.0, 0.0, float("nan")])
    def test_invalid_kappa_raises(self, kappa: float) -> None:
        with pytest.raises(ValueError, match="kappa"):
            er.log_vmf_normalizer(3, kappa)

    def test_constant_is_marked_for_torch_compile(self) -> None:
        # What torch.compiler.assume_constant_result sets, without importing dynamo.
        assert getattr(
            _special.log_vmf_normalizer_constant, "_dynamo_marked_constant", False
        )


class TestSphereEntropy:
    @pytest.mark.parametrize("dim", [3, 5])
    @pytest.mark.parametrize("kappa", [1.0, 10.0])
    def test_equal_to_reference(self, dim: int, kappa: float) -> None:
        z = _unit_rows(n=12, dim=dim, seed=0)
        value = er.sphere_entropy(z, kappa=kappa)
        expected = _reference_sphere_entropy(z, kappa, support=z)
        assert value.item() == pytest.approx(expected, rel=1e-10)

    @pytest.mark.parametrize("with_bank", [False, True])
    def test_gradients_equal_to_autograd(self, with_bank: bool) -> None:
        # The fused backward against autograd through logsumexp: the gradients of
        # the rows, of the bank's rows and of a tensor kappa. The constant
        # log C_d(kappa) is added to both, so its gradient is left out of the sum.
        z = _unit_rows(n=9, dim=4, seed=6).requires_grad_(True)
        bank = _unit_rows(n=5, dim=4, seed=7).requires_grad_(True)
        kappa = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
        extra = bank if with_bank else None
        value = er.sphere_entropy(z, kappa, extra_support=extra)
        inputs = [z, kappa] + ([bank] if with_bank else [])
        grads = torch.autograd.grad(value, inputs)
        support = torch.cat([z, bank]) if with_bank else z
        log_norm = er.log_vmf_normalizer(4, kappa)
        expected_value = _autograd_sphere_entropy(z, kappa, support) - log_norm
        expected = torch.autograd.grad(expected_value, inputs)
        assert value.item() == pytest.approx(expected_value.item(), rel=1e-10)
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)

    def test_extra_support(self) -> None:
        z = _unit_rows(n=8, dim=3, seed=1)
        bank = _unit_rows(n=5, dim=3, seed=2)
        value = er.sphere_entropy(z, kappa=4.0, extra_support=bank)
        expected = _reference_sphere_entropy(z, 4.0, support=torch.cat([z, bank]))
        assert value.item() == pytest.approx(expected, rel=1e-10)

    def test_bounds(self) -> None:
        # A collapsed batch gives the minimum; kernels that do not overlap add log N.
        n, kappa = 16, 10.0
        minimum = er.min_sphere_entropy(3, kappa)
        collapsed = normalize(torch.ones(n, 3, dtype=torch.float64), dim=1)
        assert er.sphere_entropy(collapsed, kappa).item() == pytest.approx(minimum)
        spread = _unit_rows(n=n, dim=3, seed=3)
        gap = er.sphere_entropy(spread, kappa).item() - minimum
        assert 0.0 < gap <= math.log(n) + 1e-9

    def test_not_normalized_raises(self) -> None:
        with pytest.raises(ValueError, match="unit-norm"):
            er.sphere_entropy(2.0 * _unit_rows(n=4, dim=3, seed=0), kappa=1.0)


class TestVMFReconstruction:
    def test_equal_to_reference(self) -> None:
        target = _unit_rows(n=10, dim=3, seed=4)
        pred = _unit_rows(n=10, dim=3, seed=5)
        value = er.vmf_reconstruction(target, pred, kappa=3.0)
        cosine = sum(float(target[i] @ pred[i]) for i in range(10)) / 10
        expected = _reference_log_vmf_normalizer(3, 3.0) + 3.0 * cosine
        assert value.item() == pytest.approx(expected, rel=1e-12)


class TestDiscrete:
    def test_entropy_equal_to_reference(self) -> None:
        generator = torch.Generator().manual_seed(0)
        p = torch.softmax(torch.randn(7, 5, generator=generator), dim=1).double()
        mean = p.mean(dim=0)
        expected = -sum(float(m) * math.log(float(m)) for m in mean)
        assert er.discrete_entropy(p).item() == pytest.approx(expected, rel=1e-12)

    def test_entropy_of_uniform_and_collapsed_batches(self) -> None:
        uniform = torch.eye(4, dtype=torch.float64)
        collapsed = torch.zeros(4, 4, dtype=torch.float64)
        collapsed[:, 0] = 1.0
        assert er.discrete_entropy(uniform).item() == pytest.approx(math.log(4))
        assert er.discrete_entropy(collapsed).item() == 0.0

    def test_reconstruction_equal_to_reference(self) -> None:
        generator = torch.Generator().manual_seed(1)
        target = torch.softmax(torch.randn(6, 4, generator=generator), dim=1).double()
        logits = torch.randn(6, 4, generator=generator, dtype=torch.float64)
        log_pred = torch.log_softmax(logits, dim=1)
        expected = float((target * log_pred).sum() / 6)
        value = er.discrete_reconstruction(target, log_pred, log_input=True)
        assert value.item() == pytest.approx(expected, rel=1e-12)
