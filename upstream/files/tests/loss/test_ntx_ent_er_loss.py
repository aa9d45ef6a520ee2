import math
from typing import Optional, Tuple

import pytest
import torch
from torch import Tensor
from torch.nn.functional import normalize

from lightly.loss import ERNTXentLoss, NTXentLoss
from lightly.utils.entropy_reconstruction import log_vmf_normalizer
from tests.ddp_helpers import NUM_PROCESSES, USE_PYTEST_POOL


def _reference_entropy(z: Tensor, kappa: float, bank: Optional[Tensor]) -> Tensor:
    """Plug-in vMF kernel-density entropy of z, the bank's keys as extra centers."""
    support = z if bank is None else torch.cat([z, bank])
    log_norm = log_vmf_normalizer(z.shape[1], torch.tensor(kappa, dtype=torch.float64))
    log_density = torch.stack(
        [
            log_norm
            + torch.logsumexp(kappa * (support @ z[i]), dim=0)
            - math.log(len(support))
            for i in range(len(z))
        ]
    )
    weights = torch.softmax(log_density, dim=0)
    return -(weights * log_density).sum()


def _reference_loss(
    out0: Tensor, out1: Tensor, kappa: float, bank: Optional[Tensor] = None
) -> Tensor:
    """SimCLR-ER (both views' entropies) or MoCo-ER (the queries' entropy)."""
    z0 = normalize(out0.double(), dim=1)
    z1 = normalize(out1.double(), dim=1)
    if bank is None:
        entropy = 0.5 * (
            _reference_entropy(z0, kappa, None) + _reference_entropy(z1, kappa, None)
        )
    else:
        entropy = _reference_entropy(z0, kappa, normalize(bank.double(), dim=1))
    log_norm = log_vmf_normalizer(z0.shape[1], torch.tensor(kappa).double())
    reconstruction = log_norm + kappa * (z0 * z1).sum(dim=1).mean()
    return -(entropy + reconstruction)


def _views(batch_size: int, dim: int, seed: int) -> Tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out0 = torch.randn(batch_size, dim, generator=generator, dtype=torch.float64)
    out1 = torch.randn(batch_size, dim, generator=generator, dtype=torch.float64)
    return out0, out1


def _gather_worker(
    rank: int, world_size: int, out0: Tensor, out1: Tensor
) -> Tuple[Tensor, Tensor]:
    """The loss and the gradient of this rank's rows, each rank holding a slice."""
    rows = slice(rank * len(out0) // world_size, (rank + 1) * len(out0) // world_size)
    local0 = out0[rows].clone().requires_grad_(True)
    loss = ERNTXentLoss(gather_distributed=True)(local0, out1[rows])
    loss.backward()
    assert local0.grad is not None
    return loss.detach(), local0.grad


class TestERNTXentLoss:
    def test_is_an_ntx_ent_loss(self) -> None:
        assert isinstance(ERNTXentLoss(), NTXentLoss)

    @pytest.mark.parametrize("temperature", [0.1, 0.5])
    def test_kappa_is_inverse_temperature(self, temperature: float) -> None:
        assert ERNTXentLoss(temperature=temperature).kappa == pytest.approx(
            1.0 / temperature
        )
        assert ERNTXentLoss(temperature=temperature, kappa=3.0).kappa == 3.0

    @pytest.mark.parametrize("batch_size", [2, 16])
    @pytest.mark.parametrize("temperature", [0.2, 0.5])
    def test_simclr_equal_to_reference(
        self, batch_size: int, temperature: float
    ) -> None:
        out0, out1 = _views(batch_size, dim=8, seed=batch_size)
        loss = ERNTXentLoss(temperature=temperature)(out0, out1)
        expected = _reference_loss(out0, out1, kappa=1.0 / temperature)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-9)

    def test_moco_equal_to_reference(self) -> None:
        criterion = ERNTXentLoss(temperature=0.2, memory_bank_size=(32, 8))
        out0, out1 = _views(batch_size=4, dim=8, seed=0)
        criterion(out0, out1)  # initializes the bank; no gradient: no update
        _, negatives = criterion.memory_bank.forward(out1, update=False)
        assert negatives is not None
        loss = criterion(out0, out1)
        expected = _reference_loss(out0, out1, kappa=5.0, bank=negatives.T)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)

    def test_zero_entropy_weight_is_the_reconstruction(self) -> None:
        out0, out1 = _views(batch_size=8, dim=4, seed=2)
        criterion = ERNTXentLoss(temperature=0.5, entropy_weight=0.0)
        components = criterion.forward_components(out0, out1)
        assert components.loss.item() == pytest.approx(
            -components.reconstruction.item()
        )

    def test_gradient_flows_to_both_views(self) -> None:
        out0, out1 = _views(batch_size=8, dim=4, seed=3)
        out0.requires_grad_(True)
        out1.requires_grad_(True)
        ERNTXentLoss()(out0, out1).backward()
        assert out0.grad is not None and out1.grad is not None
        assert torch.isfinite(out0.grad).all() and out0.grad.abs().sum() > 0
        assert torch.isfinite(out1.grad).all() and out1.grad.abs().sum() > 0

    def test_invalid_kappa_raises(self) -> None:
        with pytest.raises(ValueError, match="kappa"):
            ERNTXentLoss(kappa=-1.0)

    @pytest.mark.DDP
    @pytest.mark.skipif(not USE_PYTEST_POOL, reason="DDP pool is not available")
    def test__gather_distributed_matches_one_process_with_the_whole_batch(
        self,
    ) -> None:
        # Each rank holds its slice of one batch. The entropy is over the gathered
        # batch and the reconstruction over the rank's rows, so the ranks' mean loss
        # is the loss of one process holding the whole batch; DDP divides the
        # summed gradient of the gather by the world size, which gives that
        # process's gradient.
        out0, out1 = _views(batch_size=16, dim=8, seed=4)
        results = pytest.pool.starmap(  # type: ignore[attr-defined]
            _gather_worker,
            [(rank, NUM_PROCESSES, out0, out1) for rank in range(NUM_PROCESSES)],
        )
        whole0 = out0.clone().requires_grad_(True)
        loss = ERNTXentLoss()(whole0, out1)
        loss.backward()
        assert whole0.grad is not None
        mean_loss = sum(rank_loss for rank_loss, _ in results) / NUM_PROCESSES
        assert mean_loss.item() == pytest.approx(loss.item(), rel=1e-9)
        grads = torch.cat([grad for _, grad in results]) / NUM_PROCESSES
        assert torch.allclose(grads, whole0.grad, rtol=1e-7, atol=1e-12)
