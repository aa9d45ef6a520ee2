"""Pieces shared by the ER loss modules: the components tuple, gathering, checks."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from lightly.utils import dist
from torch import Tensor
from torch import distributed as torch_dist

from lightly_er.functional import _check_estimator


class ERComponents(NamedTuple):
    """The terms of an ER loss, as returned by ``forward_components``.

    Attributes:
        loss:
            The value to minimise: -(entropy_weight * entropy + reconstruction).
        entropy:
            The entropy estimate in nats (higher is better).
        reconstruction:
            The expected log-likelihood of one view given the other, in nats
            (higher is better).
    """

    loss: Tensor
    entropy: Tensor
    reconstruction: Tensor


class ERLossMixin:
    """Keeps the last terms of an ER loss, detached, for logging.

    Attributes:
        last_components:
            The terms of the most recent call, detached, or None before the first call.
    """

    last_components: Optional[ERComponents] = None

    def _record(
        self, entropy: Tensor, reconstruction: Tensor, entropy_weight: float
    ) -> ERComponents:
        loss = -(entropy_weight * entropy + reconstruction)
        components = ERComponents(loss, entropy, reconstruction)
        self.last_components = ERComponents(*(t.detach() for t in components))
        return components


def gather_rows(x: Tensor, gather_distributed: bool) -> Tensor:
    """Concatenates x from all processes along dim 0, keeping gradients.

    Every process then computes the same estimate over the global batch. With DDP,
    which averages gradients over the W processes, and lightly's GatherLayer, which
    sums the W copies of each process's gradient, the result equals the gradient of
    one process that holds the whole batch.
    """
    if gather_distributed and dist.world_size() > 1:
        return torch.cat(dist.gather(x), dim=0)
    return x


def check_er_arguments(
    kappa: Optional[float],
    entropy_weight: float,
    estimator: str,
    gather_distributed: bool,
) -> None:
    """Raises a ValueError/TypeError naming the first bad ER keyword argument."""
    if kappa is not None:
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)):
            raise TypeError(f"kappa must be a float, got {type(kappa).__name__}")
        if not math.isfinite(kappa) or kappa <= 0:
            raise ValueError(f"kappa must be positive and finite, got {kappa}")
    if isinstance(entropy_weight, bool) or not isinstance(entropy_weight, (int, float)):
        raise TypeError(
            f"entropy_weight must be a float, got {type(entropy_weight).__name__}"
        )
    if not math.isfinite(entropy_weight) or entropy_weight < 0:
        raise ValueError(
            f"entropy_weight must be finite and >= 0, got {entropy_weight}"
        )
    _check_estimator(estimator)
    if gather_distributed and not torch_dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available"
        )


def log_softmax_float32(logits: Tensor, temperature: float | Tensor) -> Tensor:
    """log_softmax(logits / temperature) in at least float32, outside autocast."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return torch.log_softmax(logits / temperature, dim=-1)
