"""The argument checks and batch terms that the ER losses share.

The math is in :mod:`lightly_er.functional`; these helpers combine it over a batch:
kappa's default, numerically safe softmaxes, the rows' normalization, and the
marginal distribution of the discrete losses gathered across processes.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributed as torch_dist

from lightly_er.functional import discrete_entropy
from lightly_er.functional._checks import at_least_float32
from lightly_er.functional._discrete import mean_distribution
from lightly_er.utils._checks import (
    check_bool,
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)
from lightly_er.utils.dist import gather_rows

DEFAULT_KAPPA = 10.0
"""kappa where the parent loss has no (positive) temperature: the authors' default."""


def resolve_kappa(
    kappa: Optional[float] = None, temperature: Optional[float] = None
) -> float:
    """The kappa of an ER objective: the one rule of the ER losses.

    An explicit ``kappa`` wins. Otherwise kappa = 1 / temperature, where the lightly
    parent has a positive temperature (NT-Xent: the vMF reconstruction is then on
    the parent's logit scale). Otherwise the authors' reference value, 10: for a
    parent without a temperature (negative cosine similarity), and for a
    non-positive temperature, which lightly's NTXentLoss accepts but which gives no
    concentration; that case warns, as the loss then differs from the parent's scale.

    Args:
        kappa:
            An explicit concentration, > 0, or None.
        temperature:
            The parent loss's temperature (NT-Xent's), or None if it has none.

    Returns:
        kappa, a Python float > 0.

    Raises:
        TypeError: If kappa or temperature is not a real number.
        ValueError: If kappa is not positive and finite, or temperature not finite.

    Examples:
        >>> from lightly_er.loss._terms import resolve_kappa
        >>> resolve_kappa(temperature=0.5)
        2.0
        >>> resolve_kappa(kappa=4.0, temperature=0.5)
        4.0
        >>> resolve_kappa()
        10.0
    """
    if kappa is not None:
        check_positive(kappa, "kappa")
        return float(kappa)
    if temperature is None:
        return DEFAULT_KAPPA
    check_real(temperature, "temperature")
    if temperature > 0:
        return 1.0 / float(temperature)
    warnings.warn(
        f"kappa cannot be 1 / temperature for temperature={temperature}: using the "
        f"authors' default kappa = {DEFAULT_KAPPA:g} (pass kappa= to choose)",
        UserWarning,
        stacklevel=2,
    )
    return DEFAULT_KAPPA


def check_er_arguments(kappa: Optional[float], entropy_weight: float) -> None:
    """Raises a ValueError/TypeError naming the first bad ER keyword argument."""
    if kappa is not None:
        resolve_kappa(kappa)
    check_real(entropy_weight, "entropy_weight")
    if entropy_weight < 0:
        raise ValueError(
            f"entropy_weight must be finite and >= 0, got {entropy_weight}"
        )


def check_gather_distributed(gather_distributed: bool) -> None:
    """Raises unless gather_distributed is a bool, and True only where it can work.

    For the losses whose lightly parent does not check it itself (NTXentLoss does).
    """
    check_bool(gather_distributed, "gather_distributed")
    if gather_distributed and not torch_dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available"
        )


def log_softmax_float32(logits: Tensor, temperature: float | Tensor) -> Tensor:
    """log_softmax(logits / temperature) in at least float32, outside autocast."""
    # Sharp temperatures (DINO's teacher: 0.04) turn fp16 logits into overflows.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return torch.log_softmax(logits / temperature, dim=-1)


def softmax_float32(logits: Tensor, temperature: float | Tensor) -> Tensor:
    """softmax(logits / temperature) in at least float32, outside autocast."""
    # One pass where log_softmax(...).exp() takes two: the targets need no logs.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return torch.softmax(logits / temperature, dim=-1)


def check_view_pair(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Raises a TypeError/ValueError naming the argument unless a, b are (N, D) alike."""
    for x, name in ((a, a_name), (b, b_name)):
        check_matrix(x, name, min_rows=1, min_dim=1, check_values=False)
    check_same_shape(a, a_name, b, b_name)


def normalize_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """L2-normalizes the rows of x in at least float32 (exactly unit norm in bf16)."""
    # bf16 rows normalized in bf16 miss unit norm by 1e-2, which kappa multiplies.
    return F.normalize(at_least_float32(x), dim=1, eps=eps)


def marginal_entropy(
    log_p: Sequence[Tensor],
    gather_distributed: bool,
    extra_p: Optional[Tensor] = None,
) -> Tensor:
    """Entropy of the mean of the rows exp(log_p) (and extra_p), gathered if asked.

    The rows are averaged on this process into one row of K numbers
    (:func:`lightly_er.functional._discrete.mean_distribution`); with
    gather_distributed the rows of all processes are gathered (with gradient) and
    :func:`lightly_er.functional.discrete_entropy` takes their mean, which is the
    mean over the global batch when all processes hold as many rows.
    """
    # One row of K per process is gathered, not the N x K rows: the mean of the
    # means is the global marginal when every process holds as many rows.
    mean = gather_rows(
        mean_distribution(log_p, extra_p).unsqueeze(0), gather_distributed
    )
    return discrete_entropy(mean, validate=False)


def target_entropy(p_target: Sequence[Tensor], gather_distributed: bool) -> Tensor:
    """H(T): the entropy of the mean of the target rows, without gradient.

    With the reconstruction E[log q(T | X')] of the same targets it forms the
    Barber-Agakov lower bound I(T; X') >= H(T) + E[log q(T | X')] that DINO-ER and
    SwAV-ER report as ``last_bound``.
    """
    with torch.no_grad():
        mean = torch.stack([p.mean(dim=0) for p in p_target]).mean(dim=0)
        rows = gather_rows(mean.unsqueeze(0), gather_distributed)
        return discrete_entropy(rows, validate=False)


__all__ = [
    "DEFAULT_KAPPA",
    "resolve_kappa",
    "check_er_arguments",
    "check_gather_distributed",
    "log_softmax_float32",
    "softmax_float32",
    "check_view_pair",
    "normalize_rows",
    "marginal_entropy",
    "target_entropy",
]
