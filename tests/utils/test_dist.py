"""Tests of lightly_er.utils.dist in one process and in a 2-process gloo group."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict

import torch
from lightly.utils import dist
from torch import Tensor
from torch import distributed as torch_dist

import lightly_er.utils
from lightly_er.utils.dist import gather_rows, gather_rows_no_grad
from tests.processes import init_group, leave_group, run_workers, save_result

WORLD_SIZE = 2
# Rows held by each rank: unequal, and an empty batch on one rank.
UNEQUAL = (5, 2)
EMPTY = (0, 3)


def _data() -> Dict[str, Tensor]:
    """What the processes hold (every process builds the same tensors)."""
    g = torch.Generator().manual_seed(0)
    return {
        "unequal": torch.randn(sum(UNEQUAL), 3, 2, generator=g, dtype=torch.float64),
        "empty": torch.randn(sum(EMPTY), 4, generator=g),
        "equal": torch.randn(2 * 3, 4, generator=g, dtype=torch.float64),
        "weights": torch.randn(2 * 3, 4, generator=g, dtype=torch.float64),
    }


def _rows(x: Tensor, sizes: tuple[int, int], rank: int) -> Tensor:
    start = sum(sizes[:rank])
    return x[start : start + sizes[rank]]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    init_group(rank, WORLD_SIZE, port)
    data = _data()
    local = _rows(data["unequal"], UNEQUAL, rank).clone().requires_grad_(True)
    unequal = gather_rows_no_grad(local)
    empty = gather_rows_no_grad(_rows(data["empty"], EMPTY, rank))
    # With gradient: equal rows, every process computes the same loss.
    mine = _rows(data["equal"], (3, 3), rank).clone().requires_grad_(True)
    gathered = gather_rows(mine, gather_distributed=True)
    torch.autograd.backward((gathered * data["weights"]).sum())
    result: Dict[str, Any] = {
        "rank": dist.rank(),
        "unequal": unequal,
        "unequal_requires_grad": unequal.requires_grad,
        "empty": empty,
        "gathered": gathered.detach(),
        "grad": mine.grad,
        "not_gathered": gather_rows(mine, gather_distributed=False) is mine,
    }
    save_result(result, out_dir, rank)
    leave_group()


def test_gathers_across_two_processes() -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        run_workers(_worker, (out_dir,), WORLD_SIZE, out_dir)
        results = [torch.load(Path(out_dir) / f"{r}.pt") for r in range(WORLD_SIZE)]
    data = _data()
    for rank, result in enumerate(results):
        assert result["rank"] == rank
        # Unequal row counts come back whole, in rank order, without the padding.
        assert result["unequal"].shape == (7, 3, 2)
        assert result["unequal"].dtype == torch.float64
        assert torch.equal(result["unequal"], data["unequal"])
        assert result["unequal_requires_grad"] is False
        assert torch.equal(result["empty"], data["empty"])
        assert torch.equal(result["gathered"], data["equal"])
        # lightly's GatherLayer sums the W processes' gradients of a rank's rows: all
        # processes computed the same loss, so the gradient is W times the weights.
        expected = WORLD_SIZE * _rows(data["weights"], (3, 3), rank)
        assert torch.equal(result["grad"], expected)
        assert result["not_gathered"] is True


def test_one_process_is_the_identity() -> None:
    assert not torch_dist.is_initialized()
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_rows_no_grad(x) is x
    assert gather_rows(x, gather_distributed=True) is x
    assert gather_rows(x, gather_distributed=False) is x
    assert dist.rank() == 0


def test_global_rank_is_lightlys_rank() -> None:
    # No second implementation of the rank: lightly_er.utils re-exports lightly's.
    assert lightly_er.utils.global_rank is dist.rank
