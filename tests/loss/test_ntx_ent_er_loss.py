"""Tests for lightly_er.loss.ntx_ent_er_loss.ERNTXentLoss: SimCLR-ER and MoCo-ER."""

from __future__ import annotations

import copy
import functools
import math
from typing import Iterator, List, Tuple

import lightly
import pytest
import torch
from lightly.loss import NTXentLoss
from lightly.models.utils import update_momentum
from torch import Tensor, nn
from torch.nn.functional import normalize

from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import log_vmf_normalizer, sphere_entropy, vmf_reconstruction
from lightly_er.loss.ntx_ent_er_loss import ERNTXentLoss
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


_LIGHTLY = tuple(int(part) for part in lightly.__version__.split(".")[:2])


def _views(n: int = 16, d: int = 8, seed: int = 0) -> Tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    out0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    out1 = out0 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return out0, out1


def _fill_bank(loss_fn: ERNTXentLoss, seed: int = 100) -> None:
    """Replaces the random initial bank by keys of a known distribution."""
    size, dim = loss_fn.memory_bank.size
    g = torch.Generator().manual_seed(seed)
    keys = normalize(torch.randn(size, dim, generator=g), dim=1)
    loss_fn.memory_bank.bank.copy_(keys)


# ---------------------------------------------------------------------------------------
# Construction and arguments
# ---------------------------------------------------------------------------------------
def test_is_ntxent_loss_with_defaults() -> None:
    loss_fn = ERNTXentLoss()
    assert isinstance(loss_fn, NTXentLoss)
    assert loss_fn.temperature == 0.5
    assert loss_fn.memory_bank.size == (0,)
    assert loss_fn.gather_distributed is False
    assert loss_fn.kappa == 2.0  # 1 / temperature
    assert (loss_fn.entropy_weight, loss_fn.estimator) == (1.0, EntropyEstimator())
    assert loss_fn.last_components is None


def test_parent_arguments_positional_and_keyword() -> None:
    positional = ERNTXentLoss(0.2, (32, 8), True)
    keyword = ERNTXentLoss(
        temperature=0.2, memory_bank_size=(32, 8), gather_distributed=True
    )
    for loss_fn in (positional, keyword):
        assert loss_fn.temperature == 0.2
        assert loss_fn.memory_bank.size == (32, 8)
        assert loss_fn.memory_bank.bank.shape == (32, 8)
        assert loss_fn.gather_distributed is True
        assert loss_fn.memory_bank.gather_distributed is True
        assert loss_fn.kappa == pytest.approx(5.0)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kappa": 0.0}, "kappa"),
        ({"kappa": -2.0}, "kappa"),
        ({"entropy_weight": -1.0}, "entropy_weight"),
        ({"estimator": "kde"}, "estimator"),
        ({"temperature": 0.0}, "temperature"),  # the parent's check
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ERNTXentLoss(**kwargs)  # type: ignore[arg-type]


@pytest.mark.skipif(
    _LIGHTLY < (1, 6), reason="lightly < 1.6 accepts an int bank size with a warning"
)
def test_the_parents_bank_check_applies() -> None:
    with pytest.raises(ValueError, match="size"):
        ERNTXentLoss(memory_bank_size=16)


def test_negative_temperature_allowed_with_explicit_kappa() -> None:
    assert ERNTXentLoss(temperature=-0.5, kappa=2.0).kappa == 2.0


@pytest.mark.parametrize(
    "shape0, shape1, name",
    [
        ((8,), (8,), "out0"),
        ((4, 8), (4, 8, 2), "out1"),
        ((4, 8), (3, 8), "out0 and out1 must have the same shape"),
    ],
)
def test_bad_shapes_raise(
    shape0: Tuple[int, ...], shape1: Tuple[int, ...], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        ERNTXentLoss()(torch.randn(shape0), torch.randn(shape1))


# ---------------------------------------------------------------------------------------
# SimCLR-ER values
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["joe", "plugin"])
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_simclr_matches_functional(estimator: str, leave_one_out: bool) -> None:
    out0, out1 = _views()
    loss_fn = ERNTXentLoss(
        0.25,
        entropy_weight=0.6,
        estimator=EntropyEstimator(name=estimator, leave_one_out=leave_one_out),
    )
    loss = loss_fn(out0, out1)
    components = loss_fn.forward_components(out0, out1)
    assert loss.shape == ()
    torch.testing.assert_close(loss, components.loss)

    z0, z1 = normalize(out0, dim=1), normalize(out1, dim=1)
    kw = {"estimator": estimator, "leave_one_out": leave_one_out}
    entropy = 0.5 * (sphere_entropy(z0, 4.0, **kw) + sphere_entropy(z1, 4.0, **kw))  # type: ignore[arg-type]
    reconstruction = vmf_reconstruction(z1, z0, 4.0)
    torch.testing.assert_close(components.entropy, entropy)
    torch.testing.assert_close(components.reconstruction, reconstruction)
    torch.testing.assert_close(loss, -(0.6 * entropy + reconstruction))


def test_simclr_hand_formula() -> None:
    # With entropy_weight 1 the vMF normalizer cancels and kappa = 1 / temperature:
    # loss = mean_v mean_i logsumexp_j(z_vi.z_vj / t) - log N - mean_i z0_i.z1_i / t
    out0, out1 = _views(n=10, d=5, seed=2)
    t = 0.2
    z0, z1 = normalize(out0, dim=1), normalize(out1, dim=1)
    lse = [torch.logsumexp(z @ z.T / t, dim=1).mean() for z in (z0, z1)]
    expected = 0.5 * (lse[0] + lse[1]) - math.log(10) - (z0 * z1).sum(1).mean() / t
    torch.testing.assert_close(
        ERNTXentLoss(t, estimator=EntropyEstimator(name="joe"))(out0, out1), expected
    )


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_reconstruction_is_on_the_logit_scale(temperature: float) -> None:
    # kappa = 1 / temperature: without the entropy term the gradient is that of
    # NT-Xent's positive logit, -mean_i cos(z0_i, z1_i) / temperature.
    out0, out1 = _views(n=10, d=5, seed=4)
    a0, a1 = (t.clone().requires_grad_(True) for t in (out0, out1))
    b0, b1 = (t.clone().requires_grad_(True) for t in (out0, out1))
    ERNTXentLoss(temperature, entropy_weight=0.0)(a0, a1).backward()
    positive = (normalize(b0, dim=1) * normalize(b1, dim=1)).sum(1).mean()
    (-positive / temperature).backward()
    for ours, expected in ((a0.grad, b0.grad), (a1.grad, b1.grad)):
        assert ours is not None and expected is not None
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-12)


def test_last_components_detached() -> None:
    out0, out1 = (t.requires_grad_(True) for t in _views())
    loss_fn = ERNTXentLoss(0.1)
    components = loss_fn.forward_components(out0, out1)
    assert components.loss.requires_grad
    last = loss_fn.last_components
    assert last is not None
    for value, recorded in zip(components, last, strict=True):
        assert not recorded.requires_grad
        torch.testing.assert_close(recorded, value.detach())


# ---------------------------------------------------------------------------------------
# MoCo-ER: the memory bank
# ---------------------------------------------------------------------------------------
def test_moco_uses_bank_as_extra_kernel_centres() -> None:
    out0, out1 = _views(n=8, d=6)
    out0.requires_grad_(True)
    loss_fn = ERNTXentLoss(0.2, (24, 6), entropy_weight=0.8)
    _fill_bank(loss_fn)
    bank = loss_fn.memory_bank.bank.clone()
    components = loss_fn.forward_components(out0, out1)

    z0, z1 = normalize(out0, dim=1), normalize(out1, dim=1)
    entropy = sphere_entropy(z0, 5.0, extra_support=bank)
    torch.testing.assert_close(components.entropy, entropy)
    torch.testing.assert_close(
        components.reconstruction, vmf_reconstruction(z1, z0, 5.0)
    )
    torch.testing.assert_close(
        components.loss, -(0.8 * entropy + vmf_reconstruction(z1, z0, 5.0))
    )
    # The bank changes the estimate: it differs from the queries-only value and
    # from SimCLR-ER's.
    assert (components.entropy - sphere_entropy(z0, 5.0)).abs() > 0.1
    no_bank = ERNTXentLoss(0.2).forward_components(out0, out1)
    assert (components.entropy - no_bank.entropy).abs() > 0.1
    torch.testing.assert_close(components.reconstruction, no_bank.reconstruction)


def test_moco_hand_formula() -> None:
    # loss = mean_i logsumexp_{c in queries + bank}(q_i.c / t) - log(N + M)
    #        - mean_i q_i.k_i / t
    out0, out1 = _views(n=6, d=4, seed=9)
    t = 0.3
    loss_fn = ERNTXentLoss(t, (10, 4), estimator=EntropyEstimator(name="joe"))
    _fill_bank(loss_fn)
    centers = torch.cat([normalize(out0, dim=1), loss_fn.memory_bank.bank.double()])
    q, k = normalize(out0, dim=1), normalize(out1, dim=1)
    expected = (
        torch.logsumexp(q @ centers.T / t, dim=1).mean()
        - math.log(16)
        - (q * k).sum(1).mean() / t
    )
    torch.testing.assert_close(loss_fn(out0, out1), expected)


def test_moco_bank_updates_like_parent() -> None:
    size = (20, 6)
    ours, parent = ERNTXentLoss(0.2, size), NTXentLoss(0.2, size)
    parent.memory_bank.bank.copy_(ours.memory_bank.bank)
    initial = ours.memory_bank.bank.clone()
    for step in range(4):  # 4 batches of 8 wrap around a bank of 20
        # float32: the parent's einsum does not mix the float32 bank with float64.
        out0, out1 = (t.float() for t in _views(n=8, d=6, seed=step))
        out0.requires_grad_(True)
        ours(out0, out1)
        parent(out0, out1)
        torch.testing.assert_close(ours.memory_bank.bank, parent.memory_bank.bank)
        assert torch.equal(ours.memory_bank.bank_ptr, parent.memory_bank.bank_ptr)
    assert not torch.equal(ours.memory_bank.bank, initial)
    # The keys of the last batch are in the bank, normalized.
    last_keys = normalize(out1, dim=1)
    ptr = int(ours.memory_bank.bank_ptr)
    torch.testing.assert_close(ours.memory_bank.bank[ptr - 8 : ptr], last_keys)

    # Without gradient on the queries (evaluation), the bank stays as it is.
    before = ours.memory_bank.bank.clone()
    with torch.no_grad():
        ours(*(t.float() for t in _views(n=8, d=6, seed=11)))
    assert torch.equal(ours.memory_bank.bank, before)


def test_moco_bank_is_read_before_update() -> None:
    # The entropy uses the bank as it was before this batch's keys were enqueued.
    out0, out1 = _views(n=8, d=6)
    out0.requires_grad_(True)
    loss_fn = ERNTXentLoss(0.2, (16, 6))
    _fill_bank(loss_fn)
    before = loss_fn.memory_bank.bank.clone()
    entropy = loss_fn.forward_components(out0, out1).entropy
    z0 = normalize(out0, dim=1)
    torch.testing.assert_close(entropy, sphere_entropy(z0, 5.0, extra_support=before))


def test_moco_keys_get_gradient_only_from_reconstruction() -> None:
    out0, out1 = (t.requires_grad_(True) for t in _views(n=8, d=6))
    loss_fn = ERNTXentLoss(0.2, (16, 6))
    loss_fn(out0, out1).backward()
    k0, k1 = (t.detach().clone().requires_grad_(True) for t in (out0, out1))
    (-vmf_reconstruction(normalize(k1, dim=1), normalize(k0, dim=1), 5.0)).backward()
    torch.testing.assert_close(out1.grad, k1.grad)
    assert out0.grad is not None and k0.grad is not None
    assert (out0.grad - k0.grad).abs().max() > 1e-3  # the entropy reaches the queries
    assert not loss_fn.memory_bank.bank.requires_grad


# ---------------------------------------------------------------------------------------
# Gradients, collapse and training
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("memory_bank_size", [0, (32, 8)])
def test_gradient_reaches_every_parameter(memory_bank_size: object) -> None:
    torch.manual_seed(0)
    backbone, head = nn.Linear(16, 32), nn.Linear(32, 8)
    x0, x1 = torch.randn(16, 16), torch.randn(16, 16)
    loss_fn = ERNTXentLoss(0.1, memory_bank_size)  # type: ignore[arg-type]
    loss = loss_fn(head(backbone(x0)), head(backbone(x1)))
    loss.backward()
    for name, p in [*backbone.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("memory_bank_size", [0, (32, 16)])
def test_collapse_is_penalised(memory_bank_size: object) -> None:
    n = 16
    spread = normalize(torch.randn(n, 16, dtype=torch.float64), dim=1)
    collapsed = spread[:1].repeat(n, 1)
    losses, terms = [], []
    for out in (spread, collapsed):
        loss_fn = ERNTXentLoss(0.1, memory_bank_size)  # type: ignore[arg-type]
        if memory_bank_size:
            _fill_bank(loss_fn)
        losses.append(loss_fn(out, out))
        terms.append(loss_fn.last_components)
    assert terms[0] is not None and terms[1] is not None
    torch.testing.assert_close(terms[0].reconstruction, terms[1].reconstruction)
    assert losses[1] > losses[0] + 0.5


def _clusters(n_per_cluster: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(8, 16, generator=g)
    return centers.repeat_interleave(n_per_cluster, dim=0) + 0.5 * torch.randn(
        8 * n_per_cluster, 16, generator=g
    )


def _normalised_entropy(encoder: nn.Module, x: Tensor) -> float:
    """(H - H_min) / log N of the embeddings of x, kappa = 10; 1 = no overlap."""
    with torch.no_grad():
        z = normalize(encoder(x), dim=1)
    h_min = -log_vmf_normalizer(z.shape[1], 10.0).item() - 10.0
    return (sphere_entropy(z, 10.0).item() - h_min) / math.log(len(x))


def _encoder() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))


def _train_simclr(entropy_weight: float) -> Tuple[List[float], float]:
    torch.manual_seed(0)
    x = _clusters(8, seed=0)
    g = torch.Generator().manual_seed(1)
    view0 = x + 0.1 * torch.randn(x.shape, generator=g)
    view1 = x + 0.1 * torch.randn(x.shape, generator=g)
    encoder = _encoder()
    loss_fn = ERNTXentLoss(0.1, entropy_weight=entropy_weight)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = loss_fn(encoder(view0), encoder(view1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, _normalised_entropy(encoder, x)


def _train_moco(entropy_weight: float) -> Tuple[List[float], float]:
    """MoCo: 256 points, batches of 32, momentum key encoder, a bank of 128 keys."""
    torch.manual_seed(0)
    x = _clusters(32, seed=0)
    g = torch.Generator().manual_seed(1)
    encoder = _encoder()
    key_encoder = copy.deepcopy(encoder).requires_grad_(False)
    loss_fn = ERNTXentLoss(0.1, (128, 16), entropy_weight=entropy_weight)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        batch = x[torch.randint(0, len(x), (32,), generator=g)]
        view0 = batch + 0.1 * torch.randn(batch.shape, generator=g)
        view1 = batch + 0.1 * torch.randn(batch.shape, generator=g)
        update_momentum(encoder, key_encoder, 0.9)
        with torch.no_grad():
            keys = key_encoder(view1)
        loss = loss_fn(encoder(view0), keys)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, _normalised_entropy(encoder, x)


def test_simclr_training_decreases_loss_and_keeps_entropy(one_thread: None) -> None:
    # Measured: normalized entropy 0.988 (0.22 without the entropy term).
    losses, entropy = _train_simclr(1.0)
    assert losses[-1] < losses[0] - 1.0
    assert entropy > 0.9
    _, entropy_without = _train_simclr(0.0)
    assert entropy > entropy_without + 0.5


def test_moco_training_decreases_loss_and_keeps_entropy(one_thread: None) -> None:
    # The first 4 steps use the bank's random initial keys, whose spread inflates
    # the entropy estimate, so the trend is measured once the bank holds real keys.
    # Measured (seeds 0-2): mean loss -2.3..-2.5 over steps 5-9, -3.6..-3.9 over the
    # last 5; normalized entropy of all points 0.77-0.84 (0.37-0.40 without the term).
    losses, entropy = _train_moco(1.0)
    assert sum(losses[-5:]) / 5 < sum(losses[5:10]) / 5 - 0.5
    assert entropy > 0.65
    _, entropy_without = _train_moco(0.0)
    assert entropy > entropy_without + 0.25


# ---------------------------------------------------------------------------------------
# Distributed and mixed precision
# ---------------------------------------------------------------------------------------
def test_distributed_matches_single_process() -> None:
    out0, out1 = _views(n=8, d=6, seed=7)
    factory = functools.partial(ERNTXentLoss, 0.3, entropy_weight=0.7)
    d_loss, s_loss, d_grads, s_grads = run_distributed_and_single(factory, [out0, out1])
    torch.testing.assert_close(d_loss, s_loss, atol=1e-5, rtol=1e-5)
    for d_grad, s_grad in zip(d_grads, s_grads, strict=True):
        torch.testing.assert_close(d_grad, s_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_bank", [False, True])
@pytest.mark.parametrize("kappa", [1.0, 100.0])
@pytest.mark.parametrize("dim", [16, 65536])
def test_bf16_autocast_is_finite(use_bank: bool, kappa: float, dim: int) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, dim)
    memory_bank_size = (16, dim) if use_bank else 0
    loss_fn = ERNTXentLoss(0.1, memory_bank_size, kappa=kappa)
    x0, x1 = torch.randn(8, 16), torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out0, out1 = layer(x0), layer(x1)
        assert out0.dtype == torch.bfloat16
        loss = loss_fn(out0, out1)
        loss = loss_fn(out0, out1)  # a second call reads the keys just enqueued
    assert torch.isfinite(loss)
    assert loss_fn.last_components is not None
    assert all(bool(torch.isfinite(t)) for t in loss_fn.last_components)
    loss.backward()
    assert layer.weight.grad is not None
    assert bool(torch.isfinite(layer.weight.grad).all())
