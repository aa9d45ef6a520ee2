"""Gathering rows across processes: with gradient for losses, without for meters.

Built on :mod:`lightly.utils.dist` (its ``gather`` and ``world_size``; the rank is
its ``rank``), which this module does not duplicate. It adds only what lightly
lacks: a gather that returns x itself when not asked to or not distributed, and a
gather without gradient of unequal row counts.
"""

from __future__ import annotations

import torch
from lightly.utils import dist
from torch import Tensor
from torch import distributed as torch_dist


def gather_rows(x: Tensor, gather_distributed: bool) -> Tensor:
    """Concatenates x from all processes along dim 0, keeping gradients.

    Every process then computes the same estimate over the global batch. With DDP,
    which averages gradients over the W processes, and lightly's GatherLayer, which
    sums the W copies of each process's gradient, the result equals the gradient of
    one process that holds the whole batch. All processes must hold as many rows.

    Args:
        x: Rows of shape (N, ...).
        gather_distributed: Whether to gather; False returns x.

    Returns:
        The rows of all processes in rank order, or x.
    """
    if gather_distributed and dist.world_size() > 1:
        return torch.cat(dist.gather(x), dim=0)
    return x


def gather_rows_no_grad(x: Tensor) -> Tensor:
    """Concatenates x from all processes along dim 0, without gradient.

    Unlike :func:`gather_rows`, the processes may hold different numbers of rows (for
    example a smaller last batch): the sizes are exchanged first and the rows padded
    to the largest. Returns x itself when torch.distributed is not initialized or has
    one process.

    Args:
        x: A tensor of shape (N, ...), with the same trailing shape and dtype on every
            process.

    Returns:
        The rows of all processes, in rank order.
    """
    world_size = dist.world_size()
    if world_size == 1:
        return x
    x = x.detach().contiguous()
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    torch_dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x
    chunks = [torch.empty_like(padded) for _ in range(world_size)]
    torch_dist.all_gather(chunks, padded)
    return torch.cat(
        [chunk[:count] for chunk, count in zip(chunks, counts)],  # noqa: B905
        dim=0,
    )
