"""Pieces shared by the ER loss modules: the components tuple, gathering, checks."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from lightly.utils import dist
from torch import Tensor
from torch import distributed as torch_dist

from lightly_er.functional import (
    _at_least_float32,
    _check_estimator,
    discrete_entropy,
    discrete_reconstruction,
    sphere_entropy,
)


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
        # The estimators skip their per-input value checks inside the losses (the
        # losses normalise the rows themselves); one check of the result still
        # turns NaN/Inf inputs into a clear error instead of a silent NaN.
        if not bool(torch.isfinite(loss)):
            raise ValueError(
                f"the ER loss is not finite (entropy {entropy.item():.4g}, "
                f"reconstruction {reconstruction.item():.4g}): the model outputs "
                "contain NaN or Inf"
            )
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


def check_real(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def check_positive(value: float, name: str) -> None:
    check_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def check_int(value: int, name: str, minimum: int) -> None:
    """Raises a TypeError unless value is an int (not a bool), a ValueError if < minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_view_pair(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Raises a TypeError/ValueError naming the argument unless a, b are (N, D) alike."""
    for x, name in ((a, a_name), (b, b_name)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"{name} must be a floating point tensor, got dtype {x.dtype}"
            )
        if x.ndim != 2:
            raise ValueError(
                f"{name} must have shape (batch_size, dim), got shape {tuple(x.shape)}"
            )
        if x.shape[0] < 1 or x.shape[1] < 2:
            raise ValueError(
                f"{name} must hold at least 1 sample of dim >= 2, got shape "
                f"{tuple(x.shape)}"
            )
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def normalize_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """L2-normalises the rows of x in at least float32 (exactly unit norm in bf16)."""
    return F.normalize(_at_least_float32(x), dim=1, eps=eps)


def gather_batch(z: Tensor, gather_distributed: bool) -> Tensor:
    """gather_rows, with an error naming the batch size if fewer than 2 rows result."""
    z_all = gather_rows(z, gather_distributed)
    if z_all.shape[0] < 2:
        raise ValueError(
            "the entropy estimate needs a batch of at least 2 samples (over all "
            f"processes), got {z_all.shape[0]}"
        )
    return z_all


def cross_view_reconstruction(
    p_target: Sequence[Tensor], log_pred: Sequence[Tensor]
) -> Tensor:
    """Mean over view pairs (t, s), t != s, of discrete_reconstruction(p_t, log q_s).

    The pairs are those of DINO and SwAV: target view t and prediction view s index
    the same crop when t == s, and these pairs are left out. As the reconstruction is
    linear in the target, the pairs of prediction view s are summed exactly into one
    call of :func:`lightly_er.functional.discrete_reconstruction` whose target is the
    mean of the p_t over t != s, weighted by their number. That is one call per
    prediction view instead of one per pair, and no copy of a prediction.

    Args:
        p_target:
            T target distributions, each of shape (batch_size, K), without gradient.
        log_pred:
            S predicted log-probabilities, each of shape (batch_size, K).

    Returns:
        The mean reconstruction in nats, a scalar tensor.

    Raises:
        ValueError: If there is no pair t != s (T = S = 1).
    """
    num_targets, num_preds = len(p_target), len(log_pred)
    num_terms = num_targets * num_preds - min(num_targets, num_preds)
    if num_terms == 0:
        raise ValueError(
            "at least two views in total are needed (the pair of a view with itself "
            f"is excluded), got {num_targets} target view(s) and {num_preds} "
            "prediction view(s)"
        )
    mean_target: Optional[Tensor] = None
    total: Optional[Tensor] = None
    for s, log_q in enumerate(log_pred):
        others = [p for t, p in enumerate(p_target) if t != s]
        if not others:
            continue
        if len(others) == 1:
            target = others[0]
        elif s >= num_targets:
            if mean_target is None:
                mean_target = torch.stack(others).mean(dim=0)
            target = mean_target
        else:
            target = torch.stack(others).mean(dim=0)
        term = len(others) * discrete_reconstruction(
            target, log_q, log_input=True, validate=False
        )
        total = term if total is None else total + term
    assert total is not None
    return total / num_terms


def marginal_entropy(
    log_p: Sequence[Tensor],
    gather_distributed: bool,
    extra_p: Optional[Tensor] = None,
) -> Tensor:
    """Entropy of the mean of the rows exp(log_p) (and extra_p), gathered if asked.

    The rows are averaged on this process into one row of K numbers; with
    gather_distributed the rows of all processes are gathered (with gradient) and
    :func:`lightly_er.functional.discrete_entropy` takes their mean, which is the
    mean over the global batch when all processes hold as many rows.

    Args:
        log_p:
            Log-probability rows, tensors of shape (N_i, K).
        gather_distributed:
            Whether to average over the processes.
        extra_p:
            Further probability rows, shape (M, K), included in the mean.

    Returns:
        The entropy in nats, a scalar tensor.
    """
    total = torch.stack([view.exp().sum(dim=0) for view in log_p]).sum(dim=0)
    count = sum(view.shape[0] for view in log_p)
    if extra_p is not None:
        total = total + extra_p.to(total.dtype).sum(dim=0)
        count += extra_p.shape[0]
    mean = gather_rows((total / count).unsqueeze(0), gather_distributed)
    return discrete_entropy(mean)


def gathered_sphere_entropy(
    z: Tensor,
    kappa: float,
    estimator: str,
    leave_one_out: bool,
    gather_distributed: bool,
) -> Tensor:
    """sphere_entropy of L2-normalised z over the batch of all processes if asked."""
    return sphere_entropy(
        gather_batch(z, gather_distributed),
        kappa,
        estimator=estimator,  # type: ignore[arg-type]
        leave_one_out=leave_one_out,
        validate=False,
    )
