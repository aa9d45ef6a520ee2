"""Tests for ERNegativeCosineSimilarity: BYOL-ER and SimSiam-ER."""

from __future__ import annotations

import functools
import math
from typing import Any, Iterator, List, Tuple

import pytest
import torch
from lightly.loss import NegativeCosineSimilarity
from torch import Tensor, nn
from torch.nn.functional import normalize

from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import log_vmf_normalizer, sphere_entropy, vmf_reconstruction
from lightly_er.loss.negative_cosine_similarity_er import ERNegativeCosineSimilarity
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


def _pair(n: int = 16, d: int = 8, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """(prediction, target), float64, not requiring grad.

    The targets come from 4 directions, so their entropy is well below that of the
    predictions and a test can tell which branch the entropy was taken on.
    """
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(4, d, generator=g, dtype=torch.float64)
    target = directions[torch.arange(n) % 4] + 0.1 * torch.randn(
        n, d, generator=g, dtype=torch.float64
    )
    prediction = target + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return prediction, target


def _entropy(x: Tensor, kappa: float = 10.0) -> Tensor:
    return sphere_entropy(normalize(x.detach(), dim=1), kappa)


# ---------------------------------------------------------------------------------------
# Construction and arguments
# ---------------------------------------------------------------------------------------
def test_is_negative_cosine_similarity_with_defaults() -> None:
    criterion = ERNegativeCosineSimilarity()
    assert isinstance(criterion, NegativeCosineSimilarity)
    assert (criterion.dim, criterion.eps) == (1, 1e-8)
    assert (criterion.kappa, criterion.entropy_weight) == (10.0, 1.0)
    assert criterion.estimator == EntropyEstimator()
    assert criterion.gather_distributed is False
    assert criterion.prediction == "both"
    assert criterion.last_components is None


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kappa": 0.0}, "kappa"),
        ({"kappa": -5.0}, "kappa"),
        ({"entropy_weight": -1.0}, "entropy_weight"),
        ({"estimator": "kde"}, "estimator"),
        ({"prediction": "p"}, "prediction"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ERNegativeCosineSimilarity(**kwargs)


@pytest.mark.parametrize(
    "shape0, shape1, name",
    [
        ((8,), (8,), "x0"),
        ((4, 8), (8,), "x1"),
        ((4, 8), (4, 7), "x0 and x1 must have the same shape"),
        ((4, 8), (2, 8), "x0 and x1 must have the same shape"),
    ],
)
def test_bad_shapes_raise(
    shape0: Tuple[int, ...], shape1: Tuple[int, ...], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        ERNegativeCosineSimilarity()(torch.randn(shape0), torch.randn(shape1))


# ---------------------------------------------------------------------------------------
# Values and the choice of the branch that carries the entropy
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["joe", "plugin"])
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_matches_functional(estimator: str, leave_one_out: bool) -> None:
    prediction, target = _pair()
    prediction.requires_grad_(True)
    criterion = ERNegativeCosineSimilarity(
        kappa=4.0,
        entropy_weight=0.3,
        prediction="x0",
        estimator=EntropyEstimator(name=estimator, leave_one_out=leave_one_out),
    )
    loss = criterion(prediction, target)
    components = criterion.forward_components(prediction, target)
    assert loss.shape == ()
    torch.testing.assert_close(loss, components.loss)
    p, z = normalize(prediction, dim=1), normalize(target, dim=1)
    entropy = sphere_entropy(p, 4.0, estimator=estimator, leave_one_out=leave_one_out)  # type: ignore[arg-type]
    reconstruction = vmf_reconstruction(z, p, 4.0)
    torch.testing.assert_close(components.entropy, entropy)
    torch.testing.assert_close(components.reconstruction, reconstruction)
    # In units of 1 / kappa: the bound divided by kappa.
    torch.testing.assert_close(loss, -(0.3 * entropy + reconstruction) / 4.0)


def test_hand_formula_and_relation_to_parent() -> None:
    prediction, target = _pair(n=9, d=5, seed=1)
    prediction.requires_grad_(True)
    kappa = 6.0
    criterion = ERNegativeCosineSimilarity(kappa=kappa, prediction="x0")
    criterion(prediction, target)
    # entropy_weight 1, joe estimator: log C_d(kappa) cancels, and the loss is
    # (mean_i logsumexp_j(kappa p_i.p_j) - log N) / kappa - mean_i cos(p_i, z_i).
    joe = ERNegativeCosineSimilarity(
        kappa=kappa, estimator=EntropyEstimator(name="joe"), prediction="x0"
    )
    p, z = normalize(prediction, dim=1), normalize(target, dim=1)
    expected = (
        torch.logsumexp(kappa * p @ p.T, dim=1).mean() - math.log(9)
    ) / kappa - (p * z).sum(1).mean()
    torch.testing.assert_close(joe(prediction, target), expected)
    # The reconstruction is the parent's loss, rescaled and shifted.
    parent = NegativeCosineSimilarity()(prediction, target)
    assert criterion.last_components is not None
    torch.testing.assert_close(
        criterion.last_components.reconstruction,
        log_vmf_normalizer(5, kappa) - kappa * parent,
    )


@pytest.mark.parametrize("order", ["byol", "simsiam"])
@pytest.mark.parametrize("kappa", [10.0, 3.0])
def test_zero_entropy_weight_has_the_parents_gradient(order: str, kappa: float) -> None:
    # The loss scale that makes the comparison fair: without the entropy term the
    # ER loss is lightly's loss plus a constant, so it has the same gradient.
    prediction, target = _pair(n=12, d=7, seed=3)
    er_p, parent_p = (prediction.clone().requires_grad_(True) for _ in range(2))
    er = ERNegativeCosineSimilarity(kappa=kappa, entropy_weight=0.0)
    parent = NegativeCosineSimilarity()
    if order == "byol":
        er_loss, parent_loss = er(er_p, target), parent(parent_p, target)
    else:
        er_loss, parent_loss = er(target, er_p), parent(target, parent_p)
    er_loss.backward()
    parent_loss.backward()
    assert er_p.grad is not None and parent_p.grad is not None
    torch.testing.assert_close(er_p.grad, parent_p.grad, rtol=1e-5, atol=1e-12)
    # The value differs by the constant -log C_d(kappa) / kappa.
    constant = -log_vmf_normalizer(7, kappa).item() / kappa
    assert er_loss.item() == pytest.approx(parent_loss.item() + constant, rel=1e-9)


def test_entropy_on_prediction_for_byol_and_simsiam_order() -> None:
    prediction, target = _pair()
    prediction.requires_grad_(True)
    byol = ERNegativeCosineSimilarity(prediction="x0").forward_components(
        prediction, target.detach()
    )
    simsiam = ERNegativeCosineSimilarity(prediction="x1").forward_components(
        target.detach(), prediction
    )
    expected = _entropy(prediction)
    torch.testing.assert_close(byol.entropy, expected)
    torch.testing.assert_close(simsiam.entropy, expected)
    torch.testing.assert_close(byol.loss, simsiam.loss)
    # Not the target's entropy, which differs.
    assert expected - _entropy(target) > 0.5


def test_entropy_when_both_or_neither_require_grad() -> None:
    prediction, target = _pair()
    criterion = ERNegativeCosineSimilarity()
    both = criterion.forward_components(
        prediction.clone().requires_grad_(True), target.clone().requires_grad_(True)
    )
    torch.testing.assert_close(
        both.entropy, 0.5 * (_entropy(prediction) + _entropy(target))
    )
    with torch.no_grad():
        neither = criterion.forward_components(target, prediction)
    # Neither (evaluation): both entropies too, so the loss is symmetric as the
    # parent's (lightly's test_forward_pass asserts it); it was the first input's.
    torch.testing.assert_close(neither.entropy, both.entropy)
    torch.testing.assert_close(neither.reconstruction, both.reconstruction)
    with torch.no_grad():
        swapped = criterion.forward_components(prediction, target)
    torch.testing.assert_close(swapped.loss, neither.loss)


def test_target_is_used_as_given() -> None:
    # No stop-gradient inside the loss: a target that requires grad gets the
    # reconstruction's gradient, as in the parent; a detached target gets none and
    # the prediction still does. (entropy_weight 0 isolates the reconstruction.)
    prediction, target = (t.requires_grad_(True) for t in _pair())
    ERNegativeCosineSimilarity(entropy_weight=0.0)(prediction, target).backward()
    p, z = (t.detach().clone().requires_grad_(True) for t in (prediction, target))
    (
        -vmf_reconstruction(normalize(z, dim=1), normalize(p, dim=1), 10.0) / 10.0
    ).backward()
    assert target.grad is not None and target.grad.abs().sum() > 0
    torch.testing.assert_close(target.grad, z.grad)
    torch.testing.assert_close(prediction.grad, p.grad)

    prediction, target = (t.requires_grad_(True) for t in _pair())
    ERNegativeCosineSimilarity()(target.detach(), prediction).backward()
    assert target.grad is None
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


def test_last_components_detached() -> None:
    prediction, target = _pair()
    prediction.requires_grad_(True)
    criterion = ERNegativeCosineSimilarity()
    components = criterion.forward_components(prediction, target)
    assert components.loss.requires_grad
    last = criterion.last_components
    assert last is not None
    for value, recorded in zip(components, last, strict=True):
        assert not recorded.requires_grad
        torch.testing.assert_close(recorded, value.detach())


# ---------------------------------------------------------------------------------------
# Gradients, collapse and training
# ---------------------------------------------------------------------------------------
def _models() -> Tuple[nn.Module, nn.Module, nn.Module]:
    backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
    projection = nn.Linear(32, 16)
    prediction = nn.Linear(16, 16)
    return backbone, projection, prediction


def _simsiam_loss(
    criterion: nn.Module,
    modules: Tuple[nn.Module, nn.Module, nn.Module],
    view0: Tensor,
    view1: Tensor,
) -> Tensor:
    backbone, projection, prediction = modules
    z0, z1 = projection(backbone(view0)), projection(backbone(view1))
    p0, p1 = prediction(z0), prediction(z1)
    # BYOL order for one half, SimSiam order for the other.
    loss: Tensor = 0.5 * (criterion(p0, z1.detach()) + criterion(z0.detach(), p1))
    return loss


def test_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    modules = _models()
    loss = _simsiam_loss(
        ERNegativeCosineSimilarity(), modules, torch.randn(16, 16), torch.randn(16, 16)
    )
    loss.backward()
    for module in modules:
        for name, p in module.named_parameters():
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name


def test_collapse_is_penalised() -> None:
    n = 16
    spread = normalize(torch.randn(n, 16, dtype=torch.float64), dim=1)
    collapsed = spread[:1].repeat(n, 1)
    criterion = ERNegativeCosineSimilarity()
    losses, terms = [], []
    for out in (spread, collapsed):
        losses.append(criterion(out.clone().requires_grad_(True), out))
        terms.append(criterion.last_components)
    assert terms[0] is not None and terms[1] is not None
    torch.testing.assert_close(terms[0].reconstruction, terms[1].reconstruction)
    # The entropy gap of n spread points is close to log n, in units of 1 / kappa.
    assert losses[1] > losses[0] + 0.5 * math.log(n) / criterion.kappa


def _train(entropy_weight: float) -> Tuple[List[float], float]:
    """50 Adam steps of SimSiam-style training; returns losses, normalized entropy."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centers = 3.0 * torch.randn(8, 16, generator=g)
    x = centers.repeat_interleave(8, dim=0) + 0.5 * torch.randn(64, 16, generator=g)
    view0 = x + 0.1 * torch.randn(64, 16, generator=g)
    view1 = x + 0.1 * torch.randn(64, 16, generator=g)
    modules = _models()
    criterion = ERNegativeCosineSimilarity(kappa=10.0, entropy_weight=entropy_weight)
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(50):
        loss = _simsiam_loss(criterion, modules, view0, view1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    backbone, projection, prediction = modules
    with torch.no_grad():
        p = normalize(prediction(projection(backbone(x))), dim=1)
    h_min = -log_vmf_normalizer(16, 10.0).item() - 10.0
    return losses, (sphere_entropy(p, 10.0).item() - h_min) / math.log(len(x))


def test_training_decreases_loss_and_keeps_entropy(one_thread: None) -> None:
    # Measured over seeds 0-2: the normalized entropy of the predictions ends at
    # 0.49-0.51 (about log 8 / log 64: the 8 clusters stay apart), and at 0.24-0.39
    # without the entropy term.
    losses, entropy = _train(1.0)
    assert losses[-1] < losses[0] - 0.2
    assert entropy > 0.45
    _, entropy_without = _train(0.0)
    assert entropy > entropy_without + 0.05


# ---------------------------------------------------------------------------------------
# Distributed and mixed precision
# ---------------------------------------------------------------------------------------
class _CallOrder(nn.Module):
    """Calls the criterion in BYOL order (p, z.detach()), SimSiam order
    (z.detach(), p), or with both inputs requiring grad; inputs are (p, z)."""

    def __init__(self, order: str, **kwargs: Any) -> None:
        super().__init__()
        self.order = order
        self.criterion = ERNegativeCosineSimilarity(**kwargs)

    def forward(self, p: Tensor, z: Tensor) -> Tensor:
        if self.order == "byol":
            loss: Tensor = self.criterion(p, z.detach())
        elif self.order == "simsiam":
            loss = self.criterion(z.detach(), p)
        else:
            loss = self.criterion(p, z)
        # A zero gradient, not None, for a detached input keeps the harness simple.
        return loss + 0.0 * z.sum()


@pytest.mark.parametrize("order", ["byol", "simsiam", "both"])
def test_distributed_matches_single_process(order: str) -> None:
    prediction, target = _pair(n=8, d=6, seed=7)
    factory = functools.partial(_CallOrder, order, kappa=3.0, entropy_weight=0.7)
    d_loss, s_loss, d_grads, s_grads = run_distributed_and_single(
        factory, [prediction, target]
    )
    torch.testing.assert_close(d_loss, s_loss, atol=1e-5, rtol=1e-5)
    for d_grad, s_grad in zip(d_grads, s_grads, strict=True):
        torch.testing.assert_close(d_grad, s_grad, atol=1e-5, rtol=1e-5)
    assert s_grads[0].abs().sum() > 0


@pytest.mark.parametrize("kappa", [1.0, 100.0])
@pytest.mark.parametrize("dim", [16, 65536])
def test_bf16_autocast_is_finite(kappa: float, dim: int) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, dim)
    criterion = ERNegativeCosineSimilarity(kappa=kappa)
    x0, x1 = torch.randn(8, 16), torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = layer(x0)
        with torch.no_grad():
            target = layer(x1)
        assert prediction.dtype == torch.bfloat16
        loss = criterion(prediction, target)
    assert torch.isfinite(loss)
    assert criterion.last_components is not None
    assert all(bool(torch.isfinite(t)) for t in criterion.last_components)
    # The bf16 inputs are upcast before anything else: the same value as in float32.
    reference = criterion(
        prediction.detach().float().requires_grad_(True), target.float()
    )
    torch.testing.assert_close(loss, reference)
    loss.backward()
    assert layer.weight.grad is not None
    assert bool(torch.isfinite(layer.weight.grad).all())


@pytest.mark.parametrize(
    ("dim", "shape"), [(1, (4, 6, 3, 2)), (-1, (4, 3, 6)), (2, (4, 3, 6, 2))]
)
def test_feature_maps_are_one_sample_per_position(dim: int, shape: Any) -> None:
    # As the parent, any embedding dimension: at weight 0 the gradient is the
    # parent's, and the entropy is that of the rows (one per position).
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(shape, generator=g, requires_grad=True)
    x1 = torch.randn(shape, generator=g)
    ERNegativeCosineSimilarity(dim=dim, entropy_weight=0.0)(x0, x1).backward()
    y0 = x0.detach().clone().requires_grad_(True)
    NegativeCosineSimilarity(dim=dim)(y0, x1).backward()
    torch.testing.assert_close(x0.grad, y0.grad)
    criterion = ERNegativeCosineSimilarity(dim=dim, prediction="x0")
    components = criterion.forward_components(x0, x1)
    rows = torch.nn.functional.normalize(x0.detach().movedim(dim, -1), dim=-1)
    rows = rows.reshape(-1, shape[dim])
    expected = sphere_entropy(rows.double(), 10.0).item()
    assert components.entropy.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="dim=5 is out of range for x0"):
        ERNegativeCosineSimilarity(dim=5)(x0, x1)


def test_the_value_does_not_depend_on_which_input_requires_grad() -> None:
    # A validation step (no grad anywhere) computes what training computes.
    g = torch.Generator().manual_seed(3)
    p, z = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    for prediction in ("x0", "x1", "both"):
        criterion = ERNegativeCosineSimilarity(prediction=prediction)
        training = criterion(p.clone().requires_grad_(True), z)
        with torch.no_grad():
            evaluation = criterion(p, z)
        torch.testing.assert_close(training.detach(), evaluation)
