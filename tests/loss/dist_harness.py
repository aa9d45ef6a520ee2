"""Runs a loss in 2 CPU processes (gloo) and in 1 process, to compare them.

Every tensor argument (or tensor inside a list argument) is split along dim 0 into
one chunk per process. The distributed loss is built with ``gather_distributed=True``,
the single-process one with ``False``. With DDP, the parameter gradient is the mean
over processes of each process's gradient, so the gradient a process sees for its own
chunk, divided by the world size, must equal the single-process gradient of that chunk;
the mean of the per-process losses must equal the single-process loss.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple

import pytest
import torch
from torch import Tensor, nn

from tests.processes import init_group, leave_group, run_workers, save_result

LossFactory = Callable[..., nn.Module]


def _map(fn: Callable[[Tensor], Any], args: Sequence[Any]) -> List[Any]:
    return [[fn(t) for t in a] if isinstance(a, (list, tuple)) else fn(a) for a in args]


def _flatten(args: Sequence[Any]) -> List[Tensor]:
    out: List[Tensor] = []
    for a in args:
        out.extend(a if isinstance(a, (list, tuple)) else [a])
    return out


_TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])


def _leaf(t: Tensor) -> Tensor:
    return t.detach().clone().requires_grad_(True)


def _worker(
    rank: int,
    port: int,
    world_size: int,
    factory: LossFactory,
    args: Sequence[Any],
    out_dir: str,
) -> None:
    init_group(rank, world_size, port)
    local = _map(lambda t: _leaf(t.chunk(world_size)[rank]), args)
    loss = factory(gather_distributed=True)(*local)
    loss.backward()
    grads = [t.grad for t in _flatten(local)]
    save_result({"loss": loss.detach(), "grads": grads}, out_dir, rank)
    leave_group()


def run_distributed_and_single(
    factory: LossFactory, args: Sequence[Any], world_size: int = 2
) -> Tuple[Tensor, Tensor, List[Tensor], List[Tensor]]:
    """Returns (mean distributed loss, single loss, distributed grads, single grads).

    The distributed grads are the per-process chunk gradients divided by world_size and
    concatenated back in rank order, so they compare one to one with the single grads.
    """
    if _TORCH < (2, 3):
        # torch 2.1's gloo group hangs in these two-process runs (seen in the
        # minimum-versions job, 2026-12-07); the main job runs them on current torch.
        pytest.skip("two-process gloo runs need torch >= 2.3")
    with tempfile.TemporaryDirectory() as out_dir:
        run_workers(_worker, (world_size, factory, args, out_dir), world_size, out_dir)
        results = [torch.load(Path(out_dir) / f"{r}.pt") for r in range(world_size)]
    dist_loss = torch.stack([r["loss"].reshape(()) for r in results]).mean()
    dist_grads = [
        torch.cat([r["grads"][i] for r in results]) / world_size
        for i in range(len(results[0]["grads"]))
    ]

    single = _map(_leaf, args)
    single_loss = factory(gather_distributed=False)(*single)
    single_loss.backward()
    single_grads = [t.grad for t in _flatten(single)]
    return dist_loss, single_loss.detach().reshape(()), dist_grads, single_grads
