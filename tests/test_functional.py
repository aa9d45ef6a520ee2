"""Tests of lightly_er.functional against independent references.

The references are arbitrary-precision mpmath values, closed forms, and float64
numpy/scipy re-computations of the documented formulas, written here from scratch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import mpmath
import numpy as np
import pytest
import torch
from scipy.linalg import svdvals
from scipy.special import entr, i0e, ive, logsumexp, softmax
from scipy.stats import vonmises_fisher
from torch import Tensor
from torch.nn.functional import normalize

from lightly_er.functional import (
    alignment,
    collapse_score,
    discrete_entropy,
    discrete_reconstruction,
    effective_rank,
    log_bessel_iv,
    log_vmf_normalizer,
    min_sphere_entropy,
    sphere_entropy,
    uniformity,
    vmf_reconstruction,
)

F64 = torch.float64
ESTIMATORS = ("joe", "plugin")

# --------------------------------------------------------------------------------------
# Independent references.
# --------------------------------------------------------------------------------------
# 41, 42 and 43 straddle the switch to the Debye expansion at order 20 (d = 42).
_SMALL_DIMS = (2, 3, 4, 5, 16, 31, 32, 41, 42, 43, 64, 65)
GRID_DIMS = _SMALL_DIMS + (128, 256, 512, 2048, 8192, 65536, 131072)
# Half-decade steps from 1e-3 to 1e5, both ends included.
GRID_KAPPAS = np.logspace(-3.0, 5.0, 17)


def _mp_besseli(order: float, x: float) -> mpmath.mpf:
    return mpmath.besseli(mpmath.mpf(order), mpmath.mpf(x), maxterms=10**7)


def _mp_log_vmf_normalizer(dim: int, kappa: float) -> mpmath.mpf:
    nu = mpmath.mpf(dim) / 2 - 1
    k = mpmath.mpf(kappa)
    return (
        nu * mpmath.log(k)
        - mpmath.mpf(dim) / 2 * mpmath.log(2 * mpmath.pi)
        - mpmath.log(_mp_besseli(nu, kappa))
    )


@pytest.fixture(scope="session")
def normalizer_reference() -> np.ndarray:
    """log C_d(kappa) on GRID_DIMS x GRID_KAPPAS at 30 digits (about 20 s, once)."""
    with mpmath.workdps(30):
        return np.array(
            [
                [float(_mp_log_vmf_normalizer(d, float(k))) for k in GRID_KAPPAS]
                for d in GRID_DIMS
            ]
        )


def _log_c3(kappa: np.ndarray) -> np.ndarray:
    """log C_3 = log k - log(4 pi sinh k), in a form stable for small and large k."""
    return np.log(kappa) - np.log(2 * np.pi) - kappa - np.log(-np.expm1(-2 * kappa))


def _np_log_vmf_normalizer(dim: int, kappa: float) -> float:
    """log C_d(kappa) with scipy's scaled Bessel function (for small d only)."""
    nu = dim / 2 - 1
    log_iv = math.log(ive(nu, kappa)) + kappa
    return nu * math.log(kappa) - dim / 2 * math.log(2 * math.pi) - log_iv


def _np_sphere_entropy(
    z: np.ndarray,
    kappa: float,
    log_norm: float,
    estimator: str,
    leave_one_out: bool,
    extra: np.ndarray | None = None,
) -> float:
    n = z.shape[0]
    support = z if extra is None else np.concatenate([z, extra])
    logits = kappa * (z @ support.T)
    count = support.shape[0]
    if leave_one_out:
        logits[np.arange(n), np.arange(n)] = -np.inf
        count -= 1
    log_p = log_norm + logsumexp(logits, axis=1) - math.log(count)
    if estimator == "joe":
        return float(-np.mean(log_p))
    return float(np.sum(softmax(log_p) * -log_p))


def _vmf_samples(n: int, dim: int, kappa: float, seed: int) -> np.ndarray:
    mu = np.zeros(dim)
    mu[-1] = 1.0
    return vonmises_fisher(mu, kappa).rvs(n, random_state=seed)


def _uniform_samples(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _unit_rows(n: int, dim: int, seed: int = 0, dtype: torch.dtype = F64) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return normalize(torch.randn(n, dim, generator=gen, dtype=F64), dim=1).to(dtype)


def _prob_rows(n: int, k: int, seed: int = 0, scale: float = 2.0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.randn(n, k, generator=gen, dtype=F64), dim=1)


# --------------------------------------------------------------------------------------
# log_vmf_normalizer and log_bessel_iv
# --------------------------------------------------------------------------------------
def test_log_vmf_normalizer_matches_mpmath_on_grid(
    normalizer_reference: np.ndarray,
) -> None:
    kappa = torch.tensor(GRID_KAPPAS, dtype=F64)
    got = np.stack([log_vmf_normalizer(d, kappa).numpy() for d in GRID_DIMS])
    rel = np.abs(got - normalizer_reference) / np.abs(normalizer_reference)
    i, j = np.unravel_index(np.argmax(rel), rel.shape)
    worst = rel[i, j]
    assert worst <= 1e-10, (
        f"max relative error {worst:.3e} at d={GRID_DIMS[i]}, "
        f"kappa={GRID_KAPPAS[j]:.6g}"
    )


def test_mpmath_reference_matches_closed_forms(
    normalizer_reference: np.ndarray,
) -> None:
    # Guards the reference itself: d = 2 and d = 3 have closed forms.
    d2 = -np.log(2 * np.pi) - (np.log(i0e(GRID_KAPPAS)) + GRID_KAPPAS)
    d3 = _log_c3(GRID_KAPPAS)
    np.testing.assert_allclose(normalizer_reference[GRID_DIMS.index(2)], d2, rtol=1e-13)
    np.testing.assert_allclose(normalizer_reference[GRID_DIMS.index(3)], d3, rtol=1e-13)


def test_log_vmf_normalizer_closed_form_d3() -> None:
    kappa = np.logspace(-3.0, 5.0, 33)
    got = log_vmf_normalizer(3, torch.tensor(kappa, dtype=F64)).numpy()
    np.testing.assert_allclose(got, _log_c3(kappa), rtol=1e-12)


def test_log_vmf_normalizer_closed_form_d2() -> None:
    kappa = np.logspace(-3.0, 5.0, 33)
    got = log_vmf_normalizer(2, torch.tensor(kappa, dtype=F64)).numpy()
    expected = -np.log(2 * np.pi) - (np.log(i0e(kappa)) + kappa)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_log_bessel_iv_has_no_reference_code_underflow() -> None:
    # The paper's reference code computes log(I_v(kappa) + 1e-7).
    got = log_bessel_iv(63.0, 10.0)
    with mpmath.workdps(30):
        reference = float(mpmath.log(_mp_besseli(63.0, 10.0)))
    assert got.dtype == F64
    assert got.item() == pytest.approx(reference, rel=1e-12)
    assert got.item() == pytest.approx(-99.2, abs=0.05)
    naive = math.log(math.exp(reference) + 1e-7)
    assert naive == pytest.approx(-16.1, abs=0.05)
    assert naive - got.item() > 80
    # The normalizer at d = 128, kappa = 10 uses exactly this order.
    naive_norm = 63 * math.log(10.0) - 64 * math.log(2 * math.pi) - naive
    assert log_vmf_normalizer(128, 10.0).item() - naive_norm > 80


# (128, 0.01), (2048, 0.01) and (131072, 1e-3) failed when the gradient was formed as
# nu/kappa - (I_{nu+1}/I_nu + nu/kappa), which cancels at small kappa and large d.
_GRADIENT_CASES = [
    *((d, k) for d in (3, 128, 2048) for k in (0.01, 1.0, 10.0, 1000.0)),
    (131072, 1e-3),
    (8192, 1e-3),
]


@pytest.mark.parametrize(("dim", "kappa"), _GRADIENT_CASES)
def test_log_vmf_normalizer_gradient_is_bessel_ratio(dim: int, kappa: float) -> None:
    kappa_tensor = torch.tensor(kappa, dtype=F64, requires_grad=True)
    log_vmf_normalizer(dim, kappa_tensor).backward()
    assert kappa_tensor.grad is not None
    with mpmath.workdps(30):
        nu = dim / 2 - 1
        expected = -float(_mp_besseli(nu + 1, kappa) / _mp_besseli(nu, kappa))
    assert kappa_tensor.grad.item() == pytest.approx(expected, rel=1e-9, abs=0)


@pytest.mark.parametrize("order", [0.0, 0.5, 2.5, 19.5, 20.0, 63.0, 1000.0])
def test_log_bessel_iv_gradient(order: float) -> None:
    values = [0.01, 1.0, 10.0, 1000.0]
    x = torch.tensor(values, dtype=F64, requires_grad=True)
    log_bessel_iv(order, x).sum().backward()
    assert x.grad is not None
    with mpmath.workdps(30):
        expected = [
            float(_mp_besseli(order + 1, v) / _mp_besseli(order, v) + order / v)
            for v in values
        ]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("dim", [2, 3, 41, 42, 128, 2048])
def test_log_vmf_normalizer_gradcheck(dim: int) -> None:
    kappa = torch.tensor([0.05, 0.7, 3.0, 40.0, 900.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: log_vmf_normalizer(dim, k), (kappa,))


@pytest.mark.parametrize("order", [0.0, 0.5, 3.0, 19.5, 20.0, 63.0, 1000.0])
def test_log_bessel_iv_gradcheck(order: float) -> None:
    x = torch.tensor([0.01, 0.3, 2.0, 25.0, 700.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: log_bessel_iv(order, v), (x,))


@pytest.mark.parametrize(
    "dim", [2, 3, 5, 16, 41, 42, 64, 128, 2048, 8192, 16384, 65536, 131072]
)
def test_log_vmf_normalizer_float32(dim: int) -> None:
    # A fine grid: where log C_d(kappa) crosses zero (d = 42 near kappa = 45), an
    # evaluation in float32 arithmetic would be off by up to 5e-5 relative.
    kappa = torch.tensor(np.logspace(-3.0, 5.0, 161), dtype=torch.float32)
    got = log_vmf_normalizer(dim, kappa)
    assert got.dtype == torch.float32
    expected = log_vmf_normalizer(dim, kappa.double())
    np.testing.assert_allclose(got.double().numpy(), expected.numpy(), rtol=1e-6)


def test_log_vmf_normalizer_keeps_shape_and_accepts_python_numbers() -> None:
    kappa = torch.tensor([[0.5, 2.0], [30.0, 400.0]], dtype=F64)
    got = log_vmf_normalizer(3, kappa)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got.numpy(), _log_c3(kappa.numpy()), rtol=1e-12)
    scalar = log_vmf_normalizer(3, 2)
    assert scalar.dtype == F64
    assert scalar.item() == pytest.approx(_log_c3(np.array(2.0)), rel=1e-12)


# --------------------------------------------------------------------------------------
# sphere_entropy
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("dim", "kappa"), [(3, 2.0), (10, 25.0)])
@pytest.mark.parametrize("sampler", ["vmf", "uniform"])
def test_sphere_entropy_matches_numpy(
    sampler: str, dim: int, kappa: float, estimator: str, leave_one_out: bool
) -> None:
    if sampler == "vmf":
        z = _vmf_samples(64, dim, 4.0, seed=dim)
    else:
        z = _uniform_samples(64, dim, seed=dim)
    expected = _np_sphere_entropy(
        z, kappa, _np_log_vmf_normalizer(dim, kappa), estimator, leave_one_out
    )
    got = sphere_entropy(torch.from_numpy(z), kappa, estimator, leave_one_out)
    assert got.dtype == F64
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_sphere_entropy_kappa_forms_agree() -> None:
    z = _unit_rows(20, 8)
    expected = sphere_entropy(z, 3.0)
    for kappa in (torch.tensor(3.0, dtype=F64), torch.tensor([3.0], dtype=F64)):
        assert sphere_entropy(z, kappa).item() == pytest.approx(
            expected.item(), rel=1e-14
        )


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_entropy_with_extra_support_matches_numpy(
    estimator: str, leave_one_out: bool
) -> None:
    dim, kappa = 10, 25.0
    z = _vmf_samples(30, dim, 4.0, seed=11)
    extra = _vmf_samples(50, dim, 2.0, seed=12)
    expected = _np_sphere_entropy(
        z, kappa, _np_log_vmf_normalizer(dim, kappa), estimator, leave_one_out, extra
    )
    got = sphere_entropy(
        torch.from_numpy(z),
        kappa,
        estimator,
        leave_one_out,
        extra_support=torch.from_numpy(extra),
    )
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    without = sphere_entropy(torch.from_numpy(z), kappa, estimator, leave_one_out)
    assert abs(got.item() - without.item()) > 0.1


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_entropy_extra_support_identities(estimator: str) -> None:
    z = _unit_rows(20, 6)
    expected = sphere_entropy(z, 7.0, estimator).item()
    # No extra centers.
    empty = sphere_entropy(z, 7.0, estimator, extra_support=z[:0])
    assert empty.item() == pytest.approx(expected, rel=1e-14)
    # A copy of every center doubles both the kernel sum and the count.
    doubled = sphere_entropy(z, 7.0, estimator, extra_support=z.clone())
    assert doubled.item() == pytest.approx(expected, rel=1e-12)


def test_sphere_entropy_gradcheck_in_extra_support() -> None:
    z = _unit_rows(5, 4)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(13), dtype=F64)
    x.requires_grad_(True)

    def entropy(v: Tensor) -> Tensor:
        return sphere_entropy(z, 2.0, "plugin", True, normalize(v, dim=1))

    assert torch.autograd.gradcheck(entropy, (x,))


def _mean_abs_entropy_error(
    sample: Callable[[int, int], np.ndarray],
    n: int,
    exact: float,
    estimator: str = "joe",
) -> float:
    kernel_kappa = 3.0 * n ** (1 / 3)  # bandwidth ~ n^(-1/6), KDE rate on S^2
    errors = [
        sphere_entropy(
            torch.from_numpy(sample(n, seed)),
            kernel_kappa,
            estimator,  # type: ignore[arg-type]
            leave_one_out=True,
        ).item()
        - exact
        for seed in range(3)
    ]
    return float(np.mean(np.abs(errors)))


def test_sphere_entropy_converges_to_vmf_entropy() -> None:
    kappa_data = 5.0
    mean_resultant = 1 / math.tanh(kappa_data) - 1 / kappa_data
    exact = float(-_log_c3(np.array(kappa_data)) - kappa_data * mean_resultant)
    assert exact == pytest.approx(1.2279397, abs=1e-6)

    def sample(n: int, seed: int) -> np.ndarray:
        return _vmf_samples(n, 3, kappa_data, seed)

    small = _mean_abs_entropy_error(sample, 100, exact)
    large = _mean_abs_entropy_error(sample, 4000, exact)
    # Measured: about 0.15 at N = 100 and 0.014 at N = 4000.
    assert large < 0.03
    assert large < small / 3
    # The plug-in estimator (the default, as the authors' code) weights dense points
    # more and is biased low on a vMF sample; measured 0.42 nats at N = 4000.
    plugin = _mean_abs_entropy_error(sample, 4000, exact, estimator="plugin")
    assert plugin > 0.2


def test_sphere_entropy_converges_to_uniform_entropy() -> None:
    exact = math.log(4 * math.pi)

    def sample(n: int, seed: int) -> np.ndarray:
        return _uniform_samples(n, 3, seed)

    small = _mean_abs_entropy_error(sample, 100, exact)
    large = _mean_abs_entropy_error(sample, 4000, exact)
    # Measured: about 0.06 at N = 100 and 0.0054 at N = 4000.
    assert large < 0.02
    assert large < small / 3


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("dim", "kappa"), [(3, 0.5), (3, 10.0), (128, 1000.0)])
def test_sphere_entropy_of_identical_points(
    dim: int, kappa: float, estimator: str, leave_one_out: bool
) -> None:
    z = _unit_rows(1, dim).expand(16, dim).contiguous()
    expected = -log_vmf_normalizer(dim, kappa).item() - kappa
    got = sphere_entropy(z, kappa, estimator, leave_one_out).item()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(
    ("dim", "kappa", "spread"), [(3, 2.0, 0.0), (16, 20.0, 5.0), (128, 300.0, 50.0)]
)
def test_sphere_entropy_bounds(
    dim: int, kappa: float, spread: float, estimator: str
) -> None:
    n = 50
    z = _uniform_samples(n, dim, 1) if spread == 0 else _vmf_samples(n, dim, spread, 1)
    z_tensor = torch.from_numpy(z)
    lower = -log_vmf_normalizer(dim, kappa).item() - kappa
    upper = lower + math.log(n)
    got = sphere_entropy(z_tensor, kappa, estimator).item()
    assert lower - 1e-9 <= got <= upper + 1e-9
    assert got > lower + 0.1  # the points are not identical
    # The lower bound also holds with leave-one-out.
    assert sphere_entropy(z_tensor, kappa, estimator, leave_one_out=True) >= lower


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_entropy_reaches_upper_bound_for_separated_points(
    estimator: str,
) -> None:
    # Random directions in d = 512 have |cos| < 0.3, so at kappa = 1000 the kernels
    # do not overlap and every log-density is log C + kappa - log N.
    n, dim, kappa = 40, 512, 1000.0
    upper = -log_vmf_normalizer(dim, kappa).item() - kappa + math.log(n)
    got = sphere_entropy(_unit_rows(n, dim), kappa, estimator).item()
    assert got == pytest.approx(upper, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_entropy_is_permutation_invariant(
    estimator: str, leave_one_out: bool
) -> None:
    z = torch.from_numpy(_vmf_samples(60, 8, 10.0, seed=3))
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(perm, torch.arange(60))
    expected = sphere_entropy(z, 15.0, estimator, leave_one_out).item()
    got = sphere_entropy(z[perm], 15.0, estimator, leave_one_out).item()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_entropy_is_rotation_invariant(
    estimator: str, leave_one_out: bool
) -> None:
    dim = 16
    z = torch.from_numpy(_vmf_samples(60, dim, 10.0, seed=4))
    gen = torch.Generator().manual_seed(1)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    rotated = z @ rotation
    assert (rotated - z).abs().max() > 0.1
    expected = sphere_entropy(z, 30.0, estimator, leave_one_out).item()
    got = sphere_entropy(rotated, 30.0, estimator, leave_one_out).item()
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("dim", "kappa"), [(3, 5.0), (128, 10.0), (4096, 1000.0)])
def test_sphere_entropy_float32_matches_float64(
    dim: int, kappa: float, estimator: str, leave_one_out: bool
) -> None:
    z = _unit_rows(100, dim)
    got = sphere_entropy(z.float(), kappa, estimator, leave_one_out)
    assert got.dtype == torch.float32
    expected = sphere_entropy(z, kappa, estimator, leave_one_out).item()
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_entropy_gradcheck_in_z(estimator: str, leave_one_out: bool) -> None:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    x.requires_grad_(True)

    def entropy(v: Tensor) -> Tensor:
        return sphere_entropy(normalize(v, dim=1), 3.0, estimator, leave_one_out)

    assert torch.autograd.gradcheck(entropy, (x,))


@pytest.mark.parametrize("leave_one_out", [False, True])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_entropy_gradcheck_in_kappa(estimator: str, leave_one_out: bool) -> None:
    z = _unit_rows(8, 5)
    for value in (0.3, 4.0, 60.0):
        kappa = torch.tensor(value, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda k: sphere_entropy(z, k, estimator, leave_one_out), (kappa,)
        )


def test_sphere_entropy_under_bfloat16_autocast() -> None:
    n, dim, kappa = 64, 4096, 100.0
    z = _unit_rows(n, dim, dtype=torch.float32)
    expected = sphere_entropy(z, kappa)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sphere_entropy(z, kappa)
    assert got.dtype == torch.float32
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    # H is about -11300 here, so rel 1e-4 is about a nat; with autocast left on,
    # the result comes out in bfloat16, about 14 nats off. Also require agreement to
    # about 10 float32 ulps.
    assert got.item() == pytest.approx(expected.item(), abs=0.01)


def test_sphere_entropy_accepts_bfloat16_input() -> None:
    n, dim, kappa = 64, 4096, 100.0
    z = _unit_rows(n, dim).to(torch.bfloat16)
    got = sphere_entropy(z, kappa)
    assert got.dtype == torch.float32
    assert torch.isfinite(got)
    # The bfloat16 values are upcast exactly; float32 arithmetic from there.
    log_norm = log_vmf_normalizer(dim, kappa).item()
    expected = _np_sphere_entropy(z.double().numpy(), kappa, log_norm, "plugin", False)
    assert got.item() == pytest.approx(expected, abs=0.02)


# --------------------------------------------------------------------------------------
# discrete_entropy
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [1, 2, 7, 1000])
def test_discrete_entropy_of_uniform_rows(num_classes: int) -> None:
    p = torch.full((5, num_classes), 1.0 / num_classes, dtype=F64)
    got = discrete_entropy(p).item()
    assert got == pytest.approx(math.log(num_classes), rel=1e-12, abs=1e-15)


def test_discrete_entropy_of_one_hot_rows() -> None:
    same = torch.zeros(6, 4, dtype=F64)
    same[:, 2] = 1.0
    assert discrete_entropy(same).item() == 0.0
    halves = torch.zeros(6, 5, dtype=F64)
    halves[:3, 0] = 1.0
    halves[3:, 4] = 1.0
    assert discrete_entropy(halves).item() == pytest.approx(math.log(2), rel=1e-15)


@pytest.mark.parametrize(
    ("num_classes", "scale"), [(10, 3.0), (1000, 1.0), (1000, 8.0)]
)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_discrete_entropy_matches_numpy(
    dtype: torch.dtype, num_classes: int, scale: float
) -> None:
    # scale = 8 over 1000 classes leaves many classes with mean mass far below 1e-3.
    p = _prob_rows(32, num_classes, scale=scale)
    expected = float(np.sum(entr(p.numpy().mean(axis=0))))
    got = discrete_entropy(p.to(dtype))
    assert got.dtype == dtype
    rel = 1e-12 if dtype == F64 else 1e-5
    assert got.item() == pytest.approx(expected, rel=rel)


def test_discrete_entropy_is_permutation_invariant() -> None:
    p = _prob_rows(20, 9)
    gen = torch.Generator().manual_seed(2)
    rows, cols = torch.randperm(20, generator=gen), torch.randperm(9, generator=gen)
    expected = discrete_entropy(p).item()
    assert discrete_entropy(p[rows]).item() == pytest.approx(expected, rel=1e-14)
    assert discrete_entropy(p[:, cols]).item() == pytest.approx(expected, rel=1e-14)


def test_discrete_entropy_gradcheck() -> None:
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: discrete_entropy(torch.softmax(x, dim=1)), (logits,)
    )


def test_discrete_entropy_zero_mass_classes_have_finite_gradient() -> None:
    p = torch.zeros(4, 6, dtype=F64)
    p[:, :3] = _prob_rows(4, 3)
    p.requires_grad_(True)
    entropy = discrete_entropy(p)
    entropy.backward()
    assert p.grad is not None
    assert torch.isfinite(entropy)
    assert torch.isfinite(p.grad).all()
    # d/dp_ic of -sum_c m_c log m_c, m = mean_i p_i, is -(log m_c + 1) / N.
    mean = p.detach()[:, :3].mean(dim=0)
    expected = (-(torch.log(mean) + 1) / 4).expand(4, 3)
    torch.testing.assert_close(p.grad[:, :3], expected, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------
# vmf_reconstruction
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dim", "kappa"), [(3, 0.7), (10, 25.0)])
def test_vmf_reconstruction_matches_numpy(dim: int, kappa: float) -> None:
    target = _vmf_samples(40, dim, 5.0, seed=6)
    pred = _vmf_samples(40, dim, 5.0, seed=7)
    cosine = np.mean(np.sum(target * pred, axis=1))
    expected = _np_log_vmf_normalizer(dim, kappa) + kappa * cosine
    got = vmf_reconstruction(torch.from_numpy(target), torch.from_numpy(pred), kappa)
    assert got.dtype == F64
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("dim", "kappa"), [(3, 0.5), (3, 50.0), (512, 10.0)])
def test_vmf_reconstruction_of_identical_inputs(dim: int, kappa: float) -> None:
    z = _unit_rows(12, dim)
    expected = log_vmf_normalizer(dim, kappa).item() + kappa
    if dim == 3:
        assert expected == pytest.approx(float(_log_c3(np.array(kappa))) + kappa)
    got = vmf_reconstruction(z, z.clone(), kappa).item()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_vmf_reconstruction_float32() -> None:
    target, pred = _unit_rows(30, 64, seed=1), _unit_rows(30, 64, seed=2)
    got = vmf_reconstruction(target.float(), pred.float(), 20.0)
    assert got.dtype == torch.float32
    expected = vmf_reconstruction(target, pred, 20.0).item()
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_vmf_reconstruction_gradcheck() -> None:
    gen = torch.Generator().manual_seed(8)
    x_target = torch.randn(5, 4, generator=gen, dtype=F64, requires_grad=True)
    x_pred = torch.randn(5, 4, generator=gen, dtype=F64, requires_grad=True)
    kappa = torch.tensor(2.5, dtype=F64, requires_grad=True)

    def reconstruction(a: Tensor, b: Tensor, k: Tensor) -> Tensor:
        return vmf_reconstruction(normalize(a, dim=1), normalize(b, dim=1), k)

    assert torch.autograd.gradcheck(reconstruction, (x_target, x_pred, kappa))


# --------------------------------------------------------------------------------------
# discrete_reconstruction
# --------------------------------------------------------------------------------------
def test_discrete_reconstruction_matches_numpy() -> None:
    target, pred = _prob_rows(16, 8, seed=1), _prob_rows(16, 8, seed=2)
    expected = float(np.mean(np.sum(target.numpy() * np.log(pred.numpy()), axis=1)))
    got = discrete_reconstruction(target, pred)
    assert got.dtype == F64
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_discrete_reconstruction_log_input_agrees() -> None:
    gen = torch.Generator().manual_seed(4)
    target = _prob_rows(16, 8, seed=3)
    logits = 3.0 * torch.randn(16, 8, generator=gen, dtype=F64)
    from_log = discrete_reconstruction(
        target, torch.log_softmax(logits, dim=1), log_input=True
    )
    from_prob = discrete_reconstruction(target, torch.softmax(logits, dim=1))
    assert from_log.item() == pytest.approx(from_prob.item(), rel=1e-12)


def test_discrete_reconstruction_of_target_is_minus_entropy() -> None:
    target = _prob_rows(16, 8, seed=5).numpy()
    expected = float(np.mean(np.sum(target * np.log(target), axis=1)))
    got = discrete_reconstruction(torch.from_numpy(target), torch.from_numpy(target))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # Any other prediction does worse (Gibbs' inequality).
    other = _prob_rows(16, 8, seed=6)
    assert discrete_reconstruction(torch.from_numpy(target), other).item() < expected


def test_discrete_reconstruction_zero_target_and_zero_prediction() -> None:
    target = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    log_pred = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=F64))
    assert torch.isinf(log_pred).any()
    log_pred.requires_grad_(True)
    got = discrete_reconstruction(target, log_pred, log_input=True)
    got.backward()
    expected = 0.5 * math.log(0.5)
    assert got.item() == pytest.approx(expected, rel=1e-15)
    assert log_pred.grad is not None
    assert torch.isfinite(log_pred.grad).all()
    assert (log_pred.grad[target == 0] == 0).all()
    prob_pred = log_pred.detach().exp()
    plain = discrete_reconstruction(target, prob_pred).item()
    assert plain == pytest.approx(expected, rel=1e-15)


def test_discrete_reconstruction_gradcheck() -> None:
    gen = torch.Generator().manual_seed(9)
    target_logits = torch.randn(5, 4, generator=gen, dtype=F64, requires_grad=True)
    pred_logits = torch.randn(5, 4, generator=gen, dtype=F64, requires_grad=True)

    def from_log(a: Tensor, b: Tensor) -> Tensor:
        target = torch.softmax(a, dim=1)
        return discrete_reconstruction(target, torch.log_softmax(b, dim=1), True)

    def from_prob(a: Tensor, b: Tensor) -> Tensor:
        target = torch.softmax(a, dim=1)
        return discrete_reconstruction(target, torch.softmax(b, dim=1))

    assert torch.autograd.gradcheck(from_log, (target_logits, pred_logits))
    assert torch.autograd.gradcheck(from_prob, (target_logits, pred_logits))


# --------------------------------------------------------------------------------------
# min_sphere_entropy
# --------------------------------------------------------------------------------------
def _mp_min_entropy_s2(kappa: float) -> float:
    """-log C_3(kappa) - kappa with log C_3(kappa) = log kappa - log(4 pi sinh kappa)."""
    with mpmath.workdps(40):
        k = mpmath.mpf(kappa)
        log_c3 = mpmath.log(k) - mpmath.log(4 * mpmath.pi * mpmath.sinh(k))
        return float(-log_c3 - k)


@pytest.mark.parametrize("kappa", [1e-3, 0.5, 2.0, 10.0, 100.0, 1000.0])
def test_min_sphere_entropy_closed_form_on_s2(kappa: float) -> None:
    got = min_sphere_entropy(3, kappa)
    assert isinstance(got, float)
    assert got == pytest.approx(_mp_min_entropy_s2(kappa), rel=1e-12, abs=1e-12)


def test_min_sphere_entropy_known_values() -> None:
    # kappa -> 0: the kernel is uniform, its entropy log |S^2| = log(4 pi).
    assert min_sphere_entropy(3, 1e-8) == pytest.approx(math.log(4 * math.pi), 1e-7)
    # S^1: -log C_2(kappa) - kappa = log(2 pi I_0(kappa)) - kappa.
    for kappa in (0.3, 7.0, 300.0):
        expected = math.log(2 * math.pi * i0e(kappa))
        assert min_sphere_entropy(2, kappa) == pytest.approx(expected, rel=1e-12)
    # The raw constant the gap removes: about -137 nats at d = 128, kappa = 10.
    assert -137.0 < min_sphere_entropy(128, 10.0) < -136.0


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(
    ("dim", "kappa"), [(2, 1.0), (3, 0.5), (3, 40.0), (128, 10.0), (2048, 500.0)]
)
def test_min_sphere_entropy_is_the_entropy_of_identical_points(
    dim: int, kappa: float, estimator: str
) -> None:
    z = _unit_rows(1, dim, seed=dim).expand(32, dim).contiguous()
    got = sphere_entropy(z, kappa, estimator).item()  # type: ignore[arg-type]
    assert got == pytest.approx(min_sphere_entropy(dim, kappa), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kappa", [0.1, 3.0, 30.0, 3000.0])
@pytest.mark.parametrize("sampler", ["uniform", "vmf", "clusters"])
def test_sphere_entropy_lies_in_min_plus_log_n(
    sampler: str, kappa: float, estimator: str
) -> None:
    n, dim = 64, 16
    if sampler == "uniform":
        z = _uniform_samples(n, dim, seed=3)
    elif sampler == "vmf":
        z = _vmf_samples(n, dim, 50.0, seed=3)
    else:  # four tight clusters
        centres = _uniform_samples(4, dim, seed=4)
        z = np.repeat(centres, n // 4, axis=0) + 1e-3 * _uniform_samples(n, dim, 5)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    lower = min_sphere_entropy(dim, kappa)
    got = sphere_entropy(torch.from_numpy(z), kappa, estimator).item()  # type: ignore[arg-type]
    assert lower - 1e-9 <= got <= lower + math.log(n) + 1e-9
    if sampler == "clusters" and kappa == 3000.0:
        # Four clusters whose kernels do not overlap: the gap is log 4.
        assert got - lower == pytest.approx(math.log(4), abs=0.05)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_leave_one_out_has_no_log_n_ceiling(estimator: str) -> None:
    n, dim, kappa = 40, 512, 1000.0
    z = _unit_rows(n, dim)
    ceiling = min_sphere_entropy(dim, kappa) + math.log(n)
    assert sphere_entropy(z, kappa, estimator).item() == pytest.approx(ceiling)  # type: ignore[arg-type]
    loo = sphere_entropy(z, kappa, estimator, leave_one_out=True).item()  # type: ignore[arg-type]
    assert loo > ceiling + 100.0


def test_min_sphere_entropy_matches_the_normalizer() -> None:
    for dim, kappa in ((5, 0.2), (64, 10.0), (65536, 1e4)):
        expected = -log_vmf_normalizer(dim, kappa).item() - kappa
        assert min_sphere_entropy(dim, kappa) == pytest.approx(expected, rel=1e-14)


# --------------------------------------------------------------------------------------
# collapse_score
# --------------------------------------------------------------------------------------
COLLAPSE_N, COLLAPSE_D = 256, 128


def _one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """Limits OpenBLAS to one thread where threadpoolctl is installed: with torch's
    OpenMP threads on a 2-core machine, a threaded SVD of 256 x 128 takes 1 s, not 2 ms.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[object] = threadpool_limits(
        1, user_api="blas"
    )
    return limits


def _np_collapse_scores(
    z: np.ndarray, resolutions: Sequence[float] = (1e-3,)
) -> list[float]:
    """The documented formula in float64 numpy, at each resolution."""
    n, dim = z.shape
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    unit = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)
    centred = unit - unit.mean(axis=0)
    variance = float(np.mean(np.sum(centred**2, axis=1)))
    with _one_blas_thread():
        s = svdvals(centred)
    max_rank = min(n - 1, dim)
    if s.sum() > 0:
        p = s / s.sum()
        rank = math.exp(float(np.sum(entr(p))))  # entr(p) = -p log p
    else:
        rank = 0.0
    dimensions = math.log1p(min(rank, max_rank)) / math.log1p(max_rank)
    return [variance / (variance + r) * dimensions for r in resolutions]


def _collapse_cases() -> dict[str, Tensor]:
    """The calibration batches, N = 256, d = 128, from one fixed seed."""
    gen = torch.Generator().manual_seed(0)
    n, dim = COLLAPSE_N, COLLAPSE_D

    def low_rank(rank: int) -> Tensor:
        left = torch.randn(n, rank, generator=gen, dtype=F64)
        return left @ torch.randn(rank, dim, generator=gen, dtype=F64)

    u = normalize(torch.randn(1, dim, generator=gen, dtype=F64), dim=1)
    return {
        "isotropic": torch.randn(n, dim, generator=gen, dtype=F64),
        "rank-16": low_rank(16),
        "rank-4": low_rank(4),
        "antipodal": torch.cat([u.expand(n // 2, dim), -u.expand(n // 2, dim)]),
        "one-point": u.expand(n, dim).contiguous(),
        "point+noise": u + 1e-4 * torch.randn(n, dim, generator=gen, dtype=F64),
    }


_CALIBRATION = ("isotropic", "rank-16", "rank-4", "antipodal", "one-point")


def test_collapse_score_calibration() -> None:
    cases = _collapse_cases()
    scores = [collapse_score(cases[name]).item() for name in _CALIBRATION]
    assert scores[0] >= 0.9
    for name, higher, lower in zip(
        _CALIBRATION[1:], scores[:-1], scores[1:], strict=True
    ):
        assert higher - lower >= 0.1, (name, scores)
    # Closed forms: two antipodal points span one affine dimension with variance 1;
    # one point spans nothing.
    max_rank = min(COLLAPSE_N - 1, COLLAPSE_D)
    assert scores[3] == pytest.approx(math.log(2) / math.log1p(max_rank) / 1.001)
    assert scores[4] == pytest.approx(0.0, abs=1e-12)


def test_collapse_score_is_scale_aware() -> None:
    # A point plus noise of 1e-4 spans every direction, but far below the resolution.
    noisy = _collapse_cases()["point+noise"]
    assert collapse_score(noisy).item() < 0.05
    # A coarser resolution, or coarser noise, lets the spread count.
    assert collapse_score(noisy, resolution=1e-9).item() > 0.9


@pytest.mark.parametrize("name", list(_collapse_cases()))
def test_collapse_score_matches_numpy(name: str) -> None:
    z = _collapse_cases()[name]
    resolutions = (1e-3, 1e-6, 0.5)
    expected = _np_collapse_scores(z.numpy(), resolutions)
    assert collapse_score(z).item() == pytest.approx(expected[0], abs=1e-6)
    assert collapse_score(z.float()).item() == pytest.approx(expected[0], abs=1e-4)
    for resolution, value in zip(resolutions, expected, strict=True):
        assert collapse_score(z, resolution).item() == pytest.approx(value, abs=1e-6)


def test_collapse_score_of_a_narrow_cone_and_zero_rows_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(1)
    # Post-ReLU features: every row in the positive orthant, mean cosine near 0.75.
    cone = torch.relu(torch.randn(200, 64, generator=gen, dtype=F64)) + 1.0
    with_zeros = torch.randn(50, 10, generator=gen, dtype=F64)
    with_zeros[:5] = 0.0
    for z in (cone, with_zeros, torch.zeros(8, 3, dtype=F64)):
        (expected,) = _np_collapse_scores(z.numpy())
        assert collapse_score(z).item() == pytest.approx(expected, abs=1e-6)
    assert collapse_score(cone).item() > 0.9  # centered, the cone is a spread batch
    assert collapse_score(torch.zeros(8, 3, dtype=F64)).item() == 0.0


def test_collapse_score_is_rotation_and_row_scale_invariant() -> None:
    cases = _collapse_cases()
    gen = torch.Generator().manual_seed(2)
    rotation, _ = torch.linalg.qr(
        torch.randn(COLLAPSE_D, COLLAPSE_D, generator=gen, dtype=F64)
    )
    scales = torch.exp(3.0 * torch.randn(COLLAPSE_N, 1, generator=gen, dtype=F64))
    perm = torch.randperm(COLLAPSE_N, generator=gen)
    for name in ("isotropic", "rank-16", "rank-4", "antipodal"):
        z = cases[name]
        reference = collapse_score(z).item()
        for other in (z * scales, z @ rotation, (scales * z) @ rotation, z[perm]):
            assert collapse_score(other).item() == pytest.approx(reference, abs=1e-5)


def test_collapse_score_dtypes() -> None:
    z = _collapse_cases()["rank-16"]
    reference = collapse_score(z)
    assert reference.dtype == F64 and reference.shape == ()
    assert collapse_score(z.float()).dtype == torch.float32
    low = collapse_score(z.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(reference.item(), abs=0.01)
    assert 0.0 <= reference.item() <= 1.0


def test_collapse_score_of_two_rows_and_one_dimension() -> None:
    # N = 2: at most one affine dimension; d = 1: rows are +-1.
    pair = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)  # variance 1/2
    assert collapse_score(pair).item() == pytest.approx(0.5 / (0.5 + 1e-3))
    signs = torch.tensor([[2.0], [-3.0], [5.0], [-0.5]], dtype=F64)
    assert collapse_score(signs).item() == pytest.approx(1.0 / 1.001)


# --------------------------------------------------------------------------------------
# effective_rank (RankMe)
# --------------------------------------------------------------------------------------
def _orthonormal(n: int, k: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q: Tensor = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=F64))[0]
    return q


@pytest.mark.parametrize("rank", [1, 2, 5, 12])
def test_effective_rank_of_equal_singular_values(rank: int) -> None:
    z = 3.0 * _orthonormal(40, rank, rank) @ _orthonormal(12, rank, 50 + rank).T
    assert effective_rank(z, eps=0.0).item() == pytest.approx(rank, abs=1e-10)
    assert effective_rank(z).item() == pytest.approx(rank, abs=1e-4)


def test_effective_rank_matches_rankme_with_eps() -> None:
    z = torch.randn(30, 7, generator=torch.Generator().manual_seed(0), dtype=F64)
    s = svdvals(z.numpy())
    p = s / s.sum() + 1e-7
    assert effective_rank(z).item() == pytest.approx(
        math.exp(float(entr(p).sum())), rel=1e-12
    )
    # Singular values 1, 1, 2: p = (1/4, 1/4, 1/2), entropy 1.5 log 2.
    diagonal = torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=F64))
    assert effective_rank(diagonal, eps=0.0).item() == pytest.approx(2**1.5)


def test_effective_rank_extremes_and_invariances() -> None:
    assert effective_rank(torch.ones(50, 8)).item() == pytest.approx(1.0, abs=1e-4)
    assert effective_rank(torch.zeros(10, 4)).item() == pytest.approx(1.0, abs=1e-5)
    tall = torch.randn(4096, 64, generator=torch.Generator().manual_seed(1))
    assert 0.995 * 64 < effective_rank(tall).item() <= 64
    z = torch.randn(64, 10, generator=torch.Generator().manual_seed(3), dtype=F64)
    reference = effective_rank(z).item()
    rotation = _orthonormal(10, 10, 4)
    for other in (7.5 * z, z @ rotation, z.T, z.flip(0)):
        assert effective_rank(other).item() == pytest.approx(reference, rel=1e-10)
    assert effective_rank(z.float()).item() == pytest.approx(reference, rel=1e-5)


def test_effective_rank_gradcheck() -> None:
    z = torch.randn(8, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(effective_rank, (z,))


# --------------------------------------------------------------------------------------
# alignment and uniformity
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_alignment_matches_numpy(alpha: float) -> None:
    z1 = _unit_rows(20, 6, seed=1)
    z2 = normalize(z1 + 0.5 * _unit_rows(20, 6, seed=2), dim=1)
    distances = np.linalg.norm(z1.numpy() - z2.numpy(), axis=1)
    expected = float(np.mean(distances**alpha))
    assert alignment(z1, z2, alpha=alpha).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_matches_numpy(t: float) -> None:
    z = _unit_rows(15, 5, seed=3).numpy()
    i, j = np.triu_indices(15, k=1)
    squared = np.sum((z[i] - z[j]) ** 2, axis=1)
    expected = float(np.log(np.mean(np.exp(-t * squared))))
    got = uniformity(torch.from_numpy(z), t=t).item()
    assert got == pytest.approx(expected, rel=1e-12)


def test_alignment_and_uniformity_extremes() -> None:
    z = _unit_rows(32, 8, seed=4)
    assert alignment(z, z).item() == 0.0
    assert alignment(z, -z).item() == pytest.approx(4.0, abs=1e-12)
    collapsed = normalize(torch.ones(16, 8, dtype=F64), dim=1)
    assert uniformity(collapsed).item() == pytest.approx(0.0, abs=1e-12)
    pair = torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=F64)
    assert uniformity(pair, t=3.0).item() == pytest.approx(-12.0, abs=1e-12)


_BAD_MONITOR_CALLS = [
    ("min-dim-float", lambda: min_sphere_entropy(3.0, 1.0), TypeError, "dim"),  # type: ignore[arg-type]
    ("min-dim-0", lambda: min_sphere_entropy(0, 1.0), ValueError, "dim"),
    ("min-kappa-0", lambda: min_sphere_entropy(3, 0.0), ValueError, "kappa"),
    ("min-kappa-inf", lambda: min_sphere_entropy(3, math.inf), ValueError, "kappa"),
    ("min-kappa-str", lambda: min_sphere_entropy(3, "1"), TypeError, "kappa"),  # type: ignore[arg-type]
    ("collapse-1-row", lambda: collapse_score(torch.ones(1, 4)), ValueError, "z"),
    ("collapse-1d", lambda: collapse_score(torch.ones(4)), ValueError, "z"),
    (
        "collapse-int",
        lambda: collapse_score(torch.ones(4, 2, dtype=torch.long)),
        TypeError,
        "z",
    ),
    (
        "collapse-nan",
        lambda: collapse_score(torch.full((4, 2), math.nan)),
        ValueError,
        "z",
    ),
    (
        "collapse-resolution",
        lambda: collapse_score(torch.randn(4, 2), resolution=0.0),
        ValueError,
        "resolution",
    ),
    (
        "effective-rank-eps",
        lambda: effective_rank(torch.ones(4, 3), eps=-1.0),
        ValueError,
        "eps",
    ),
    (
        "alignment-alpha",
        lambda: alignment(_unit_rows(4, 3), _unit_rows(4, 3, 1), 0.0),
        ValueError,
        "alpha",
    ),
    ("uniformity-t", lambda: uniformity(_unit_rows(4, 3), t="2"), TypeError, "t"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [pytest.param(c, e, n, id=i) for i, c, e, n in _BAD_MONITOR_CALLS],
)
def test_monitoring_functions_reject_bad_input(
    call: Callable[[], object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=rf"^{name}\b"):
        call()


# --------------------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------------------
_Z = _unit_rows(8, 4)
_Z_OTHER = _unit_rows(8, 4, seed=1)
_P = _prob_rows(8, 5)
_P_OTHER = _prob_rows(8, 5, seed=1)


def _with(x: Tensor, index: tuple[int, int], value: float) -> Tensor:
    y = x.clone()
    y[index] = value
    return y


_BAD_CALLS = [
    # sphere_entropy
    ("sphere-1d", lambda: sphere_entropy(_Z[0], 1.0), ValueError, "z"),
    ("sphere-3d", lambda: sphere_entropy(_Z[None], 1.0), ValueError, "z"),
    ("sphere-empty", lambda: sphere_entropy(_Z[:0], 1.0), ValueError, "z"),
    (
        "sphere-single-loo",
        lambda: sphere_entropy(_Z[:1], 1.0, leave_one_out=True),
        ValueError,
        "leave_one_out",
    ),
    ("sphere-dim0", lambda: sphere_entropy(_Z[:, :0], 1.0), ValueError, "z"),
    (
        "sphere-nan",
        lambda: sphere_entropy(_with(_Z, (0, 0), math.nan), 1.0),
        ValueError,
        "z",
    ),
    (
        "sphere-inf",
        lambda: sphere_entropy(_with(_Z, (1, 2), math.inf), 1.0),
        ValueError,
        "z",
    ),
    ("sphere-norm", lambda: sphere_entropy(1.01 * _Z, 1.0), ValueError, "z"),
    (
        "sphere-int",
        lambda: sphere_entropy(torch.ones(3, 2, dtype=torch.int64), 1.0),
        TypeError,
        "z",
    ),
    ("sphere-numpy", lambda: sphere_entropy(_Z.numpy(), 1.0), TypeError, "z"),
    ("sphere-kappa0", lambda: sphere_entropy(_Z, 0.0), ValueError, "kappa"),
    ("sphere-kappa-neg", lambda: sphere_entropy(_Z, -1.0), ValueError, "kappa"),
    ("sphere-kappa-nan", lambda: sphere_entropy(_Z, math.nan), ValueError, "kappa"),
    ("sphere-kappa-inf", lambda: sphere_entropy(_Z, math.inf), ValueError, "kappa"),
    ("sphere-kappa-str", lambda: sphere_entropy(_Z, "1.0"), TypeError, "kappa"),
    (
        "sphere-kappa-int-tensor",
        lambda: sphere_entropy(_Z, torch.tensor(2)),
        TypeError,
        "kappa",
    ),
    (
        "sphere-kappa-vector",
        lambda: sphere_entropy(_Z, torch.ones(2)),
        ValueError,
        "kappa",
    ),
    (
        "sphere-estimator",
        lambda: sphere_entropy(_Z, 1.0, "kde"),
        ValueError,
        "estimator",
    ),
    (
        "sphere-estimator-type",
        lambda: sphere_entropy(_Z, 1.0, 1),
        TypeError,
        "estimator",
    ),
    (
        "sphere-extra-dim",
        lambda: sphere_entropy(_Z, 1.0, extra_support=_unit_rows(3, 5)),
        ValueError,
        "extra_support",
    ),
    (
        "sphere-extra-1d",
        lambda: sphere_entropy(_Z, 1.0, extra_support=_Z[0]),
        ValueError,
        "extra_support",
    ),
    (
        "sphere-extra-norm",
        lambda: sphere_entropy(_Z, 1.0, extra_support=2 * _Z),
        ValueError,
        "extra_support",
    ),
    (
        "sphere-extra-nan",
        lambda: sphere_entropy(_Z, 1.0, extra_support=_with(_Z, (0, 0), math.nan)),
        ValueError,
        "extra_support",
    ),
    (
        "sphere-extra-int",
        lambda: sphere_entropy(
            _Z, 1.0, extra_support=torch.ones(2, 4, dtype=torch.int64)
        ),
        TypeError,
        "extra_support",
    ),
    # log_vmf_normalizer and log_bessel_iv
    ("normalizer-dim0", lambda: log_vmf_normalizer(0, 1.0), ValueError, "dim"),
    ("normalizer-dim-float", lambda: log_vmf_normalizer(3.0, 1.0), TypeError, "dim"),
    ("normalizer-dim-bool", lambda: log_vmf_normalizer(True, 1.0), TypeError, "dim"),
    ("normalizer-kappa0", lambda: log_vmf_normalizer(3, 0.0), ValueError, "kappa"),
    (
        "normalizer-kappa-neg",
        lambda: log_vmf_normalizer(3, torch.tensor([1.0, -2.0])),
        ValueError,
        "kappa",
    ),
    (
        "normalizer-kappa-nan",
        lambda: log_vmf_normalizer(3, torch.tensor(math.nan)),
        ValueError,
        "kappa",
    ),
    (
        "normalizer-kappa-inf",
        lambda: log_vmf_normalizer(3, math.inf),
        ValueError,
        "kappa",
    ),
    (
        "normalizer-kappa-empty",
        lambda: log_vmf_normalizer(3, torch.ones(0)),
        ValueError,
        "kappa",
    ),
    ("normalizer-kappa-str", lambda: log_vmf_normalizer(3, "2"), TypeError, "kappa"),
    (
        "normalizer-kappa-int-tensor",
        lambda: log_vmf_normalizer(3, torch.tensor([2])),
        TypeError,
        "kappa",
    ),
    ("bessel-order-neg", lambda: log_bessel_iv(-1.0, 1.0), ValueError, "order"),
    ("bessel-order-nan", lambda: log_bessel_iv(math.nan, 1.0), ValueError, "order"),
    ("bessel-order-str", lambda: log_bessel_iv("1", 1.0), TypeError, "order"),
    ("bessel-x0", lambda: log_bessel_iv(1.0, 0.0), ValueError, "x"),
    (
        "bessel-x-int-tensor",
        lambda: log_bessel_iv(1.0, torch.tensor(1)),
        TypeError,
        "x",
    ),
    # discrete_entropy
    ("entropy-1d", lambda: discrete_entropy(_P[0]), ValueError, "p"),
    ("entropy-3d", lambda: discrete_entropy(_P[None]), ValueError, "p"),
    ("entropy-empty", lambda: discrete_entropy(_P[:0]), ValueError, "p"),
    (
        "entropy-nan",
        lambda: discrete_entropy(_with(_P, (0, 0), math.nan)),
        ValueError,
        "p",
    ),
    (
        "entropy-inf",
        lambda: discrete_entropy(_with(_P, (0, 0), math.inf)),
        ValueError,
        "p",
    ),
    (
        "entropy-negative",
        lambda: discrete_entropy(torch.tensor([[1.5, -0.5]])),
        ValueError,
        "p",
    ),
    ("entropy-sum", lambda: discrete_entropy(torch.full((2, 4), 0.3)), ValueError, "p"),
    (
        "entropy-int",
        lambda: discrete_entropy(torch.ones(2, 1, dtype=torch.int64)),
        TypeError,
        "p",
    ),
    ("entropy-list", lambda: discrete_entropy([[1.0]]), TypeError, "p"),
    # vmf_reconstruction
    (
        "vmf-shape",
        lambda: vmf_reconstruction(_Z, _Z[:5], 1.0),
        ValueError,
        "z_target and z_pred",
    ),
    (
        "vmf-shape-dim",
        lambda: vmf_reconstruction(_Z, _unit_rows(8, 5), 1.0),
        ValueError,
        "z_target and z_pred",
    ),
    (
        "vmf-1d",
        lambda: vmf_reconstruction(_Z[0], _Z_OTHER[0], 1.0),
        ValueError,
        "z_target",
    ),
    (
        "vmf-empty",
        lambda: vmf_reconstruction(_Z, _Z_OTHER[:0], 1.0),
        ValueError,
        "z_pred",
    ),
    (
        "vmf-nan",
        lambda: vmf_reconstruction(_with(_Z, (0, 1), math.nan), _Z_OTHER, 1.0),
        ValueError,
        "z_target",
    ),
    (
        "vmf-norm",
        lambda: vmf_reconstruction(_Z, 0.9 * _Z_OTHER, 1.0),
        ValueError,
        "z_pred",
    ),
    (
        "vmf-int",
        lambda: vmf_reconstruction(_Z, torch.ones(8, 4, dtype=torch.int32), 1.0),
        TypeError,
        "z_pred",
    ),
    ("vmf-kappa", lambda: vmf_reconstruction(_Z, _Z_OTHER, -3.0), ValueError, "kappa"),
    (
        "vmf-kappa-str",
        lambda: vmf_reconstruction(_Z, _Z_OTHER, "3"),
        TypeError,
        "kappa",
    ),
    # discrete_reconstruction
    (
        "xent-shape",
        lambda: discrete_reconstruction(
            _P, _P_OTHER[:, :4] / _P_OTHER[:, :4].sum(1, keepdim=True)
        ),
        ValueError,
        "p_target and p_pred",
    ),
    (
        "xent-3d",
        lambda: discrete_reconstruction(_P[None], _P_OTHER[None]),
        ValueError,
        "p_target",
    ),
    (
        "xent-empty",
        lambda: discrete_reconstruction(_P, _P_OTHER[:, :0]),
        ValueError,
        "p_pred",
    ),
    (
        "xent-negative",
        lambda: discrete_reconstruction(_P, _with(_P_OTHER, (0, 0), -0.1)),
        ValueError,
        "p_pred",
    ),
    (
        "xent-sum",
        lambda: discrete_reconstruction(2 * _P, _P_OTHER),
        ValueError,
        "p_target",
    ),
    (
        "xent-nan",
        lambda: discrete_reconstruction(_with(_P, (0, 0), math.nan), _P_OTHER),
        ValueError,
        "p_target",
    ),
    (
        "xent-log-positive",
        lambda: discrete_reconstruction(_P, _P_OTHER, log_input=True),
        ValueError,
        "p_pred",
    ),
    (
        "xent-log-nan",
        lambda: discrete_reconstruction(
            _P, _with(_P_OTHER.log(), (0, 0), math.nan), log_input=True
        ),
        ValueError,
        "p_pred",
    ),
    (
        "xent-log-inf",
        lambda: discrete_reconstruction(
            _P, _with(_P_OTHER.log(), (0, 0), math.inf), log_input=True
        ),
        ValueError,
        "p_pred",
    ),
    (
        "xent-log-sum",
        lambda: discrete_reconstruction(_P, _P_OTHER.log() - 1.0, log_input=True),
        ValueError,
        "p_pred",
    ),
    (
        "xent-int",
        lambda: discrete_reconstruction(torch.ones(2, 1, dtype=torch.int64), _P),
        TypeError,
        "p_target",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        pytest.param(call, error, name, id=case)
        for case, call, error, name in _BAD_CALLS
    ],
)
def test_bad_input_is_rejected(
    call: Callable[[], object], error: type[Exception], name: str
) -> None:
    # Every message starts with the name of the offending argument.
    with pytest.raises(error, match=rf"^{name}\b"):
        call()


@pytest.mark.parametrize("dim", [3, 128, 4096])
def test_float_kappa_cache_equals_tensor_path(dim: int) -> None:
    z = torch.nn.functional.normalize(torch.randn(32, dim, dtype=F64), dim=1)
    kappa_tensor = torch.tensor(7.5, dtype=F64)
    assert sphere_entropy(z, 7.5).item() == pytest.approx(
        sphere_entropy(z, kappa_tensor).item(), rel=1e-14
    )
    assert vmf_reconstruction(z, z.flip(0), 7.5).item() == pytest.approx(
        vmf_reconstruction(z, z.flip(0), kappa_tensor).item(), rel=1e-14
    )


def test_validate_false_skips_value_checks_only() -> None:
    z = torch.randn(16, 8, dtype=F64)  # not unit-norm
    with pytest.raises(ValueError, match="unit-norm"):
        sphere_entropy(z, 5.0)
    assert torch.isfinite(sphere_entropy(z, 5.0, validate=False))
    assert torch.isfinite(vmf_reconstruction(z, z, 5.0, validate=False))
    with pytest.raises(ValueError, match="^z must have shape"):
        sphere_entropy(z[0], 5.0, validate=False)


# --------------------------------------------------------------------------------------
# S^0 = {-1, +1} (d = 1) and a single sample
# --------------------------------------------------------------------------------------
def _log_c1(kappa: float) -> float:
    """log C_1(kappa) = -log(2 cosh kappa), in a form stable for large kappa."""
    return -kappa - math.log1p(math.exp(-2.0 * kappa))


@pytest.mark.parametrize("kappa", [1e-3, 0.1, 1.0, 2.5, 30.0, 1e3, 1e5])
def test_log_vmf_normalizer_on_s0_is_one_over_two_cosh(kappa: float) -> None:
    got = log_vmf_normalizer(1, torch.tensor(kappa, dtype=F64))
    assert got.item() == pytest.approx(_log_c1(kappa), rel=1e-13, abs=1e-15)
    with mpmath.workdps(30):
        reference = -mpmath.log(2 * mpmath.cosh(mpmath.mpf(kappa)))
    assert got.item() == pytest.approx(float(reference), rel=1e-13, abs=1e-15)
    # The density sums to 1 over the two points: C_1 (e^kappa + e^-kappa) = 1.
    assert math.exp(got.item() + kappa) + math.exp(got.item() - kappa) == (
        pytest.approx(1.0, rel=1e-12)
    )


@pytest.mark.parametrize("kappa", [1e-3, 0.5, 3.0, 40.0])
def test_log_vmf_normalizer_on_s0_gradient_is_minus_tanh(kappa: float) -> None:
    k = torch.tensor(kappa, dtype=F64, requires_grad=True)
    log_vmf_normalizer(1, k).backward()
    assert k.grad is not None
    assert k.grad.item() == pytest.approx(-math.tanh(kappa), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("kappa", [0.2, 2.0, 25.0])
def test_min_sphere_entropy_on_s0(kappa: float) -> None:
    # -log C_1 - kappa = log(2 cosh kappa) - kappa = log(1 + e^(-2 kappa)); the
    # subtraction leaves an absolute error of a few ulps of kappa.
    assert min_sphere_entropy(1, kappa) == pytest.approx(
        math.log1p(math.exp(-2.0 * kappa)), rel=1e-12, abs=1e-13
    )


def _s0_entropy(n_plus: int, n_minus: int, kappa: float, estimator: str) -> float:
    """The KDE entropy of n_plus points at +1 and n_minus at -1, by counting."""
    n = n_plus + n_minus
    log_c = _log_c1(kappa)

    def log_p(same: int, other: int) -> float:
        return (
            log_c
            + math.log(same * math.exp(kappa) + other * math.exp(-kappa))
            - (math.log(n))
        )

    logs = [log_p(n_plus, n_minus)] * n_plus + [log_p(n_minus, n_plus)] * n_minus
    if estimator == "joe":
        return -sum(logs) / n
    weights = softmax(np.array(logs))
    return float(-(weights * np.array(logs)).sum())


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("n_plus", "n_minus"), [(1, 0), (3, 1), (5, 5), (2, 7)])
@pytest.mark.parametrize("kappa", [0.3, 2.0, 12.0])
def test_sphere_entropy_on_s0_matches_counting(
    n_plus: int, n_minus: int, kappa: float, estimator: str
) -> None:
    z = torch.tensor([[1.0]] * n_plus + [[-1.0]] * n_minus, dtype=F64)
    got = sphere_entropy(z, kappa, estimator)  # type: ignore[arg-type]
    expected = _s0_entropy(n_plus, n_minus, kappa, estimator)
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_vmf_reconstruction_on_s0() -> None:
    target = torch.tensor([[1.0], [-1.0], [1.0], [1.0]], dtype=F64)
    pred = torch.tensor([[1.0], [1.0], [-1.0], [1.0]], dtype=F64)
    # mean of z_pred z_target = (1 - 1 - 1 + 1) / 4 = 0
    got = vmf_reconstruction(target, pred, 3.0)
    assert got.item() == pytest.approx(_log_c1(3.0), rel=1e-13)
    got = vmf_reconstruction(target, target, 3.0)
    assert got.item() == pytest.approx(_log_c1(3.0) + 3.0, rel=1e-13)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("dim", "kappa"), [(1, 2.0), (3, 0.5), (128, 10.0)])
def test_sphere_entropy_of_one_sample_is_the_minimum(
    dim: int, kappa: float, estimator: str
) -> None:
    z = _unit_rows(1, dim).requires_grad_(True)
    got = sphere_entropy(z, kappa, estimator)  # type: ignore[arg-type]
    assert got.item() == pytest.approx(min_sphere_entropy(dim, kappa), rel=1e-12)
    got.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_the_constant_marker_is_what_torch_sets() -> None:
    # lightly_er marks its normalizer cache as torch.compiler.assume_constant_result
    # does, without importing torch._dynamo at import time; the two must agree.
    from lightly_er.functional._special import log_vmf_normalizer_constant

    def probe() -> None:
        pass

    assert torch.compiler.assume_constant_result(probe) is probe
    assert vars(probe) == {"_dynamo_marked_constant": True}
    assert vars(log_vmf_normalizer_constant) == {"_dynamo_marked_constant": True}
