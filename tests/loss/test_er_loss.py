"""Tests for lightly_er.loss.er_loss.ERLoss, the generic two-view ER objective."""

from __future__ import annotations

import functools
import math
from typing import Iterator, List, Tuple

import pytest
import torch
from torch import Tensor, nn
from torch.nn.functional import normalize

from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import (
    discrete_entropy,
    discrete_reconstruction,
    log_vmf_normalizer,
    min_sphere_entropy,
    sphere_entropy,
    vmf_reconstruction,
)
from lightly_er.loss._base import ERComponents
from lightly_er.loss.er_loss import ERLoss
from tests.loss.dist_harness import run_distributed_and_single


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Runs a many-small-steps test on one thread: as fast, and no OpenMP spinning
    against other processes on a busy machine (seen to slow it down 60-fold)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _views(n: int = 16, d: int = 8, seed: int = 0) -> Tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    out0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    out1 = out0 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return out0, out1


def _clusters(seed: int) -> Tuple[Tensor, Tensor, Tensor]:
    """64 points from 8 clusters in R^16 and two noisy views of them."""
    g = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(8, 16, generator=g)
    x = centers.repeat_interleave(8, dim=0) + 0.5 * torch.randn(64, 16, generator=g)
    view0 = x + 0.1 * torch.randn(64, 16, generator=g)
    view1 = x + 0.1 * torch.randn(64, 16, generator=g)
    return x, view0, view1


def _encoder() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))


# ---------------------------------------------------------------------------------------
# Construction and arguments
# ---------------------------------------------------------------------------------------
def test_defaults() -> None:
    loss_fn = ERLoss()
    assert isinstance(loss_fn, nn.Module)
    assert (loss_fn.support, loss_fn.kappa, loss_fn.entropy_weight) == (
        "sphere",
        10.0,
        1.0,
    )
    assert loss_fn.estimator == EntropyEstimator()
    assert (loss_fn.temperature, loss_fn.gather_distributed) == (0.1, False)
    assert loss_fn.last_components is None


def test_arguments_positional_and_keyword() -> None:
    estimator = EntropyEstimator(memory_size=8)
    positional = ERLoss("discrete", 5.0, 0.5, estimator, 0.2, True)
    keyword = ERLoss(
        support="discrete",
        kappa=5.0,
        entropy_weight=0.5,
        temperature=0.2,
        gather_distributed=True,
        estimator=estimator,
    )
    for loss_fn in (positional, keyword):
        assert loss_fn.support == "discrete"
        assert loss_fn.kappa == 5.0
        assert loss_fn.entropy_weight == 0.5
        assert loss_fn.estimator == estimator
        assert loss_fn.temperature == 0.2
        assert loss_fn.gather_distributed is True
    # a sphere option on the discrete support is an error, not ignored
    with pytest.raises(ValueError, match="leave_one_out"):
        ERLoss("discrete", estimator=EntropyEstimator(leave_one_out=True))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kappa": 0.0}, "kappa"),
        ({"kappa": -1.0}, "kappa"),
        ({"kappa": float("inf")}, "kappa"),
        ({"entropy_weight": -0.1}, "entropy_weight"),
        ({"estimator": "kde"}, "estimator"),
        ({"support": "simplex"}, "support"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ERLoss(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kappa": None}, "kappa"),
        ({"kappa": "1"}, "kappa"),
        ({"temperature": "1"}, "temperature"),
    ],
)
def test_bad_argument_types_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(TypeError, match=name):
        ERLoss(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("support", ["sphere", "discrete"])
@pytest.mark.parametrize(
    "shape0, shape1, name",
    [
        ((8,), (8,), "out0"),
        ((4, 8), (4, 8, 1), "out1"),
        ((4, 8), (5, 8), "out0 and out1 must have the same shape"),
        ((4, 8), (4, 6), "out0 and out1 must have the same shape"),
        ((0, 8), (0, 8), "out0"),
    ],
)
def test_bad_shapes_raise(
    support: str, shape0: Tuple[int, ...], shape1: Tuple[int, ...], name: str
) -> None:
    loss_fn = ERLoss(support=support)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        loss_fn(torch.randn(shape0), torch.randn(shape1))


def test_single_sample_is_the_minimum_entropy_for_sphere() -> None:
    # One sample used to raise; its plug-in estimate is one kernel's, H_min (issue
    # 23), with a warning (tests/loss/test_edges.py has the other losses).
    with pytest.warns(UserWarning, match="batch of 1 sample"):
        components = ERLoss().forward_components(torch.randn(1, 8), torch.randn(1, 8))
    assert components.entropy.item() == pytest.approx(
        min_sphere_entropy(8, 10.0), rel=1e-5
    )


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["joe", "plugin"])
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_sphere_matches_functional(estimator: str, leave_one_out: bool) -> None:
    out0, out1 = _views()
    loss_fn = ERLoss(
        kappa=4.0,
        entropy_weight=0.7,
        estimator=EntropyEstimator(name=estimator, leave_one_out=leave_one_out),
    )
    loss = loss_fn(out0, out1)
    components = loss_fn.forward_components(out0, out1)
    assert isinstance(components, ERComponents)
    assert loss.shape == ()
    assert loss.dtype == torch.float64

    z0, z1 = normalize(out0, dim=1), normalize(out1, dim=1)
    kw = {"estimator": estimator, "leave_one_out": leave_one_out}
    entropy = 0.5 * (sphere_entropy(z0, 4.0, **kw) + sphere_entropy(z1, 4.0, **kw))  # type: ignore[arg-type]
    reconstruction = vmf_reconstruction(z1, z0, 4.0)
    torch.testing.assert_close(components.entropy, entropy)
    torch.testing.assert_close(components.reconstruction, reconstruction)
    torch.testing.assert_close(loss, -(0.7 * entropy + reconstruction))
    torch.testing.assert_close(loss, components.loss)


def test_sphere_hand_formula() -> None:
    # With entropy_weight 1, log C_d(kappa) cancels between the two terms:
    # loss = mean_v mean_i logsumexp_j(kappa z_vi.z_vj) - log N - kappa mean_i z0_i.z1_i
    out0, out1 = _views(n=12, d=6, seed=3)
    kappa = 3.0
    z0, z1 = normalize(out0, dim=1), normalize(out1, dim=1)
    lse0 = torch.logsumexp(kappa * z0 @ z0.T, dim=1).mean()
    lse1 = torch.logsumexp(kappa * z1 @ z1.T, dim=1).mean()
    expected = 0.5 * (lse0 + lse1) - math.log(12) - kappa * (z0 * z1).sum(dim=1).mean()
    torch.testing.assert_close(
        ERLoss(kappa=kappa, estimator=EntropyEstimator(name="joe"))(out0, out1),
        expected,
    )


def test_sphere_components_closed_form_on_s2() -> None:
    # On S^2 (d = 3), log C_3(kappa) = log kappa - log(4 pi sinh kappa).
    out0, out1 = _views(n=5, d=3, seed=4)
    kappa = 2.5
    log_c = math.log(kappa) - math.log(4 * math.pi * math.sinh(kappa))
    loss_fn = ERLoss(kappa=kappa, estimator=EntropyEstimator(name="joe"))
    loss_fn(out0, out1)
    assert loss_fn.last_components is not None
    z0, z1 = normalize(out0, dim=1).tolist(), normalize(out1, dim=1).tolist()

    def entropy(z: List[List[float]]) -> float:
        log_p = [
            log_c
            + math.log(
                sum(
                    math.exp(kappa * sum(a * b for a, b in zip(zi, zj, strict=True)))
                    for zj in z
                )
            )
            - math.log(len(z))
            for zi in z
        ]
        return -sum(log_p) / len(z)

    cos = sum(
        sum(a * b for a, b in zip(u, v, strict=True))
        for u, v in zip(z0, z1, strict=True)
    ) / len(z0)
    assert loss_fn.last_components.entropy.item() == pytest.approx(
        0.5 * (entropy(z0) + entropy(z1)), rel=1e-10
    )
    assert loss_fn.last_components.reconstruction.item() == pytest.approx(
        log_c + kappa * cos, rel=1e-10
    )


def test_discrete_matches_functional_and_hand_formula() -> None:
    out0, out1 = _views(n=10, d=7, seed=5)
    loss_fn = ERLoss(support="discrete", temperature=0.3, entropy_weight=0.5)
    loss = loss_fn(out0, out1)
    components = loss_fn.forward_components(out0, out1)
    torch.testing.assert_close(loss, components.loss)

    log_p0 = torch.log_softmax(out0 / 0.3, dim=1)
    log_p1 = torch.log_softmax(out1 / 0.3, dim=1)
    p0, p1 = log_p0.exp(), log_p1.exp()
    entropy = 0.5 * (discrete_entropy(p0) + discrete_entropy(p1))
    reconstruction = 0.5 * (
        discrete_reconstruction(p1, log_p0, log_input=True)
        + discrete_reconstruction(p0, log_p1, log_input=True)
    )
    torch.testing.assert_close(components.entropy, entropy)
    torch.testing.assert_close(components.reconstruction, reconstruction)
    torch.testing.assert_close(loss, -(0.5 * entropy + reconstruction))

    # By hand: H(mean p) and the two negative cross-entropies.
    def h(p: Tensor) -> Tensor:
        m = p.mean(dim=0)
        return -(m * m.log()).sum()

    hand_entropy = 0.5 * (h(p0) + h(p1))
    hand_rec = 0.5 * ((p1 * log_p0).sum(1).mean() + (p0 * log_p1).sum(1).mean())
    torch.testing.assert_close(components.entropy, hand_entropy)
    torch.testing.assert_close(components.reconstruction, hand_rec)


@pytest.mark.parametrize("support", ["sphere", "discrete"])
def test_last_components_detached(support: str) -> None:
    out0, out1 = (t.requires_grad_(True) for t in _views())
    loss_fn = ERLoss(support=support)  # type: ignore[arg-type]
    components = loss_fn.forward_components(out0, out1)
    last = loss_fn.last_components
    assert last is not None
    assert components.loss.requires_grad
    for value, recorded in zip(components, last, strict=True):
        assert not recorded.requires_grad
        assert recorded.grad_fn is None
        torch.testing.assert_close(recorded, value.detach())
    # forward replaces them with the terms of the new call.
    loss_fn(*_views(seed=1))
    assert loss_fn.last_components is not None
    assert not torch.equal(loss_fn.last_components.entropy, last.entropy)


@pytest.mark.parametrize("support", ["sphere", "discrete"])
def test_gradient_reaches_every_parameter_and_both_views(support: str) -> None:
    torch.manual_seed(0)
    backbone, head = nn.Linear(16, 32), nn.Linear(32, 8)
    x0, x1 = torch.randn(16, 16), torch.randn(16, 16)
    h0, h1 = backbone(x0), backbone(x1)
    h0.retain_grad()
    h1.retain_grad()
    loss = ERLoss(support=support)(head(h0), head(h1))  # type: ignore[arg-type]
    loss.backward()
    for name, p in [*backbone.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    # No stop-gradient: both views carry gradient.
    assert h0.grad is not None and h0.grad.abs().sum() > 0
    assert h1.grad is not None and h1.grad.abs().sum() > 0


@pytest.mark.parametrize("support", ["sphere", "discrete"])
def test_collapse_is_penalised(support: str) -> None:
    n, d = 16, 16
    if support == "sphere":
        spread = normalize(torch.randn(n, d, dtype=torch.float64), dim=1)
        collapsed = spread[:1].repeat(n, 1)
    else:
        # Rows are permutations of each other, so every row has the same entropy and
        # identical views give the same reconstruction for both.
        spread = 5.0 * torch.eye(d, dtype=torch.float64)[torch.arange(n) % d]
        collapsed = 5.0 * torch.eye(d, dtype=torch.float64)[torch.zeros(n).long()]
    loss_fn = ERLoss(support=support, kappa=10.0, temperature=1.0)  # type: ignore[arg-type]
    loss_spread = loss_fn(spread, spread)
    terms_spread = loss_fn.last_components
    loss_collapsed = loss_fn(collapsed, collapsed)
    terms_collapsed = loss_fn.last_components
    assert terms_spread is not None and terms_collapsed is not None
    # Same alignment ...
    torch.testing.assert_close(
        terms_spread.reconstruction, terms_collapsed.reconstruction
    )
    # ... but the collapsed batch has a lower entropy, hence a larger loss.
    assert loss_collapsed > loss_spread + 0.5 * math.log(n)


def _train(support: str, entropy_weight: float, seed: int) -> Tuple[List[float], float]:
    """50 Adam steps; returns the losses and the normalized entropy of all points."""
    torch.manual_seed(seed)
    x, view0, view1 = _clusters(seed)
    encoder = _encoder()
    loss_fn = ERLoss(support=support, kappa=10.0, entropy_weight=entropy_weight)  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = loss_fn(encoder(view0), encoder(view1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = encoder(x)
        if support == "sphere":
            # (H - H_min) / log N, H_min = -log C_d(kappa) - kappa (all points equal).
            h_min = -log_vmf_normalizer(16, 10.0).item() - 10.0
            entropy = sphere_entropy(normalize(out, dim=1), 10.0).item()
            normalised = (entropy - h_min) / math.log(len(x))
        else:
            p = torch.softmax(out / loss_fn.temperature, dim=1)
            normalised = discrete_entropy(p).item() / math.log(16)
    return losses, normalised


@pytest.mark.parametrize(
    "support, min_entropy, min_gap",
    # Measured over seeds 0-2: sphere 0.987-0.988 (0.22-0.31 without the entropy
    # term), discrete 0.90-0.94 (0.62-0.69 without).
    [("sphere", 0.9, 0.5), ("discrete", 0.85, 0.15)],
)
def test_training_decreases_loss_and_keeps_entropy(
    support: str, min_entropy: float, min_gap: float, one_thread: None
) -> None:
    losses, entropy = _train(support, entropy_weight=1.0, seed=0)
    assert losses[-1] < losses[0] - 0.5
    assert entropy > min_entropy
    # Without the entropy term, alignment alone lets the embeddings contract.
    _, entropy_without = _train(support, entropy_weight=0.0, seed=0)
    assert entropy > entropy_without + min_gap


# ---------------------------------------------------------------------------------------
# Distributed and mixed precision
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("support", ["sphere", "discrete"])
def test_distributed_matches_single_process(support: str) -> None:
    out0, out1 = _views(n=8, d=6, seed=7)
    factory = functools.partial(ERLoss, support=support, kappa=3.0, temperature=0.5)
    d_loss, s_loss, d_grads, s_grads = run_distributed_and_single(factory, [out0, out1])
    torch.testing.assert_close(d_loss, s_loss, atol=1e-5, rtol=1e-5)
    for d_grad, s_grad in zip(d_grads, s_grads, strict=True):
        torch.testing.assert_close(d_grad, s_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("support", ["sphere", "discrete"])
@pytest.mark.parametrize("kappa", [1.0, 100.0])
@pytest.mark.parametrize("dim", [16, 65536])
def test_bf16_autocast_is_finite(support: str, kappa: float, dim: int) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, dim)
    loss_fn = ERLoss(support=support, kappa=kappa, temperature=0.1)  # type: ignore[arg-type]
    x0, x1 = torch.randn(8, 16), torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out0, out1 = layer(x0), layer(x1)
        assert out0.dtype == torch.bfloat16
        loss = loss_fn(out0, out1)
    assert torch.isfinite(loss)
    assert loss_fn.last_components is not None
    assert all(bool(torch.isfinite(t)) for t in loss_fn.last_components)
    # The bf16 outputs are upcast before anything else: the same value as in float32.
    torch.testing.assert_close(loss, loss_fn(out0.float(), out1.float()))
    loss.backward()
    assert layer.weight.grad is not None
    assert bool(torch.isfinite(layer.weight.grad).all())
