"""The entropy memory of the ER losses (``entropy_memory_size``).

The memory's estimate is the batch estimate with the stored rows as extra centers
(sphere) or extra rows of the marginal (discrete): it equals the functional estimate
on the concatenation, and an independent numpy computation. Rows join after the
backward, in ring order, only in training; the memory survives save/load and a
2-process gather equals one process.
"""

from __future__ import annotations

import io
import math
from typing import Any, List

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from torch import Tensor, nn
from torch.nn.functional import normalize

from lightly_er.experimental import EntropyEstimator
from lightly_er.functional import discrete_entropy, sphere_entropy
from lightly_er.loss import (
    ERDINOLoss,
    ERLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)
from tests.loss.dist_harness import run_distributed_and_single

F64 = torch.float64
ESTIMATORS = ("plugin", "joe", "renyi2", "knn", "logdet")


def _rows(n: int, d: int, seed: int) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _np_kde(z: np.ndarray, centers: np.ndarray, kappa: float, estimator: str) -> float:
    """The plug-in / Joe estimate at the rows z with the given kernel centers."""
    dim = z.shape[1]
    nu = dim / 2 - 1
    from scipy.special import ive

    log_c = nu * math.log(kappa) - dim / 2 * math.log(2 * math.pi)
    log_c -= math.log(ive(nu, kappa)) + kappa
    log_p = log_c + logsumexp(kappa * z @ centers.T, axis=1) - math.log(len(centers))
    if estimator == "joe":
        return float(-log_p.mean())
    return float(-(softmax(log_p) * log_p).sum())


def _fill(loss: nn.Module, rows: Tensor) -> None:
    """Stores rows in a BYOL-ER loss's memory: one training call and its backward."""
    prediction = rows.clone().requires_grad_(True)
    loss(prediction, torch.zeros_like(rows) + 1.0).backward()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sphere_memory_estimate_is_the_estimate_with_the_stored_centres(
    estimator: str,
) -> None:
    loss = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(name=estimator, memory_size=32), prediction="x0"
    )
    stored = _rows(12, 6, seed=0)
    _fill(loss, stored)
    assert int(loss.entropy_memory.count) == 12
    batch = _rows(8, 6, seed=1).requires_grad_(True)
    entropy = loss.forward_components(batch, _rows(8, 6, seed=2)).entropy
    expected = sphere_entropy(
        normalize(batch, dim=1), 10.0, estimator, extra_support=normalize(stored, dim=1)
    )
    torch.testing.assert_close(entropy, expected, rtol=1e-10, atol=1e-10)
    if estimator in ("plugin", "joe"):
        # And an independent computation with the concatenation as centers.
        z = normalize(batch, dim=1).detach().numpy()
        centers = np.concatenate([z, normalize(stored, dim=1).numpy()])
        assert float(entropy.detach()) == pytest.approx(
            _np_kde(z, centers, 10.0, estimator), rel=1e-10
        )


@pytest.mark.parametrize("estimator", ("plugin", "joe", "renyi2"))
def test_a_memory_holding_the_batch_leaves_the_kernel_estimate_unchanged(
    estimator: str,
) -> None:
    # Duplicated centers give the same kernel density: the memory's estimate equals
    # the memory-less batch estimate when the memory holds the batch's own rows.
    rows = _rows(10, 5, seed=3)
    with_memory = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(name=estimator, memory_size=10), prediction="x0"
    )
    _fill(with_memory, rows)
    plain = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(name=estimator), prediction="x0"
    )
    target = _rows(10, 5, seed=4)
    a = with_memory.forward_components(rows.clone().requires_grad_(True), target)
    b = plain.forward_components(rows.clone().requires_grad_(True), target)
    torch.testing.assert_close(a.entropy, b.entropy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-12, atol=1e-12)


def test_discrete_memory_marginal_is_the_marginal_of_the_concatenation() -> None:
    loss = ERDINOLoss(
        output_dim=7,
        student_temp=0.5,
        estimator=EntropyEstimator(memory_size=64),
        centering=False,
    )
    g = torch.Generator().manual_seed(5)
    history: List[Tensor] = []
    for _ in range(3):
        teacher = [torch.randn(4, 7, generator=g, dtype=F64) for _ in range(2)]
        student = [
            torch.randn(4, 7, generator=g, dtype=F64).requires_grad_(True)
            for _ in range(4)
        ]
        components = loss.forward_components(teacher, student, epoch=40)
        rows = torch.cat([torch.softmax(s / 0.5, dim=1) for s in student[:2]]).detach()
        expected = discrete_entropy(torch.cat(history + [rows]))
        torch.testing.assert_close(components.entropy, expected, rtol=1e-12, atol=1e-12)
        components.loss.backward()
        history.append(rows)
    # 64 rows in slots of one call's 8 rows: 8 slots, 3 filled.
    assert loss.entropy_memory.counts.tolist() == [8, 8, 8, 0, 0, 0, 0, 0]


def test_discrete_memory_of_swav_and_erloss() -> None:
    g = torch.Generator().manual_seed(6)
    swav = ERSwaVLoss(estimator=EntropyEstimator(memory_size=16), use_sinkhorn=False)
    first = [
        torch.randn(4, 5, generator=g, dtype=F64).requires_grad_(True) for _ in range(2)
    ]
    swav(first, []).backward()
    second = [
        torch.randn(4, 5, generator=g, dtype=F64).requires_grad_(True) for _ in range(2)
    ]
    queue = [torch.randn(3, 5, generator=g, dtype=F64) for _ in range(2)]
    entropy = swav.forward_components(second, [], queue).entropy
    p = lambda xs: torch.cat([torch.softmax(x.detach() / 0.1, dim=1) for x in xs])  # noqa: E731
    expected = discrete_entropy(torch.cat([p(first), p(second), p(queue)]))
    torch.testing.assert_close(entropy, expected, rtol=1e-12, atol=1e-12)
    # The queue's rows are not remembered, only the crops'.
    assert int(swav.entropy_memory.counts.sum()) == 8
    er = ERLoss(support="discrete", estimator=EntropyEstimator(memory_size=8))
    a = _rows(4, 6, seed=7).requires_grad_(True)
    b = _rows(4, 6, seed=8).requires_grad_(True)
    er(a, b).backward()
    c, d = _rows(4, 6, seed=9), _rows(4, 6, seed=10)
    entropy = er.forward_components(c, d).entropy
    expected = discrete_entropy(
        torch.softmax(torch.cat([a, b, c, d]).detach() / 0.1, 1)
    )
    torch.testing.assert_close(entropy, expected, rtol=1e-12, atol=1e-12)


def test_rows_join_after_the_backward_and_only_in_training() -> None:
    loss = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(memory_size=16), prediction="x0"
    )
    p0, p1 = _rows(4, 6, 0).requires_grad_(True), _rows(4, 6, 1).requires_grad_(True)
    z0, z1 = _rows(4, 6, 2), _rows(4, 6, 3)
    first = loss.forward_components(p0, z1)
    # BYOL's symmetric step: the second call must not see the first view's rows.
    second = loss.forward_components(p1, z0)
    plain = ERNegativeCosineSimilarity(prediction="x0").forward_components(p1, z0)
    torch.testing.assert_close(second.entropy, plain.entropy)
    assert int(loss.entropy_memory.count) == 0
    (first.loss + second.loss).backward()
    assert int(loss.entropy_memory.count) == 8
    stored = loss.entropy_memory.rows[:8]
    torch.testing.assert_close(
        stored, torch.cat([normalize(p0, dim=1), normalize(p1, dim=1)]).detach()
    )
    # Evaluation (no gradient) reads the memory but adds nothing to it.
    with torch.no_grad():
        loss(p0, z1)
    loss(p0.detach(), z1)
    assert int(loss.entropy_memory.count) == 8


def test_the_memory_is_a_ring_of_the_latest_rows() -> None:
    loss = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(memory_size=10), prediction="x0"
    )
    batches = [_rows(4, 3, seed=s) for s in range(4)]
    for rows in batches:
        _fill(loss, rows)
    memory = loss.entropy_memory
    assert int(memory.count) == 10 and int(memory.pointer) == 6
    latest = torch.cat([normalize(b, dim=1) for b in batches])[-10:]
    # Slots 0..5 hold the newest 6 rows, slots 6..9 the 4 before them.
    torch.testing.assert_close(memory.rows, torch.cat([latest[4:], latest[:4]]))
    # A batch larger than the memory keeps its last rows.
    big = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(memory_size=3), prediction="x0"
    )
    rows = _rows(5, 3, seed=9)
    _fill(big, rows)
    torch.testing.assert_close(
        big.entropy_memory.rows.sort(dim=0).values,
        normalize(rows, dim=1)[-3:].sort(dim=0).values,
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: ERNegativeCosineSimilarity(
            estimator=EntropyEstimator(memory_size=16), prediction="x0"
        ),
        lambda: ERLoss(estimator=EntropyEstimator(memory_size=16)),
        lambda: ERNTXentLoss(0.2, estimator=EntropyEstimator(memory_size=16)),
    ],
)
def test_memory_survives_save_and_load(make: Any) -> None:
    loss = make()
    for seed in range(2):
        x0 = _rows(4, 5, seed).requires_grad_(True)
        x1 = _rows(4, 5, seed + 10).requires_grad_(True)
        loss(x0, x1).backward()
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    fresh = make()  # its memory has not stored anything: it takes the saved dim
    fresh.load_state_dict(torch.load(buffer))
    for name in ("rows", "pointer", "count"):
        assert torch.equal(
            getattr(fresh.entropy_memory, name), getattr(loss.entropy_memory, name)
        )
    x0, x1 = _rows(4, 5, 20), _rows(4, 5, 21)
    torch.testing.assert_close(
        fresh.forward_components(x0, x1).entropy,
        loss.forward_components(x0, x1).entropy,
    )
    # The discrete memory too.
    dino = ERDINOLoss(
        output_dim=6, estimator=EntropyEstimator(memory_size=8), centering=False
    )
    teacher = [_rows(2, 6, 1), _rows(2, 6, 2)]
    dino(teacher, [_rows(2, 6, s).requires_grad_(True) for s in range(3)]).backward()
    restored = ERDINOLoss(
        output_dim=6, estimator=EntropyEstimator(memory_size=8), centering=False
    )
    restored.load_state_dict(dino.state_dict())
    student = [_rows(2, 6, s) for s in range(5, 8)]
    torch.testing.assert_close(
        restored.forward_components(teacher, student).entropy,
        dino.forward_components(teacher, student).entropy,
    )


def test_without_memory_the_state_dict_is_the_parents() -> None:
    assert ERNegativeCosineSimilarity(prediction="x0").state_dict() == {}
    assert "entropy_memory" not in dict(
        ERDINOLoss(output_dim=4, centering=False).named_modules()
    )


def test_memory_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="memory_size must be >= 0"):
        ERNegativeCosineSimilarity(
            estimator=EntropyEstimator(memory_size=-1), prediction="x0"
        )
    with pytest.raises(TypeError, match="memory_size must be an int"):
        ERDINOLoss(
            output_dim=4, estimator=EntropyEstimator(memory_size=2.5), centering=False
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MoCo-ER's bank is its entropy memory"):
        ERNTXentLoss(
            0.1, memory_bank_size=(16, 4), estimator=EntropyEstimator(memory_size=8)
        )
    with pytest.raises(ValueError, match="memory_size must be an int for a discrete"):
        ERLoss(support="discrete", estimator=EntropyEstimator(memory_size=(4, 2)))
    loss = ERNegativeCosineSimilarity(
        estimator=EntropyEstimator(memory_size=(8, 3)), prediction="x0"
    )
    assert tuple(loss.entropy_memory.rows.shape) == (8, 3)
    with pytest.raises(ValueError, match="dim 3"):
        loss(_rows(4, 5, 0).requires_grad_(True), _rows(4, 5, 1))


class _TwoSteps(nn.Module):
    """Two training steps of a loss, the second returned: the first fills the memory."""

    def __init__(self, loss: nn.Module, dino: bool = False) -> None:
        super().__init__()
        self.loss = loss
        self.dino = dino

    def forward(self, *args: Tensor) -> Tensor:
        if self.dino:
            t0, t1, s0, s1, t2, t3, s2, s3 = args
            first = self.loss([t0, t1], [s0, s1])
            first.backward(retain_graph=True)
            # The teacher has no gradient; a zero term gives the harness one.
            zero = 0.0 * sum(t.sum() for t in (t0, t1, t2, t3))
            return self.loss([t2, t3], [s2, s3]) + zero  # type: ignore[no-any-return]
        a, b, c, d = args
        first = self.loss(a, b)
        first.backward(retain_graph=True)
        return self.loss(c, d)  # type: ignore[no-any-return]


def _byol_two_steps(gather_distributed: bool) -> nn.Module:
    return _TwoSteps(
        ERNegativeCosineSimilarity(
            gather_distributed=gather_distributed,
            estimator=EntropyEstimator(memory_size=64),
            prediction="x0",
        )
    )


def _dino_two_steps(gather_distributed: bool) -> nn.Module:
    return _TwoSteps(
        ERDINOLoss(
            output_dim=5,
            gather_distributed=gather_distributed,
            student_temp=0.3,
            estimator=EntropyEstimator(memory_size=64),
            centering=False,
        ),
        dino=True,
    )


@pytest.mark.parametrize("factory", [_byol_two_steps, _dino_two_steps])
def test_two_processes_hold_one_memory(factory: Any) -> None:
    # The second step's loss and gradients with the gathered memory equal one process
    # that holds both halves (the first step's gradients are accumulated in both).
    g = torch.Generator().manual_seed(11)
    if factory is _dino_two_steps:
        args = [torch.randn(8, 5, generator=g) for _ in range(8)]
    else:
        args = [torch.randn(8, 6, generator=g) for _ in range(4)]
    dist_loss, single_loss, dist_grads, single_grads = run_distributed_and_single(
        factory, args
    )
    torch.testing.assert_close(dist_loss, single_loss, rtol=1e-5, atol=1e-6)
    assert len(dist_grads) == len(single_grads)
    for got, expected in zip(dist_grads, single_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
