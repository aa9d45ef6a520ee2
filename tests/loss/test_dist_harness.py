"""The harness itself: a gathered loss with the 1/world_size bug is caught."""

from __future__ import annotations

import functools

import pytest
import torch
from lightly.utils import dist
from torch import Tensor, nn

from tests.loss.dist_harness import run_distributed_and_single


class _GatheredSpread(nn.Module):
    """-mean pairwise squared distance over the (gathered) batch, plus a local term."""

    def __init__(self, gather_distributed: bool, buggy: bool = False) -> None:
        super().__init__()
        self.gather_distributed = gather_distributed
        self.buggy = buggy

    def forward(self, x: Tensor) -> Tensor:
        local = x.pow(2).sum(dim=1).mean()
        if self.gather_distributed and dist.world_size() > 1:
            x = torch.cat(dist.gather(x), dim=0)
        spread = -torch.cdist(x, x).pow(2).mean()
        if self.buggy and self.gather_distributed:
            spread = spread / dist.world_size()
        return spread + local


def test_harness_matches_for_correct_loss() -> None:
    x = torch.randn(8, 3, dtype=torch.float64)
    factory = functools.partial(_GatheredSpread)
    d_loss, s_loss, d_grads, s_grads = run_distributed_and_single(factory, [x])
    torch.testing.assert_close(d_loss, s_loss)
    torch.testing.assert_close(d_grads[0], s_grads[0])


def test_harness_catches_world_size_bug() -> None:
    x = torch.randn(8, 3, dtype=torch.float64)
    factory = functools.partial(_GatheredSpread, buggy=True)
    _, _, d_grads, s_grads = run_distributed_and_single(factory, [x])
    with pytest.raises(AssertionError):
        torch.testing.assert_close(d_grads[0], s_grads[0])
