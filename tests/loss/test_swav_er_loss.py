"""Tests of ERSwaVLoss (SwAV-ER)."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, List, Optional, Tuple

import numpy as np
import pytest
import torch
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from torch import Tensor, nn

from lightly_er.loss._base import ERComponents
from lightly_er.loss.swav_er_loss import ERSwaVLoss
from tests.loss.dist_harness import run_distributed_and_single


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


def _entropy_of_mean(rows: np.ndarray) -> float:
    mean = rows.mean(axis=0)
    return float(-(mean * np.log(mean)).sum())


def _hand_swav(
    high: List[Tensor],
    low: List[Tensor],
    temperature: float,
    epsilon: float,
    entropy_weight: float,
    queue: Optional[List[Tensor]] = None,
) -> Tuple[float, float, float]:
    """(loss, entropy, reconstruction) with SwaVLoss's loops, in numpy float64."""
    h_np = [h.detach().double().numpy() for h in high]
    crops = h_np + [v.detach().double().numpy() for v in low]
    codes = [np.exp(_log_softmax(h / epsilon)) for h in h_np]
    log_q = [_log_softmax(c / temperature) for c in crops]
    per_code = [
        np.mean(
            [
                (codes[i] * log_q[v]).sum(axis=1).mean()
                for v in range(len(crops))
                if v != i
            ]
        )
        for i in range(len(h_np))
    ]
    reconstruction = float(np.mean(per_code))
    rows = [np.exp(lq) for lq in log_q[: len(h_np)]]
    if queue is not None:
        rows += [np.exp(_log_softmax(q.double().numpy() / temperature)) for q in queue]
    entropy = _entropy_of_mean(np.concatenate(rows))
    return -(entropy_weight * entropy + reconstruction), entropy, reconstruction


def _crops(
    n_views: int, batch: int, dim: int, seed: int, dtype: torch.dtype = torch.float32
) -> List[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=g, dtype=dtype) for _ in range(n_views)]


def test_is_a_swav_loss() -> None:
    loss_fn = ERSwaVLoss(use_sinkhorn=False)
    assert isinstance(loss_fn, SwaVLoss)
    assert isinstance(loss_fn, nn.Module)


def _parameters(fn: Any) -> List[Tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()
    ]


@pytest.mark.parametrize("with_queue", [False, True])
def test_forward_matches_hand_computation(with_queue: bool) -> None:
    high, low = _crops(2, 4, 5, seed=0), _crops(2, 4, 5, seed=1)
    queue = _crops(2, 6, 5, seed=2) if with_queue else None
    loss_fn = ERSwaVLoss(
        temperature=0.2, sinkhorn_epsilon=0.3, entropy_weight=0.7, use_sinkhorn=False
    )
    expected = _hand_swav(high, low, 0.2, 0.3, 0.7, queue)
    components = loss_fn.forward_components(high, low, queue)
    loss = loss_fn(high, low, queue)
    assert isinstance(components, ERComponents)
    assert loss.shape == ()
    torch.testing.assert_close(loss, components.loss)
    actual = (loss.item(), components.entropy.item(), components.reconstruction.item())
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert 0 < components.entropy.item() <= math.log(5)
    assert components.reconstruction.item() < 0


def test_last_components_detached() -> None:
    high = [h.requires_grad_() for h in _crops(2, 4, 5, seed=0)]
    loss_fn = ERSwaVLoss(use_sinkhorn=False)
    assert loss_fn.last_components is None
    components = loss_fn.forward_components(high, [])
    last = loss_fn.last_components
    assert last is not None
    assert components.loss.requires_grad
    assert not any(t.requires_grad for t in last)
    for recorded, returned in zip(last, components, strict=True):
        torch.testing.assert_close(recorded, returned.detach())


def test_codes_and_queue_get_no_gradient() -> None:
    high = [h.requires_grad_() for h in _crops(2, 4, 5, seed=0)]
    queue = [q.requires_grad_() for q in _crops(2, 6, 5, seed=1)]
    # through the code of crop 1, crop 0 would get a gradient if codes were not
    # detached; check against the hand computation of the gradient of crop 0
    loss_fn = ERSwaVLoss(entropy_weight=0.0, use_sinkhorn=False)
    loss_fn(high, [], queue).backward()
    assert all(q.grad is None for q in queue)
    code_1 = torch.softmax(high[1].detach() / 0.05, dim=1)
    # loss = -(pair (0, 1) + pair (1, 0)) / 2, each a mean over the batch of 4
    expected = -(code_1 - torch.softmax(high[0].detach() / 0.1, dim=1)) / (0.1 * 4 * 2)
    torch.testing.assert_close(high[0].grad, expected)


def test_multi_crop_shapes() -> None:
    # 2 high-resolution and 6 low-resolution crops, as in SwAV's multi-crop
    high = [h.requires_grad_() for h in _crops(2, 8, 30, seed=0)]
    low = [v.requires_grad_() for v in _crops(6, 8, 30, seed=1)]
    loss_fn = ERSwaVLoss(entropy_weight=0.5, use_sinkhorn=False)
    loss = loss_fn(high, low)
    assert loss.shape == ()
    loss.backward()
    np.testing.assert_allclose(
        loss.item(), _hand_swav(high, low, 0.1, 0.05, 0.5)[0], rtol=1e-5
    )
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in high + low)
    # the low-resolution crops do not enter the entropy
    assert loss_fn.last_components is not None
    entropy = loss_fn.last_components.entropy
    loss_fn(high, [torch.zeros(8, 30)] * 6)
    torch.testing.assert_close(loss_fn.last_components.entropy, entropy)


def test_single_crop_raises() -> None:
    with pytest.raises(ValueError, match="two views"):
        ERSwaVLoss(use_sinkhorn=False)(_crops(1, 4, 5, 0), [])


def test_several_prototype_sets_are_one_call_each() -> None:
    # SwaVPrototypes with several sets returns a list per crop; like SwaVLoss the
    # loss takes one set at a time and says so when given the nested lists
    torch.manual_seed(0)
    prototypes = SwaVPrototypes(8, [12, 20])
    features = [nn.functional.normalize(torch.randn(4, 8), dim=1) for _ in range(2)]
    outputs = [prototypes(f) for f in features]
    loss_fn = ERSwaVLoss(use_sinkhorn=False)
    with pytest.raises(TypeError, match="once per set"):
        loss_fn(outputs, [])
    losses = [loss_fn([out[k] for out in outputs], []) for k in range(2)]
    assert all(torch.isfinite(loss) for loss in losses)


class _SwaVModel(nn.Module):
    def __init__(self, n_prototypes: int) -> None:
        super().__init__()
        self.backbone = nn.Linear(16, 32)
        self.head = SwaVProjectionHead(32, 32, 16)
        self.prototypes = SwaVPrototypes(16, n_prototypes)

    def forward(self, x: Tensor) -> Tensor:
        z = nn.functional.normalize(self.head(self.backbone(x)), dim=1)
        out: Tensor = self.prototypes(z)
        return out


def test_gradient_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    model = _SwaVModel(12)
    x = torch.randn(8, 16)
    views = [model(x + 0.1 * torch.randn_like(x)) for _ in range(4)]
    ERSwaVLoss(use_sinkhorn=False)(views[:2], views[2:]).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) >= 8
    for name, param in trainable:
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def _normalised_entropy(logits: Tensor, temperature: float) -> float:
    mean = torch.softmax(logits / temperature, dim=1).mean(dim=0)
    return float(-(mean * mean.log()).sum() / math.log(logits.shape[1]))


def test_training_decreases_loss_and_keeps_entropy_high() -> None:
    # 64 points from 8 clusters in R^16, two noisy views per step, no Sinkhorn.
    # Measured over seeds 0-4: the mean loss of the last 5 steps is 0.43-0.81 nats
    # below that of the first 5 (0.52 for seed 0), and the normalized entropy of the
    # marginal prediction on the clean points ends at 0.93-0.96. With
    # entropy_weight=0 (neither Sinkhorn nor entropy) it ends at 0.41-0.56, near
    # log 8 / log 32 = 0.6 or below, one prototype per cluster at most. 0.8 (at
    # least 32^0.8 = 16 prototypes in effective use) separates the two.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(8, 16, generator=g)
    points = centers.repeat_interleave(8, dim=0) + 0.3 * torch.randn(
        64, 16, generator=g
    )
    model = _SwaVModel(32)
    loss_fn = ERSwaVLoss(use_sinkhorn=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(50):
        model.prototypes.normalize()
        views = [points + 0.1 * torch.randn(64, 16, generator=g) for _ in range(2)]
        loss = loss_fn([model(v) for v in views], [])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        entropy = _normalised_entropy(model(points), loss_fn.temperature)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    assert entropy > 0.8


def test_collapse_is_penalised() -> None:
    # 8 samples, 8 prototypes, both crops agree: every sample on its own prototype,
    # or all on prototype 0
    spread = [10.0 * torch.eye(8)] * 2
    collapsed = [10.0 * torch.eye(8)[[0] * 8]] * 2
    loss_fn = ERSwaVLoss(use_sinkhorn=False)
    spread_loss = loss_fn.forward_components(spread, [])
    collapsed_loss = loss_fn.forward_components(collapsed, [])
    torch.testing.assert_close(
        spread_loss.reconstruction, collapsed_loss.reconstruction
    )
    np.testing.assert_allclose(spread_loss.entropy.item(), math.log(8), rtol=1e-4)
    assert collapsed_loss.entropy.item() < 1e-3
    assert collapsed_loss.loss.item() > spread_loss.loss.item() + 0.99 * math.log(8)


@pytest.mark.parametrize("with_queue", [False, True])
def test_sinkhorn_path_equals_parent(with_queue: bool) -> None:
    high, low = _crops(2, 4, 6, seed=0), _crops(3, 4, 6, seed=1)
    queue = _crops(2, 8, 6, seed=2) if with_queue else None
    parent = SwaVLoss(0.2, 4, 0.3)
    expected = parent(high, low, queue).reshape(())
    er = ERSwaVLoss(0.2, 4, 0.3, use_sinkhorn=True, entropy_weight=0.0)
    torch.testing.assert_close(er(high, low, queue), expected)
    # the entropy term comes on top, unchanged by Sinkhorn
    weighted = ERSwaVLoss(0.2, 4, 0.3, use_sinkhorn=True, entropy_weight=0.7)
    entropy = _hand_swav(high, low, 0.2, 0.3, 1.0, queue)[1]
    torch.testing.assert_close(
        weighted(high, low, queue).double(), expected.double() - 0.7 * entropy
    )


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(temperature="0.1"), TypeError, "temperature"),
        (dict(sinkhorn_iterations=-1), ValueError, "sinkhorn_iterations"),
        (dict(sinkhorn_iterations=1.5), TypeError, "sinkhorn_iterations"),
        (dict(sinkhorn_epsilon=0.0), ValueError, "sinkhorn_epsilon"),
        (dict(sinkhorn_epsilon=float("inf")), ValueError, "sinkhorn_epsilon"),
        (dict(sinkhorn_gather_distributed=1), TypeError, "sinkhorn_gather"),
        (dict(entropy_weight=-0.5), ValueError, "entropy_weight"),
        (dict(entropy_weight=None), TypeError, "entropy_weight"),
        (dict(use_sinkhorn="yes"), TypeError, "use_sinkhorn"),
    ],
)
def test_bad_arguments_raise(kwargs: Any, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        ERSwaVLoss(**kwargs)


def test_bad_inputs_raise() -> None:
    loss_fn = ERSwaVLoss(use_sinkhorn=False)
    with pytest.raises(ValueError, match="high_resolution_outputs"):
        loss_fn([], _crops(2, 4, 5, 1))
    with pytest.raises(ValueError, match="one shape"):
        loss_fn(_crops(2, 4, 5, 0), _crops(1, 4, 6, 1))
    with pytest.raises(ValueError, match="queue_outputs"):
        loss_fn(_crops(2, 4, 5, 0), [], _crops(1, 8, 5, 1))
    with pytest.raises(ValueError, match="queue_outputs"):
        loss_fn(_crops(2, 4, 5, 0), [], _crops(2, 8, 6, 1))


class _ZeroQueueGrad(nn.Module):
    """Adds 0 * queue_outputs, so that the harness finds zero (not None) gradients."""

    def __init__(self, loss_fn: ERSwaVLoss) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def forward(
        self, high: List[Tensor], low: List[Tensor], queue: List[Tensor]
    ) -> Tensor:
        zero = sum(0.0 * q.sum() for q in queue)
        loss: Tensor = self.loss_fn(high, low, queue) + zero
        return loss


def _wrapped_swav(gather_distributed: bool, **kwargs: Any) -> nn.Module:
    return _ZeroQueueGrad(ERSwaVLoss(gather_distributed=gather_distributed, **kwargs))


def test_distributed_matches_single_process() -> None:
    high = _crops(2, 8, 6, seed=0, dtype=torch.float64)
    low = _crops(2, 8, 6, seed=1, dtype=torch.float64)
    queue = _crops(2, 6, 6, seed=2, dtype=torch.float64)
    factory = functools.partial(_wrapped_swav, entropy_weight=2.0, use_sinkhorn=False)
    d_loss, s_loss, d_grads, s_grads = run_distributed_and_single(
        factory, [high, low, queue]
    )
    torch.testing.assert_close(d_loss, s_loss, atol=1e-5, rtol=1e-5)
    assert len(d_grads) == len(s_grads) == 6
    for d_grad, s_grad in zip(d_grads, s_grads, strict=True):
        torch.testing.assert_close(d_grad, s_grad, atol=1e-5, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in s_grads[:4])


def test_gather_distributed_without_process_group_is_single_process() -> None:
    high, low = _crops(2, 4, 5, seed=0), _crops(2, 4, 5, seed=1)
    torch.testing.assert_close(
        ERSwaVLoss(gather_distributed=True, use_sinkhorn=False)(high, low),
        ERSwaVLoss(use_sinkhorn=False)(high, low),
    )


@pytest.mark.parametrize("use_sinkhorn", [False, True])
def test_bfloat16_autocast_stays_finite(use_sinkhorn: bool) -> None:
    torch.manual_seed(0)
    k = 65536
    model = nn.Linear(8, k)
    x = torch.randn(4, 8)
    views = [x + 0.1 * torch.randn_like(x) for _ in range(2)]
    loss_fn = ERSwaVLoss(use_sinkhorn=use_sinkhorn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = [model(v) for v in views]
        assert outputs[0].dtype == torch.bfloat16
        loss = loss_fn(outputs, [])
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert model.weight.grad is not None
    assert torch.isfinite(model.weight.grad).all()
    assert loss_fn.last_components is not None
    assert 0 < loss_fn.last_components.entropy.item() <= math.log(k) + 1e-4
    reference = ERSwaVLoss(use_sinkhorn=use_sinkhorn)(
        [out.detach().float() for out in outputs], []
    )
    torch.testing.assert_close(loss.detach(), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_queue", [False, True])
def test_zero_entropy_weight_has_the_parents_gradient(with_queue: bool) -> None:
    """With Sinkhorn (lightly's default) and weight 0, the gradient is SwAV's."""
    queue = _crops(2, 8, 6, seed=2) if with_queue else None
    grads = []
    for loss_fn in (SwaVLoss(), ERSwaVLoss(use_sinkhorn=True, entropy_weight=0.0)):
        high = [c.requires_grad_() for c in _crops(2, 4, 6, seed=0)]
        low = [c.requires_grad_() for c in _crops(3, 4, 6, seed=1)]
        loss_fn(high, low, queue).backward()
        grads.append(torch.cat([c.grad for c in high + low if c.grad is not None]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
