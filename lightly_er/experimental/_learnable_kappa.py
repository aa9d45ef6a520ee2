"""A learnable vMF concentration, bounded to a range by a smooth reparametrization.

kappa = exp(log low + (log high - log low) * sigmoid(theta)), theta the parameter.

Why this and not a clamp: a clamped kappa has no gradient outside its range, so a
parameter that steps past a bound stays there (and a straight-through clamp gives
the optimizer a gradient for a value the loss did not use). The sigmoid keeps kappa
strictly inside (low, high) for every theta, is smooth, and its gradient only fades
near the bounds. It acts on log kappa because kappa is a scale: equal steps of theta
near the middle are equal relative changes of kappa. The parameter is float64, so
the initial kappa is exact and the exact gradient of log C_d(kappa)
(:func:`lightly_er.functional.log_vmf_normalizer`) reaches it undiluted.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from lightly_er.utils.checks import check_positive

DECADES = 2.0
"""Default bounds: this many decades either side of the initial kappa."""


def kappa_range(
    initial: float, bounds: Optional[Sequence[float]] = None
) -> Tuple[float, float]:
    """The checked (low, high) of a learnable kappa starting at ``initial``.

    Raises:
        TypeError: If bounds is not a pair of numbers.
        ValueError: Unless 0 < low < initial < high < inf.
    """
    if bounds is None:
        scale = 10.0**DECADES
        return initial / scale, initial * scale
    if isinstance(bounds, (str, bytes)) or len(bounds) != 2:
        raise TypeError(f"kappa_bounds must be a pair (low, high), got {bounds!r}")
    low, high = bounds
    check_positive(low, "kappa_bounds[0]")
    check_positive(high, "kappa_bounds[1]")
    if not low < initial < high:
        raise ValueError(
            f"kappa_bounds must hold the initial kappa strictly inside, got "
            f"({low}, {high}) for kappa {initial}"
        )
    return float(low), float(high)


class LearnableKappa(nn.Module):
    """A concentration kappa in (low, high), trained through ``logit``.

    Attributes:
        low, high: The bounds.
        logit: The float64 parameter theta; kappa = low (high / low)^sigmoid(theta).

    Examples:
        >>> from lightly_er.experimental._learnable_kappa import LearnableKappa
        >>> kappa = LearnableKappa(10.0, (1.0, 100.0))
        >>> round(kappa().item(), 12)
        10.0
    """

    def __init__(self, initial: float, bounds: Optional[Sequence[float]] = None):
        super().__init__()
        check_positive(initial, "kappa")
        self.low, self.high = kappa_range(float(initial), bounds)
        span = math.log(self.high) - math.log(self.low)
        u = (math.log(initial) - math.log(self.low)) / span
        self.logit = nn.Parameter(
            torch.tensor(math.log(u) - math.log1p(-u), dtype=torch.float64)
        )

    def forward(self) -> Tensor:
        """kappa, a float64 0-dim tensor with gradient."""
        log_low = math.log(self.low)
        span = math.log(self.high) - log_low
        return torch.exp(log_low + span * torch.sigmoid(self.logit))

    def extra_repr(self) -> str:
        return f"low={self.low:g}, high={self.high:g}"
