from typing import List, Tuple

import pytest
import torch
from torch import Tensor

from lightly.loss import ERSwaVLoss, SwaVLoss


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
