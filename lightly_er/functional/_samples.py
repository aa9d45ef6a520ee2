"""Sample-based sphere entropy estimators without a kernel: nearest neighbors, log-det.

Private, and a research option (the upstream series does not send it). Both return
the estimate H in nats *without* any kernel constant; the dispatch in ``_sphere``
adds log C_d(kappa) where a caller wants the relative form. Their constants are
here too: ``log_sphere_area`` (public, re-exported by :mod:`lightly_er.functional`),
the unit ball's log-volume and digamma, as Python doubles.

- ``knn_entropy``: Kozachenko-Leonenko with chordal balls on S^{d-1},
  H = psi(n) - psi(k) + log V_{d-1} + (d - 1) mean_i log r_i, where r_i is the
  chordal (Euclidean) distance from z_i to its k-th nearest center, n the number of
  centers a sample is compared with plus one, and V_{d-1} the volume of the unit
  ball in R^{d-1}. The cap of chordal radius r on S^2 has area pi r^2 exactly
  (Archimedes), so on S^2 the estimate of a uniform sample is unbiased at every N;
  above d = 3 the cap is smaller than the ball, the estimate is biased upwards at
  finite N and consistent as N grows.
- ``logdet_entropy``: the Gaussian entropy of the sample covariance, shifted to be
  exact for the uniform distribution: H = log|S^{d-1}| + 1/2 logdet(d Sigma + eps I),
  Sigma the unbiased (N - 1) sample covariance, eps a ridge in units of the uniform
  distribution's per-direction variance 1/d.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from typing_extensions import Protocol

from lightly_er.functional._checks import check_dim


# ---------------------------------------------------------------------------------------
# Constants of the sample-based estimators, as Python doubles (no tensor, no graph).
# ---------------------------------------------------------------------------------------
def log_sphere_area(dim: int) -> float:
    """``log |S^(dim-1)| = log(2 pi^(dim/2) / Gamma(dim/2))``, the uniform's entropy.

    The surface measure of the unit sphere in R^dim: 2 (two points) on S^0, 2 pi on
    the circle, 4 pi on S^2. It is the largest entropy a distribution on the sphere
    can have.

    Args:
        dim:
            Dimension d >= 1 of the ambient space.

    Returns:
        The log-area in nats, a Python float.

    Raises:
        TypeError: If dim is not an int.
        ValueError: If dim < 1.

    Examples:
        >>> import math
        >>> from lightly_er.functional import log_sphere_area
        >>> abs(log_sphere_area(3) - math.log(4 * math.pi)) < 1e-12
        True
    """
    check_dim(dim)
    return math.log(2.0) + 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim)


def log_unit_ball_volume(dim: int) -> float:
    """log of the volume of the unit ball in R^dim, pi^(dim/2) / Gamma(dim/2 + 1)."""
    return 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1.0)


def digamma(x: float) -> float:
    """The digamma function psi(x) for x > 0, to about 1e-15 (recurrence + series)."""
    if not x > 0:
        raise ValueError(f"digamma needs x > 0, got {x}")
    result = 0.0
    # psi(x) = psi(x + 1) - 1 / x moves x to where the asymptotic series converges.
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    inv2 = 1.0 / (x * x)
    # DLMF 5.11.2: log x - 1/(2x) - sum_k B_2k / (2k x^2k).
    series = inv2 * (
        1.0 / 12
        - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (1.0 / 240 - inv2 / 132)))
    )
    return result + math.log(x) - 0.5 / x - series


KNN_EPS = 1e-8
"""Added to the squared distance as eps^2 (KoLeo's eps): a duplicate has log r =
log eps instead of -inf, and a zero gradient."""

LOGDET_EPS = 0.05
"""The ridge of the log-determinant, in units of 1/d (the per-direction variance
of the uniform distribution): 5% of it."""


def knn_entropy(
    z: Tensor,
    k: int = 1,
    extra: Optional[Tensor] = None,
    extra_valid: Optional[Tensor] = None,
) -> Tensor:
    """The Kozachenko-Leonenko estimate; inputs already checked (unit rows, d >= 2)."""
    n, dim = z.shape
    support = z if extra is None else torch.cat([z, extra.to(z.dtype)], dim=0)
    with torch.no_grad():
        # The neighbors' indices only: the distances are recomputed from the rows
        # below, which has no cancellation for close pairs (2 - 2 cos would).
        similarity = torch.mm(z, support.T)
        similarity[:, :n].diagonal().fill_(float("-inf"))
        if extra_valid is not None:
            similarity[:, n:].masked_fill_(~extra_valid, float("-inf"))
        if k == 1:
            index = similarity.argmax(dim=1)
        else:
            index = similarity.topk(k, dim=1).indices[:, k - 1]
    difference = z - support.index_select(0, index)
    log_r = 0.5 * torch.log(difference.pow(2).sum(dim=1) + KNN_EPS**2)
    m = dim - 1
    constant = log_unit_ball_volume(m) - digamma(float(k))
    if extra_valid is None:
        # n - 1 other batch rows and the extra ones: psi(number of others + 1).
        offset: Any = digamma(float(support.shape[0])) + constant
    else:
        others = (extra_valid.sum() + n).double()
        offset = torch.special.digamma(others) + constant
    result: Tensor = m * log_r.mean() + offset
    return result


class _LogdetContext(Protocol):
    """The autograd context as the log-determinant Function uses it."""

    rows: bool
    saved_tensors: Tuple[Tensor, ...]

    def save_for_backward(self, *tensors: Tensor) -> None: ...


class _LogDet(torch.autograd.Function):
    """1/2 logdet(eps I + scale X X^T) (or X^T X), with the solve as its backward.

    X is the centered data (rows); the smaller of the two Gram matrices is factorized
    (Sylvester: det(eps I_d + s X^T X) = eps^(d-n) det(eps I_n + s X X^T)).
    """

    @staticmethod
    def forward(ctx: _LogdetContext, centred: Tensor, eps: float) -> Tensor:
        n, dim = centred.shape
        rows = n <= dim
        size = n if rows else dim
        eye = torch.eye(size, dtype=centred.dtype, device=centred.device)
        if rows:
            gram = torch.addmm(eye.mul_(eps), centred, centred.T, alpha=1.0)
        else:
            gram = torch.addmm(eye.mul_(eps), centred.T, centred, alpha=1.0)
        # cholesky_ex: no error check, so no host sync (eps > 0 keeps it definite).
        factor, _ = torch.linalg.cholesky_ex(gram)
        half_logdet = torch.log(factor.diagonal()).sum()
        if rows and dim > n:
            half_logdet = half_logdet + 0.5 * (dim - n) * math.log(eps)
        ctx.save_for_backward(centred, factor)
        ctx.rows = rows
        return half_logdet

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: _LogdetContext, *grad_outputs: Tensor
    ) -> Tuple[Optional[Tensor], ...]:
        # torch's signature: one gradient per output of forward (here one).
        (grad_output,) = grad_outputs
        centred, factor = ctx.saved_tensors
        # d/dX 1/2 logdet(eps + X X^T) = (eps + X X^T)^-1 X.
        if ctx.rows:
            grad = torch.cholesky_solve(centred, factor)
        else:
            grad = torch.cholesky_solve(centred.T, factor).T
        return grad_output * grad, None


def logdet_entropy(
    z: Tensor,
    eps: float = LOGDET_EPS,
    extra: Optional[Tensor] = None,
    extra_valid: Optional[Tensor] = None,
) -> Tensor:
    """log|S^{d-1}| + 1/2 logdet(d Sigma + eps I); inputs already checked."""
    n, dim = z.shape
    rows = z if extra is None else torch.cat([z, extra.to(z.dtype)], dim=0)
    if extra_valid is None:
        count: Any = float(rows.shape[0])
        mean = rows.mean(dim=0)
        centred = rows - mean
    else:
        weight = (
            torch.cat([extra_valid.new_ones(n), extra_valid]).to(z.dtype).unsqueeze(1)
        )
        count = weight.sum()
        mean = (rows * weight).sum(dim=0) / count
        # Empty slots contribute a zero row: a factor eps each, d log eps / 2 in all.
        centred = (rows - mean) * weight
    # Sigma = X^T X / (n - 1); d Sigma = (X sqrt(d / (n - 1)))^T (...).
    if isinstance(count, Tensor):
        scale: Any = torch.sqrt(dim / (count - 1.0).clamp_min(1.0))
    else:
        scale = math.sqrt(dim / max(count - 1.0, 1.0))
    half_logdet: Tensor = _LogDet.apply(centred * scale, eps)
    return half_logdet + log_sphere_area(dim)
