"""The sphere entropy estimators of lightly_er.functional against what they equal.

Every estimator (plug-in, Joe, Renyi-2, Kozachenko-Leonenko, log-determinant) is held
to a closed form on distributions whose entropy is known (the uniform distribution on
S^{d-1}, whose entropy is log |S^{d-1}|; a vMF of known kappa), converging as N grows,
to an independent float64 numpy/scipy computation on fixed inputs, to gradcheck in
float64, and to torch.compile. The references are written here from the formulas.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pytest
import torch
import torch._dynamo as dynamo
from lightly.loss import KoLeoLoss
from scipy.integrate import quad
from scipy.special import digamma, gammaln, ive, logsumexp
from scipy.stats import vonmises_fisher
from torch import Tensor
from torch.nn.functional import normalize

from lightly_er.functional import (
    knn_sphere_entropy,
    log_sphere_area,
    log_vmf_normalizer,
    logdet_sphere_entropy,
    sphere_entropy,
    uniformity,
)
from lightly_er.functional._sphere import relative_sphere_entropy
from lightly_er.monitoring import EntropyMeter
from lightly_er.utils import SPHERE_ESTIMATORS

F64 = torch.float64
ALL = ("plugin", "joe", "renyi2", "knn", "logdet")


# --------------------------------------------------------------------------------------
# Independent references (numpy / scipy, float64).
# --------------------------------------------------------------------------------------
def _np_log_c(dim: int, kappa: float) -> float:
    nu = dim / 2 - 1
    return (
        nu * math.log(kappa)
        - dim / 2 * math.log(2 * math.pi)
        - (math.log(ive(nu, kappa)) + kappa)
    )


def _np_log_area(dim: int) -> float:
    return math.log(2.0) + dim / 2 * math.log(math.pi) - float(gammaln(dim / 2))


def _np_mean_resultant(dim: int, kappa: float) -> float:
    return float(ive(dim / 2, kappa) / ive(dim / 2 - 1, kappa))


def _np_vmf_entropy(dim: int, kappa: float) -> float:
    return -_np_log_c(dim, kappa) - kappa * _np_mean_resultant(dim, kappa)


def _np_knn(
    z: np.ndarray, k: int = 1, extra: Optional[np.ndarray] = None, eps: float = 1e-8
) -> float:
    n, dim = z.shape
    ref = z if extra is None else np.concatenate([z, extra])
    distances = np.sqrt(((z[:, None, :] - ref[None, :, :]) ** 2).sum(-1) + eps**2)
    distances[np.arange(n), np.arange(n)] = np.inf
    kth = np.sort(distances, axis=1)[:, k - 1]
    m = dim - 1
    log_ball = m / 2 * math.log(math.pi) - gammaln(m / 2 + 1)
    return float(
        digamma(ref.shape[0]) - digamma(k) + log_ball + m * np.mean(np.log(kth))
    )


def _np_renyi2(
    z: np.ndarray,
    kappa: float,
    leave_one_out: bool,
    extra: Optional[np.ndarray] = None,
) -> float:
    n, dim = z.shape
    ref = z if extra is None else np.concatenate([z, extra])
    logits = kappa * z @ ref.T
    count = ref.shape[0]
    if leave_one_out:
        logits[np.arange(n), np.arange(n)] = -np.inf
        count -= 1
    log_p = _np_log_c(dim, kappa) + logsumexp(logits, axis=1) - math.log(count)
    return float(-(logsumexp(log_p) - math.log(n)))


def _np_logdet(z: np.ndarray, eps: float, extra: Optional[np.ndarray] = None) -> float:
    rows = z if extra is None else np.concatenate([z, extra])
    dim = rows.shape[1]
    covariance = np.cov(rows, rowvar=False, ddof=1).reshape(dim, dim)
    sign, logdet = np.linalg.slogdet(dim * covariance + eps * np.eye(dim))
    assert sign > 0
    return _np_log_area(dim) + 0.5 * logdet


def _uniform(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _vmf(n: int, dim: int, kappa: float, seed: int) -> np.ndarray:
    mu = np.zeros(dim)
    mu[0] = 1.0
    return vonmises_fisher(mu, kappa).rvs(n, random_state=seed)


def _rows(n: int, dim: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.randn(n, dim, generator=g, dtype=F64), dim=1)


def _estimate(z: np.ndarray, estimator: str, kappa: float = 1.0, **kw: Any) -> float:
    return float(
        sphere_entropy(torch.from_numpy(z), kappa, estimator, **kw)  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------------
# Closed forms and convergence.
# --------------------------------------------------------------------------------------
def test_log_sphere_area_closed_forms() -> None:
    assert log_sphere_area(1) == pytest.approx(math.log(2.0), abs=1e-14)
    assert log_sphere_area(2) == pytest.approx(math.log(2 * math.pi), abs=1e-14)
    assert log_sphere_area(3) == pytest.approx(math.log(4 * math.pi), abs=1e-14)
    for dim in (4, 17, 256, 65536):
        assert log_sphere_area(dim) == pytest.approx(_np_log_area(dim), rel=1e-13)


def test_knn_is_unbiased_for_the_uniform_distribution_on_s2() -> None:
    # On S^2 a chordal ball of radius r is a cap of area pi r^2 (Archimedes): the
    # estimator's ball volume is exact, so E[H] = log(4 pi) at every N.
    for n in (8, 64):
        values = [_estimate(_uniform(n, 3, seed), "knn") for seed in range(400)]
        mean, se = np.mean(values), np.std(values, ddof=1) / math.sqrt(len(values))
        assert abs(mean - math.log(4 * math.pi)) < 4 * se, (n, mean, se)


@pytest.mark.parametrize(("dim", "bound"), [(8, 0.15), (16, 0.8)])
def test_knn_converges_to_the_uniform_entropy(dim: int, bound: float) -> None:
    exact = log_sphere_area(dim)
    errors = {
        n: np.mean([_estimate(_uniform(n, dim, s), "knn") - exact for s in range(4)])
        for n in (64, 512, 4096)
    }
    # Above S^2 the cap is smaller than the ball: biased upwards, shrinking with N
    # (measured d = 8: 0.28, 0.22, 0.09; d = 16: 1.30, 0.99, 0.70).
    assert errors[64] > errors[512] > errors[4096] > 0
    assert errors[4096] < bound


def test_knn_converges_to_the_vmf_entropy() -> None:
    exact = _np_vmf_entropy(3, 4.0)
    assert exact == pytest.approx(1.45, abs=0.01)  # -log(4 / (4 pi sinh 4)) - 4 A
    errors = [
        np.mean([abs(_estimate(_vmf(n, 3, 4.0, s), "knn") - exact) for s in range(6)])
        for n in (64, 4096)
    ]
    # Mean absolute error over seeds (measured: about 0.1 and 0.02).
    assert errors[1] < 0.03 and errors[1] < errors[0] / 2, errors


def test_renyi2_converges_to_the_uniform_entropy() -> None:
    # The uniform density is its own kernel smoothing: the limit is log |S| at any
    # kappa, and exp(-H) is unbiased with leave-one-out (a U-statistic).
    exact = log_sphere_area(5)
    for leave_one_out in (False, True):
        errors = [
            abs(
                np.mean(
                    [
                        _estimate(
                            _uniform(n, 5, s),
                            "renyi2",
                            3.0,
                            leave_one_out=leave_one_out,
                        )
                        for s in range(4)
                    ]
                )
                - exact
            )
            for n in (64, 4096)
        ]
        assert errors[1] < 0.01 and errors[1] < errors[0], (leave_one_out, errors)


def test_renyi2_converges_to_its_vmf_limit() -> None:
    kappa_data, kernel = 4.0, 6.0

    def exact_limit() -> float:
        # Direct quadrature without factoring, as a cross-check of the helper.
        def f(t: float) -> float:
            r = math.sqrt(kappa_data**2 + kernel**2 + 2 * kappa_data * kernel * t)
            return (
                2 * math.pi * math.exp(kappa_data * t) * 4 * math.pi * math.sinh(r) / r
            )

        value, _ = quad(f, -1.0, 1.0, epsrel=1e-12)
        return -(_np_log_c(3, kernel) + 2 * _np_log_c(3, kappa_data) + math.log(value))

    exact = exact_limit()
    # With kernel -> infinity the limit is the Renyi-2 entropy of the vMF itself,
    # -2 log C(k) + log C(2 k); at a finite kernel it lies above it.
    closed = -2 * _np_log_c(3, kappa_data) + _np_log_c(3, 2 * kappa_data)
    assert exact > closed
    errors = [
        abs(
            np.mean(
                [
                    _estimate(
                        _vmf(n, 3, kappa_data, s), "renyi2", kernel, leave_one_out=True
                    )
                    for s in range(4)
                ]
            )
            - exact
        )
        for n in (64, 4096)
    ]
    assert errors[1] < 0.01 and errors[1] < errors[0], errors


def test_logdet_converges_to_its_closed_forms() -> None:
    eps = 0.05
    # Uniform: Sigma = I / d, so log |S| + d/2 log(1 + eps).
    dim = 6
    exact = log_sphere_area(dim) + dim / 2 * math.log1p(eps)
    errors = [
        abs(
            np.mean([_estimate(_uniform(n, dim, s), "logdet") for s in range(4)])
            - exact
        )
        for n in (64, 8192)
    ]
    assert errors[1] < 0.01 and errors[1] < errors[0]
    # vMF: E[x x^T] = A/k I + (1 - d A/k) mu mu^T, E[x] = A mu.
    kappa = 5.0
    a = _np_mean_resultant(dim, kappa)
    mu = np.zeros(dim)
    mu[0] = 1.0
    second = a / kappa * np.eye(dim) + (1 - dim * a / kappa) * np.outer(mu, mu)
    covariance = second - a**2 * np.outer(mu, mu)
    exact_vmf = (
        log_sphere_area(dim)
        + 0.5 * np.linalg.slogdet(dim * covariance + eps * np.eye(dim))[1]
    )
    estimate = np.mean(
        [_estimate(_vmf(8192, dim, kappa, s), "logdet") for s in range(4)]
    )
    assert estimate == pytest.approx(exact_vmf, abs=0.01)
    # Without the ridge, the uniform distribution's entropy is reached exactly.
    z = torch.from_numpy(_uniform(20000, dim, 0))
    assert float(logdet_sphere_entropy(z, eps=1e-9)) == pytest.approx(
        log_sphere_area(dim), abs=0.01
    )


@pytest.mark.parametrize("estimator", ("plugin", "joe"))
def test_kernel_estimators_still_converge(estimator: str) -> None:
    # The fused kernel keeps the documented limits of the kernel estimators
    # (tests/test_functional.py holds them to numpy in detail).
    exact = math.log(4 * math.pi)
    z = _uniform(4000, 3, 0)
    kernel = 4000 ** (1 / 3)
    value = _estimate(z, estimator, kernel, leave_one_out=True)
    assert value == pytest.approx(exact, abs=0.05)


# --------------------------------------------------------------------------------------
# Independent computations on fixed inputs.
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "dim", "k"), [(7, 3, 1), (20, 5, 1), (20, 5, 3), (9, 32, 2)]
)
def test_knn_matches_numpy(n: int, dim: int, k: int) -> None:
    z = _rows(n, dim, seed=n + dim)
    extra = _rows(4, dim, seed=99)
    assert float(knn_sphere_entropy(z, k=k)) == pytest.approx(
        _np_knn(z.numpy(), k), rel=1e-12, abs=1e-12
    )
    assert float(knn_sphere_entropy(z, k=k, extra_support=extra)) == pytest.approx(
        _np_knn(z.numpy(), k, extra.numpy()), rel=1e-12, abs=1e-12
    )
    if k == 1:
        assert float(sphere_entropy(z, 1.0, "knn")) == pytest.approx(
            _np_knn(z.numpy()), rel=1e-12, abs=1e-12
        )


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize(
    ("n", "dim", "kappa"), [(8, 3, 0.7), (30, 16, 10.0), (5, 64, 60.0)]
)
def test_renyi2_matches_numpy(
    n: int, dim: int, kappa: float, leave_one_out: bool
) -> None:
    z = _rows(n, dim, seed=n)
    extra = _rows(6, dim, seed=7)
    got = sphere_entropy(z, kappa, "renyi2", leave_one_out=leave_one_out)
    assert float(got) == pytest.approx(
        _np_renyi2(z.numpy(), kappa, leave_one_out), rel=1e-11, abs=1e-11
    )
    got = sphere_entropy(z, kappa, "renyi2", leave_one_out, extra_support=extra)
    assert float(got) == pytest.approx(
        _np_renyi2(z.numpy(), kappa, leave_one_out, extra.numpy()), rel=1e-11, abs=1e-11
    )


@pytest.mark.parametrize(("n", "dim"), [(8, 3), (5, 16), (40, 6), (1, 4)])
@pytest.mark.parametrize("eps", [0.05, 1e-3])
def test_logdet_matches_numpy(n: int, dim: int, eps: float) -> None:
    # N < d (the N x N Gram matrix is factorized) and N > d (the d x d one).
    z = _rows(n, dim, seed=n * dim)
    extra = _rows(3, dim, seed=5)
    if n > 1:
        assert float(logdet_sphere_entropy(z, eps=eps)) == pytest.approx(
            _np_logdet(z.numpy(), eps), rel=1e-11, abs=1e-10
        )
    else:
        # One row: the covariance is 0.
        assert float(logdet_sphere_entropy(z, eps=eps)) == pytest.approx(
            log_sphere_area(dim) + dim / 2 * math.log(eps), rel=1e-12
        )
    assert float(
        logdet_sphere_entropy(z, eps=eps, extra_support=extra)
    ) == pytest.approx(_np_logdet(z.numpy(), eps, extra.numpy()), rel=1e-11, abs=1e-10)


def test_renyi2_with_leave_one_out_is_minus_uniformity() -> None:
    # Wang & Isola's uniformity at t is log mean_{i<j} exp(-t ||z_i - z_j||^2)
    # = log mean_{i != j} exp(2 t cos_ij) - 2 t: the Renyi-2 estimate at kappa = 2 t.
    z = _rows(40, 12, seed=3)
    for t in (0.5, 2.0):
        kappa = 2 * t
        expected = (
            -float(log_vmf_normalizer(12, kappa)) - kappa - float(uniformity(z, t))
        )
        got = sphere_entropy(z, kappa, "renyi2", leave_one_out=True)
        assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_knn_is_koleo_up_to_scale_and_constant() -> None:
    # KoLeo (DINOv2) is -mean_i log r_i: H_knn = -(d - 1) KoLeo + constant.
    dim = 24
    constants = []
    for seed in range(3):
        z = _rows(50, dim, seed=seed)
        koleo = float(KoLeoLoss()(z))
        constants.append(float(knn_sphere_entropy(z)) + (dim - 1) * koleo)
    assert max(constants) - min(constants) < 1e-5
    m = dim - 1
    expected = digamma(50) - digamma(1) + m / 2 * math.log(math.pi) - gammaln(m / 2 + 1)
    assert constants[0] == pytest.approx(expected, abs=1e-5)


def test_the_estimators_order_as_theory_says() -> None:
    # H_2 <= H for the same density: the Renyi-2 estimate is below Joe's
    # (Jensen: -log mean p <= -mean log p) on the same kernel.
    for seed in range(5):
        z = _rows(64, 8, seed=seed)
        for kappa in (1.0, 10.0):
            assert float(sphere_entropy(z, kappa, "renyi2")) <= float(
                sphere_entropy(z, kappa, "joe")
            )


@pytest.mark.parametrize("estimator", ALL)
def test_relative_form_adds_the_constant_once(estimator: str) -> None:
    z = _rows(16, 9, seed=1)
    for kappa in (2.0, torch.tensor(2.0, dtype=F64)):
        relative = relative_sphere_entropy(z, kappa, estimator)  # type: ignore[arg-type]
        full = sphere_entropy(z, kappa, estimator)  # type: ignore[arg-type]
        torch.testing.assert_close(
            relative - log_vmf_normalizer(9, 2.0), full, rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("estimator", ALL)
def test_masked_extra_support_equals_the_filled_rows(estimator: str) -> None:
    # An entropy memory that is not full marks its empty slots: the estimate equals
    # the one with the filled rows only.
    z = _rows(10, 6, seed=2)
    extra = _rows(8, 6, seed=3)
    valid = torch.tensor([True, False, True, True, False, False, True, True])
    masked = relative_sphere_entropy(
        z,
        3.0,
        estimator,
        extra_support=extra,
        extra_valid=valid,  # type: ignore[arg-type]
    )
    filled = relative_sphere_entropy(z, 3.0, estimator, extra_support=extra[valid])  # type: ignore[arg-type]
    torch.testing.assert_close(masked, filled, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("estimator", ALL)
def test_float32_matches_float64(estimator: str) -> None:
    z = _rows(64, 32, seed=4)
    for kappa in (1.0, 10.0):
        a = sphere_entropy(z, kappa, estimator)  # type: ignore[arg-type]
        b = sphere_entropy(z.float(), kappa, estimator)  # type: ignore[arg-type]
        assert b.dtype == torch.float32
        assert float(b) == pytest.approx(float(a), rel=1e-4, abs=1e-3)


def test_every_estimator_is_listed_and_measured_by_the_meter() -> None:
    assert set(SPHERE_ESTIMATORS) == set(ALL)
    x = torch.randn(64, 16)
    for estimator in ALL:
        meter = EntropyMeter("sphere", kappa=5.0, estimator=estimator)  # type: ignore[arg-type]
        metrics = meter.update(x)
        assert metrics is not None
        expected = sphere_entropy(normalize(x, dim=1), 5.0, estimator)  # type: ignore[arg-type]
        assert metrics["entropy"] == pytest.approx(float(expected), rel=1e-5, abs=1e-4)


# --------------------------------------------------------------------------------------
# Gradients.
# --------------------------------------------------------------------------------------
def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ("plugin", "joe", "renyi2"))
def test_kernel_gradcheck_in_z_extra_and_kappa(
    estimator: str, leave_one_out: bool
) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=F64, requires_grad=True)
    e = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    kappa = torch.tensor(2.5, dtype=F64, requires_grad=True)

    def f(x: Tensor, e: Tensor, kappa: Tensor) -> Tensor:
        return sphere_entropy(
            _unit(x),
            kappa,
            estimator,
            leave_one_out,
            extra_support=_unit(e),  # type: ignore[arg-type]
        )

    assert torch.autograd.gradcheck(f, (x, e, kappa))


def test_knn_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, generator=g, dtype=F64, requires_grad=True)
    e = torch.randn(4, 5, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, e: knn_sphere_entropy(_unit(x), k=2, extra_support=_unit(e)), (x, e)
    )
    assert torch.autograd.gradcheck(
        lambda x: sphere_entropy(_unit(x), 1.0, "knn"), (x,)
    )


@pytest.mark.parametrize(("n", "dim"), [(5, 8), (9, 4)])
def test_logdet_gradcheck(n: int, dim: int) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, dim, generator=g, dtype=F64, requires_grad=True)
    e = torch.randn(3, dim, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, e: logdet_sphere_entropy(_unit(x), eps=0.1, extra_support=_unit(e)),
        (x, e),
    )


def test_masked_memory_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, generator=g, dtype=F64, requires_grad=True)
    e = _rows(4, 4, seed=9)
    valid = torch.tensor([True, False, True, False])
    for estimator in ALL:

        def f(x: Tensor, estimator: str = estimator) -> Tensor:
            return relative_sphere_entropy(
                _unit(x),
                2.0,
                estimator,  # type: ignore[arg-type]
                extra_support=e,
                extra_valid=valid,
            )

        assert torch.autograd.gradcheck(f, (x,)), estimator


# --------------------------------------------------------------------------------------
# torch.compile, bad input.
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ALL)
def test_compiles_as_one_graph_with_the_eager_value(estimator: str) -> None:
    z = _rows(12, 8, seed=5).float()

    def f(x: Tensor) -> Tensor:
        return sphere_entropy(normalize(x, dim=1), 4.0, estimator, validate=False)  # type: ignore[arg-type]

    dynamo.reset()
    explanation = dynamo.explain(f)(z.clone())
    assert explanation.graph_break_count == 0, explanation.break_reasons
    dynamo.reset()
    eager_x = z.clone().requires_grad_(True)
    compiled_x = z.clone().requires_grad_(True)
    eager = f(eager_x)
    eager.backward()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(compiled_x)
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    assert eager_x.grad is not None and compiled_x.grad is not None
    torch.testing.assert_close(compiled_x.grad, eager_x.grad, rtol=1e-4, atol=1e-6)


def test_bad_input_is_rejected() -> None:
    z = _rows(6, 4)
    with pytest.raises(ValueError, match="leave_one_out applies"):
        sphere_entropy(z, 1.0, "knn", leave_one_out=True)
    with pytest.raises(ValueError, match="leave_one_out applies"):
        sphere_entropy(z, 1.0, "logdet", leave_one_out=True)
    with pytest.raises(ValueError, match="dim >= 2"):
        sphere_entropy(torch.ones(4, 1, dtype=F64), 1.0, "knn")
    with pytest.raises(ValueError, match="second point"):
        sphere_entropy(z[:1], 1.0, "knn")
    with pytest.raises(ValueError, match="k must be <= 5"):
        knn_sphere_entropy(z, k=6)
    with pytest.raises(TypeError, match="k must be an int"):
        knn_sphere_entropy(z, k=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        logdet_sphere_entropy(z, eps=0.0)
    with pytest.raises(ValueError, match="unit-norm"):
        knn_sphere_entropy(2 * z)
    with pytest.raises(ValueError, match="estimator must be one of"):
        sphere_entropy(z, 1.0, "kde")  # type: ignore[arg-type]
    # knn on one sample works with a second point in the extra support.
    assert torch.isfinite(sphere_entropy(z[:1], 1.0, "knn", extra_support=z[1:2]))
