import copy
import math
from typing import List, Tuple

import pytest
import torch
from torch import Tensor
from torch.nn.functional import normalize

from lightly.loss import ERNegativeCosineSimilarity, NegativeCosineSimilarity
from lightly.utils.entropy_reconstruction import log_vmf_normalizer
from tests.ddp_helpers import NUM_PROCESSES, USE_PYTEST_POOL


def _reference_loss(
    p: Tensor, z: Tensor, kappa: float, entropy_weight: float
) -> Tensor:
    """-(w * H(p) + E[log q(z | p)]) / kappa, the entropy of the predictions p."""
    p = normalize(p.double(), dim=1)
    z = normalize(z.double(), dim=1)
    log_norm = log_vmf_normalizer(p.shape[1], torch.tensor(kappa, dtype=torch.float64))
    log_density = torch.stack(
        [
            log_norm + torch.logsumexp(kappa * (p @ p[i]), dim=0) - math.log(len(p))
            for i in range(len(p))
        ]
    )
    entropy = -(torch.softmax(log_density, dim=0) * log_density).sum()
    reconstruction = log_norm + kappa * (p * z).sum(dim=1).mean()
    return -(entropy_weight * entropy + reconstruction) / kappa


def _prediction_and_target(seed: int) -> Tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    p = torch.randn(8, 6, generator=generator, dtype=torch.float64)
    z = torch.randn(8, 6, generator=generator, dtype=torch.float64)
    return p.requires_grad_(True), z


def _gather_worker(
    criterion: ERNegativeCosineSimilarity, x0: Tensor, x1: Tensor
) -> Tuple[int, Tensor, List[Tensor]]:
    """This rank's loss and the gradients of its rows, each rank holding a slice."""
    rank = torch.distributed.get_rank()
    world_size = torch.distributed.get_world_size()
    rows = slice(rank * len(x0) // world_size, (rank + 1) * len(x0) // world_size)
    local = [
        x0[rows].clone().requires_grad_(True),
        x1[rows].clone().requires_grad_(True),
    ]
    loss = criterion(*local)
    loss.backward()
    grads = [x.grad for x in local]
    assert grads[0] is not None and grads[1] is not None
    return rank, loss.detach(), [grads[0], grads[1]]


class TestERNegativeCosineSimilarity:
    def test_is_a_negative_cosine_similarity(self) -> None:
        assert isinstance(ERNegativeCosineSimilarity(), NegativeCosineSimilarity)

    @pytest.mark.parametrize("kappa", [1.0, 10.0])
    @pytest.mark.parametrize("entropy_weight", [0.0, 1.0])
    def test_equal_to_reference(self, kappa: float, entropy_weight: float) -> None:
        p, z = _prediction_and_target(seed=0)
        byol = ERNegativeCosineSimilarity(
            kappa=kappa, entropy_weight=entropy_weight, prediction="x0"
        )
        simsiam = ERNegativeCosineSimilarity(
            kappa=kappa, entropy_weight=entropy_weight, prediction="x1"
        )
        expected = _reference_loss(p.detach(), z, kappa, entropy_weight)
        # BYOL calls criterion(p, z), SimSiam criterion(z, p): the same loss.
        assert byol(p, z).item() == pytest.approx(expected.item(), rel=1e-9)
        assert simsiam(z, p).item() == pytest.approx(expected.item(), rel=1e-9)

    def test_zero_entropy_weight_has_the_parents_gradient(self) -> None:
        # The loss is divided by kappa: the reconstruction's gradient is the cosine's.
        p, z = _prediction_and_target(seed=1)
        ERNegativeCosineSimilarity(entropy_weight=0.0)(p, z).backward()
        assert p.grad is not None
        grad_er = p.grad.clone()
        p.grad = None
        NegativeCosineSimilarity()(p, z).backward()
        torch.testing.assert_close(grad_er, p.grad)

    def test_feature_maps_have_the_parents_gradient_at_weight_zero(self) -> None:
        x0 = torch.randn(4, 6, 3, 2, requires_grad=True)
        x1 = torch.randn(4, 6, 3, 2)
        ERNegativeCosineSimilarity(entropy_weight=0.0)(x0, x1).backward()
        assert x0.grad is not None
        grad_er = x0.grad.clone()
        x0.grad = None
        NegativeCosineSimilarity()(x0, x1).backward()
        torch.testing.assert_close(grad_er, x0.grad)

    @pytest.mark.DDP
    @pytest.mark.skipif(not USE_PYTEST_POOL, reason="DDP pool is not available")
    @pytest.mark.parametrize("prediction", ["x0", "both"])
    def test__gather_distributed_matches_one_process_with_the_whole_batch(
        self, prediction: str
    ) -> None:
        # The entropy is over the gathered predictions (both inputs with "both"),
        # the reconstruction over the rank's rows: the ranks' mean loss is the loss
        # of one process holding the whole batch, and each rank's gradient divided
        # by the world size is that process's gradient of its rows.
        generator = torch.Generator().manual_seed(5)
        x0 = torch.randn(16, 8, generator=generator, dtype=torch.float64)
        x1 = torch.randn(16, 8, generator=generator, dtype=torch.float64)
        criterion = ERNegativeCosineSimilarity(
            gather_distributed=True,
            prediction="x0" if prediction == "x0" else "both",
        )
        results = sorted(
            pytest.pool.starmap(  # type: ignore[attr-defined]
                _gather_worker, [(criterion, x0, x1)] * NUM_PROCESSES
            ),
            key=lambda result: result[0],
        )
        whole = [x0.clone().requires_grad_(True), x1.clone().requires_grad_(True)]
        loss = copy.deepcopy(criterion)(*whole)
        loss.backward()
        mean_loss = sum(rank_loss for _, rank_loss, _ in results) / NUM_PROCESSES
        assert mean_loss.item() == pytest.approx(loss.item(), rel=1e-9)
        for i, x in enumerate(whole):
            grads = torch.cat([grad[i] for _, _, grad in results]) / NUM_PROCESSES
            assert x.grad is not None
            torch.testing.assert_close(grads, x.grad, rtol=1e-7, atol=1e-12)
