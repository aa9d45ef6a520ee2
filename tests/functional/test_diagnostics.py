"""Tests of the monitor's diagnostics in lightly_er.functional (embeddings, prototypes).

References are independent: brute force over every tuple of distinct rows for the
U-statistics, closed forms, scipy's entropy, torch's kl_div, collections.Counter.
(collapse_score, effective_rank, alignment and uniformity are tested in
tests/test_functional.py.)
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any, Dict

import numpy as np
import pytest
import torch
from scipy.special import entr
from torch import Tensor
from torch.nn.functional import normalize

from lightly_er.functional import (
    collapse_score,
    conditional_entropy,
    dimension_score,
    discrete_entropy,
    mean_kl_divergence,
    participation_ratio,
    prototype_mutual_information,
    prototype_usage,
)
from lightly_er.functional._diagnostics import _covariance_moments, lidar

F64 = torch.float64


def _rank_k(n: int, d: int, k: int, seed: int) -> Tensor:
    """n rows spread evenly (isotropically) over k of d directions, with an offset."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=F64))[0]
    offset = 3.0 * torch.randn(1, d, generator=g, dtype=F64) / math.sqrt(d)
    rows: Tensor = torch.randn(n, k, generator=g, dtype=F64) @ basis.T + offset
    return rows


# -- participation ratio ---------------------------------------------------------------
def _brute_force_moments(x: np.ndarray) -> tuple[float, float]:
    """U-statistics of (tr S)^2 and tr(S^2) over every 4-tuple of distinct rows.

    With u = x_i - x_k and v = x_j - x_l (independent, covariance 2 S each):
    E[|u|^2 |v|^2] / 4 = (tr S)^2 and E[(u^T v)^2] / 4 = tr(S^2).
    """
    squared_trace, trace_of_square, count = 0.0, 0.0, 0
    for i, j, k, m in itertools.permutations(range(len(x)), 4):
        u, v = x[i] - x[k], x[j] - x[m]
        squared_trace += (u @ u) * (v @ v) / 4
        trace_of_square += (u @ v) ** 2 / 4
        count += 1
    return squared_trace / count, trace_of_square / count


def test_covariance_moments_are_the_u_statistics() -> None:
    x = _rank_k(7, 3, 3, seed=0) * torch.tensor([1.0, 0.3, 2.0], dtype=F64)
    squared_trace, trace_of_square = _covariance_moments(x)
    expected = _brute_force_moments(x.numpy())
    assert squared_trace.item() == pytest.approx(expected[0], rel=1e-10)
    assert trace_of_square.item() == pytest.approx(expected[1], rel=1e-10)
    # Translation invariant, as the kernels are.
    moved = _covariance_moments(x + 100.0)
    assert moved[0].item() == pytest.approx(expected[0], rel=1e-8)
    assert moved[1].item() == pytest.approx(expected[1], rel=1e-8)


def test_the_u_statistics_are_unbiased() -> None:
    # Population: independent coordinates of variances 4, 1, 1, 0.25:
    # tr S = 6.25, tr(S^2) = 16 + 1 + 1 + 0.0625.
    scale = torch.tensor([2.0, 1.0, 1.0, 0.5], dtype=F64)
    g = torch.Generator().manual_seed(1)
    estimates = torch.stack(
        [
            torch.stack(
                _covariance_moments(torch.randn(6, 4, generator=g, dtype=F64) * scale)
            )
            for _ in range(20000)
        ]
    )
    mean = estimates.mean(dim=0)
    error = 3 * estimates.std(dim=0) / math.sqrt(len(estimates))
    assert abs(mean[0].item() - 6.25**2) < error[0].item()
    assert abs(mean[1].item() - 18.0625) < error[1].item()


@pytest.mark.parametrize("k", [4, 16, 64])
def test_a_rank_k_population_reads_k_at_any_batch_size(k: int) -> None:
    d = 128
    small = participation_ratio(_rank_k(64, d, k, seed=k)).item()
    large = participation_ratio(_rank_k(1024, d, k, seed=k + 1)).item()
    assert small == pytest.approx(k, rel=0.12)
    assert large == pytest.approx(k, rel=0.05)
    # On the sphere (as the meter reads them) the same holds, +1 for the offset.
    z_small = normalize(_rank_k(64, d, k, seed=k + 2), dim=1)
    z_large = normalize(_rank_k(1024, d, k, seed=k + 3), dim=1)
    assert dimension_score(z_small).item() == pytest.approx(
        dimension_score(z_large).item(), abs=0.03
    )
    # The collapse score's ceiling min(N - 1, d) moves with N: not so.
    if k == 16:
        assert collapse_score(z_small).item() - collapse_score(z_large).item() > 0.07


def test_an_isotropic_batch_reads_d_even_below_d_rows() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 128, generator=g, dtype=F64)
    assert participation_ratio(x).item() == pytest.approx(128, rel=0.15)
    assert dimension_score(x).item() > 0.96
    large = torch.randn(2048, 128, generator=g, dtype=F64)
    assert participation_ratio(large).item() == pytest.approx(128, rel=0.03)
    assert dimension_score(large).item() > 0.99


def test_one_point_two_points_and_noise() -> None:
    one = torch.ones(32, 8)
    assert participation_ratio(one).item() == 0.0
    assert dimension_score(one).item() == 0.0
    two = torch.cat([torch.ones(16, 8), -torch.ones(16, 8)])
    assert participation_ratio(two).item() == pytest.approx(1.0, abs=1e-6)
    # Variance 32/31 (unbiased) on the sphere: (v / (v + 1e-3)) log 2 / log 9.
    v = 32 / 31
    assert dimension_score(two).item() == pytest.approx(
        v / (v + 1e-3) * math.log(2) / math.log(9), rel=1e-5
    )
    # A collapsed batch plus noise: many directions, too little spread.
    noisy = torch.ones(256, 128) + 1e-3 * torch.randn(256, 128)
    assert participation_ratio(noisy).item() > 100
    assert dimension_score(noisy).item() < 0.01


def test_participation_ratio_inputs() -> None:
    with pytest.raises(ValueError, match="at least 4 samples"):
        participation_ratio(torch.randn(3, 8))
    with pytest.raises(ValueError, match="NaN or Inf"):
        dimension_score(torch.full((8, 4), math.nan))
    with pytest.raises(ValueError, match="resolution"):
        dimension_score(torch.randn(8, 4), resolution=0.0)
    half = participation_ratio(torch.randn(16, 4).half())
    assert half.dtype == torch.float32
    assert participation_ratio(torch.randn(16, 4, dtype=F64)).dtype == F64
    # One dimension: at most one direction.
    assert participation_ratio(torch.randn(16, 1)).item() == 1.0


# -- prototypes ------------------------------------------------------------------------
def _random_rows(n: int, k: int, temperature: float, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=g, dtype=F64) / temperature, 1)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 5.0])
def test_entropies_and_information_against_scipy(temperature: float) -> None:
    p = _random_rows(40, 12, temperature, seed=int(10 * temperature))
    rows = p.numpy()
    conditional = entr(rows).sum(axis=1).mean()
    marginal = entr(rows.mean(axis=0)).sum()
    assert conditional_entropy(p).item() == pytest.approx(conditional, rel=1e-10)
    assert prototype_mutual_information(p).item() == pytest.approx(
        marginal - conditional, rel=1e-9, abs=1e-12
    )
    assert discrete_entropy(p).item() == pytest.approx(marginal, rel=1e-10)


def test_uniform_one_hot_and_constant_rows() -> None:
    k = 8
    uniform = torch.full((16, k), 1 / k)
    assert conditional_entropy(uniform).item() == pytest.approx(math.log(k))
    assert prototype_mutual_information(uniform).item() == pytest.approx(0, abs=1e-6)
    # Distinct one-hot rows: every input its own prototype, I = log N (N <= K).
    one_hot = torch.eye(k)[:5]
    assert conditional_entropy(one_hot).item() == 0.0
    assert prototype_mutual_information(one_hot).item() == pytest.approx(math.log(5))
    assert prototype_usage(one_hot).item() == pytest.approx(5.0)
    # One prototype for every input: I = 0 and the usage 1.
    same = torch.eye(k)[[2] * 10]
    assert prototype_mutual_information(same).item() == 0.0
    assert prototype_usage(same).item() == 1.0
    # One input: no information about which input it was.
    assert prototype_mutual_information(_random_rows(1, k, 1.0, 0)).item() == 0.0


def test_usage_counts_argmax_picks() -> None:
    p = _random_rows(50, 6, 0.3, seed=4)
    counts = Counter(p.argmax(dim=1).tolist())
    expected = math.exp(-sum(c / 50 * math.log(c / 50) for c in counts.values()))
    assert prototype_usage(p).item() == pytest.approx(expected, rel=1e-10)
    # Logits give the picks of their softmax.
    assert prototype_usage(p.log()).item() == prototype_usage(p).item()


def test_mean_kl_divergence_against_torch() -> None:
    log_p = torch.log(_random_rows(30, 10, 0.2, seed=5))
    log_q = torch.log(_random_rows(30, 10, 1.0, seed=6))
    expected = torch.nn.functional.kl_div(
        log_q, log_p, log_target=True, reduction="batchmean"
    )
    assert mean_kl_divergence(log_p, log_q).item() == pytest.approx(
        expected.item(), rel=1e-10
    )
    assert mean_kl_divergence(log_p, log_p).item() == 0.0
    # A zero of p contributes 0 even where q is 0 too.
    zeros = torch.tensor([[0.0, -math.inf], [-math.inf, 0.0]])
    assert mean_kl_divergence(zeros, zeros).item() == 0.0


def test_prototype_inputs() -> None:
    with pytest.raises(ValueError, match="probability distributions"):
        conditional_entropy(torch.rand(4, 3) + 1)
    with pytest.raises(ValueError, match="same shape"):
        mean_kl_divergence(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(TypeError, match="floating point"):
        prototype_usage(torch.ones(4, 3, dtype=torch.long))
    assert conditional_entropy(torch.full((2, 4), 0.25).half()).dtype == torch.float32


# -- LiDAR -----------------------------------------------------------------------------
def _lda_views(between: list[float], within: float, n: int, d: int) -> Tensor:
    """Two views of n samples whose covariances are S_b = diag(between, 0, ...) and
    S_w = within * I exactly (n (q - 1) = n for q = 2)."""
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))[0]
    # Centered means: columns orthogonal to the ones vector, scaled to S_b.
    centered = basis[:, 1 : 1 + d] - basis[:, 1 : 1 + d].mean(dim=0)
    centered = torch.linalg.qr(centered)[0]
    scale = torch.zeros(d, dtype=F64)
    scale[: len(between)] = torch.tensor(between, dtype=F64).sqrt()
    means = math.sqrt(n - 1) * centered * scale + 3.0  # any offset
    # Within: +w and -w around the mean, sum_i 2 w_i w_i^T / n = within * I.
    offsets = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=F64))[0]
    offsets = math.sqrt(n * within / 2.0) * offsets
    return torch.stack([means + offsets, means - offsets], dim=1)


def _rankme(spectrum: list[float]) -> float:
    total = sum(spectrum)
    return math.exp(-sum(s / total * math.log(s / total) for s in spectrum if s > 0))


@pytest.mark.parametrize("between", [[1.0, 1.0, 1.0], [4.0, 1.0, 1.0], [2.0] * 6])
def test_lidar_closed_form(between: list[float]) -> None:
    views = _lda_views(between, within=0.5, n=64, d=8)
    means = views.mean(dim=1)
    assert torch.allclose(
        torch.cov(means.T),
        torch.diag(torch.tensor(between + [0.0] * (8 - len(between)), dtype=F64)),
        atol=1e-10,
    )
    # The spectrum is between / (within + delta): its RankMe, whatever delta.
    expected = _rankme(between)
    for delta in (1e-4, 0.3):
        assert lidar(views, delta=delta, eps=0.0).item() == pytest.approx(
            expected, rel=1e-10
        )
    # The default eps moves its logarithm by less than d * eps * (log(1 / eps) + 1).
    assert lidar(views).item() == pytest.approx(expected, rel=8 * 1e-7 * 17.2)
    assert lidar(views).item() != pytest.approx(expected, rel=1e-7)  # it does move


def _lidar_scipy(views: Tensor, delta: float = 1e-4, eps: float = 1e-7) -> float:
    """LiDAR from scipy's generalized symmetric eigenproblem S_b v = lambda S_w v."""
    from scipy.linalg import eigh

    n, q, d = views.shape
    means = views.mean(dim=1)
    s_b = torch.cov(means.T).reshape(d, d).numpy()
    within = (views - means.unsqueeze(1)).reshape(-1, d)
    s_w = (within.T @ within / (n * (q - 1))).numpy() + delta * np.eye(d)
    spectrum = np.clip(eigh(s_b, s_w, eigvals_only=True), 0.0, None)
    p = spectrum / spectrum.sum() + eps
    return math.exp(float(entr(p).sum()))


@pytest.mark.parametrize("n, q, d", [(40, 3, 6), (5, 2, 30), (3, 4, 13)])
def test_lidar_against_the_generalized_eigenproblem(n: int, q: int, d: int) -> None:
    """Also where d > n q, computed in the span of the views."""
    g = torch.Generator().manual_seed(3)
    scales = torch.logspace(0.5, -2, d, dtype=F64)
    samples = torch.randn(n, 1, d, generator=g, dtype=F64) * scales
    views = samples + 0.3 * torch.randn(n, q, d, generator=g, dtype=F64)
    assert lidar(views).item() == pytest.approx(_lidar_scipy(views), rel=1e-8)
    assert lidar(views, delta=0.1, eps=0.0).item() == pytest.approx(
        _lidar_scipy(views, delta=0.1, eps=0.0), rel=1e-8
    )
    if n * (q - 1) <= d:
        return  # S_w singular but for delta: no invariance below
    # Affine invariance of LDA (exact as delta -> 0): an invertible map and a shift.
    a = torch.randn(d, d, generator=g, dtype=F64) + 3.0 * torch.eye(d, dtype=F64)
    assert lidar(views @ a + 1.0, delta=1e-12).item() == pytest.approx(
        lidar(views, delta=1e-12).item(), rel=1e-6
    )


def test_lidar_of_coinciding_samples_and_views() -> None:
    # Every sample the same: nothing tells them apart.
    assert lidar(torch.ones(16, 2, 4, dtype=F64)).item() == pytest.approx(1.0, 1e-5)
    assert lidar(torch.ones(16, 2, 4, dtype=F64), eps=0.0).item() == 1.0
    # Views identical: S_w = delta I, LiDAR is the RankMe of the covariance's spectrum.
    views = _lda_views([9.0, 1.0], within=0.0, n=32, d=4)
    assert lidar(views, eps=0.0).item() == pytest.approx(_rankme([9.0, 1.0]), 1e-9)
    half = lidar(views.float().half())
    assert half.dtype == torch.float32


@pytest.mark.parametrize(
    "views, kwargs, error, match",
    [
        (torch.zeros(8, 4), {}, ValueError, r"views must have shape \(n_samples"),
        (torch.zeros(1, 2, 4), {}, ValueError, "n_samples >= 2"),
        (torch.zeros(8, 1, 4), {}, ValueError, "n_views >= 2"),
        (torch.zeros(8, 2, 4, dtype=torch.long), {}, TypeError, "views must be a"),
        ([[[0.0]]], {}, TypeError, "views must be a torch.Tensor"),
        (torch.full((8, 2, 4), math.nan), {}, ValueError, "views"),
        (torch.zeros(8, 2, 4), {"delta": 0.0}, ValueError, "delta"),
        (torch.zeros(8, 2, 4), {"eps": -1e-7}, ValueError, "eps"),
    ],
)
def test_lidar_inputs(
    views: Any, kwargs: Dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        lidar(views, **kwargs)
