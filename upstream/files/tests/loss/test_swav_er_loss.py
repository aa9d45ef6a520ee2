import copy
from typing import List, Tuple

import pytest
import torch
from torch import Tensor

from lightly.loss import ERSwaVLoss, SwaVLoss
from tests.ddp_helpers import NUM_PROCESSES, USE_PYTEST_POOL


def _reference_loss(
    high: List[Tensor],
    low: List[Tensor],
    temperature: float,
    epsilon: float,
    entropy_weight: float,
) -> Tensor:
    """SwAV-ER with softmax codes, one crop pair at a time, in float64."""
    codes = [torch.softmax(h.double() / epsilon, dim=1) for h in high]
    crops = high + low
    log_q = [torch.log_softmax(c.double() / temperature, dim=1) for c in crops]
    terms = [
        (code * log_q[v]).sum(dim=1).mean()
        for i, code in enumerate(codes)
        for v in range(len(crops))
        if v != i
    ]
    reconstruction = torch.stack(terms).mean()
    mean = torch.cat([q.exp() for q in log_q[: len(high)]]).mean(dim=0)
    entropy = -(mean * mean.log()).sum()
    return -(entropy_weight * entropy + reconstruction)


def _crops(n_high: int, n_low: int, seed: int) -> Tuple[List[Tensor], List[Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    high = [torch.randn(6, 10, generator=generator) for _ in range(n_high)]
    low = [torch.randn(6, 10, generator=generator) for _ in range(n_low)]
    return high, low


def _rows(x: Tensor, rank: int, world_size: int) -> Tensor:
    return x[rank * len(x) // world_size : (rank + 1) * len(x) // world_size]


def _gather_worker(
    criterion: ERSwaVLoss, high: List[Tensor], low: List[Tensor]
) -> Tuple[int, Tensor, List[Tensor]]:
    """This rank's loss and the gradients of its rows, each rank holding a slice."""
    rank = torch.distributed.get_rank()
    world_size = torch.distributed.get_world_size()
    local = [
        _rows(crop, rank, world_size).clone().requires_grad_(True)
        for crop in high + low
    ]
    loss = criterion(local[: len(high)], local[len(high) :])
    loss.backward()
    return rank, loss.detach(), [x.grad for x in local if x.grad is not None]


def _distributed_crops() -> Tuple[List[Tensor], List[Tensor]]:
    high, low = _crops(2, 2, seed=8)
    return [h.double() for h in high], [x.double() for x in low]


class TestERSwaVLoss:
    def test_is_a_swav_loss(self) -> None:
        assert isinstance(ERSwaVLoss(use_sinkhorn=False), SwaVLoss)

    @pytest.mark.parametrize("n_low", [0, 3])
    @pytest.mark.parametrize("entropy_weight", [0.0, 1.0])
    def test_equal_to_reference(self, n_low: int, entropy_weight: float) -> None:
        high, low = _crops(2, n_low, seed=n_low)
        loss = ERSwaVLoss(entropy_weight=entropy_weight, use_sinkhorn=False)(high, low)
        expected = _reference_loss(high, low, 0.1, 0.05, entropy_weight)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    @pytest.mark.parametrize("sinkhorn_iterations", [1, 3])
    def test_sinkhorn_without_entropy_equals_swav_loss(
        self, sinkhorn_iterations: int
    ) -> None:
        high, low = _crops(2, 4, seed=0)
        loss = SwaVLoss(sinkhorn_iterations=sinkhorn_iterations)(high, low)
        loss_er = ERSwaVLoss(
            sinkhorn_iterations=sinkhorn_iterations,
            use_sinkhorn=True,
            entropy_weight=0.0,
        )(high, low)
        assert loss_er.item() == pytest.approx(loss.item(), rel=1e-5)

    def test_queue_enters_the_entropy(self) -> None:
        high, low = _crops(2, 2, seed=1)
        queue = [torch.zeros(12, 10) for _ in high]
        criterion = ERSwaVLoss(use_sinkhorn=False)
        criterion(high, low)
        assert criterion.last_components is not None
        without_queue = criterion.last_components.entropy.item()
        criterion(high, low, queue)
        assert criterion.last_components.entropy.item() != without_queue

    def test_several_prototype_sets_raise(self) -> None:
        high, low = _crops(2, 0, seed=0)
        with pytest.raises(TypeError, match="prototype sets"):
            ERSwaVLoss(use_sinkhorn=False)([high], [])  # type: ignore[list-item]

    @pytest.mark.DDP
    @pytest.mark.skipif(not USE_PYTEST_POOL, reason="DDP pool is not available")
    @pytest.mark.parametrize("use_sinkhorn", [True, False])
    def test__gather_distributed_matches_one_process_with_the_whole_batch(
        self, use_sinkhorn: bool
    ) -> None:
        # The entropy of the marginal is over the gathered batch, the
        # reconstruction over the rank's rows; with Sinkhorn, its own switch
        # (sinkhorn_gather_distributed, SwaVLoss's) makes the codes the whole
        # batch's. Then the ranks' mean loss and their gradients divided by the
        # world size are those of one process holding the whole batch.
        high, low = _distributed_crops()
        criterion = ERSwaVLoss(
            sinkhorn_gather_distributed=use_sinkhorn,
            use_sinkhorn=use_sinkhorn,
            gather_distributed=True,
        )
        results = sorted(
            pytest.pool.starmap(  # type: ignore[attr-defined]
                _gather_worker, [(criterion, high, low)] * NUM_PROCESSES
            ),
            key=lambda result: result[0],
        )
        whole = [x.clone().requires_grad_(True) for x in high + low]
        loss = copy.deepcopy(criterion)(whole[:2], whole[2:])
        loss.backward()
        mean_loss = sum(rank_loss for _, rank_loss, _ in results) / NUM_PROCESSES
        assert mean_loss.item() == pytest.approx(loss.item(), rel=1e-9)
        for i, x in enumerate(whole):
            grads = torch.cat([grad[i] for _, _, grad in results]) / NUM_PROCESSES
            assert x.grad is not None
            torch.testing.assert_close(grads, x.grad, rtol=1e-7, atol=1e-12)

    @pytest.mark.DDP
    @pytest.mark.skipif(not USE_PYTEST_POOL, reason="DDP pool is not available")
    def test__gather_distributed_leaves_sinkhorn_to_its_own_switch(self) -> None:
        # gather_distributed gathers the entropy term only. Without
        # sinkhorn_gather_distributed, Sinkhorn balances each rank's own rows, as in
        # SwaVLoss: a rank's loss is the global entropy with the reconstruction of
        # codes computed on its rows alone, not the whole batch's loss.
        high, low = _distributed_crops()
        criterion = ERSwaVLoss(gather_distributed=True)
        results = sorted(
            pytest.pool.starmap(  # type: ignore[attr-defined]
                _gather_worker, [(criterion, high, low)] * NUM_PROCESSES
            ),
            key=lambda result: result[0],
        )
        whole = copy.deepcopy(criterion)
        whole_loss = whole(high, low)
        assert whole.last_components is not None
        entropy = whole.last_components.entropy
        for rank, rank_loss, _ in results:
            local_high = [_rows(h, rank, NUM_PROCESSES) for h in high]
            local_low = [_rows(x, rank, NUM_PROCESSES) for x in low]
            reconstruction_loss = ERSwaVLoss(entropy_weight=0.0)(local_high, local_low)
            expected = reconstruction_loss - entropy
            assert rank_loss.item() == pytest.approx(expected.item(), rel=1e-9)
        mean_loss = sum(rank_loss for _, rank_loss, _ in results) / NUM_PROCESSES
        assert abs(mean_loss.item() - whole_loss.item()) > 1e-4
