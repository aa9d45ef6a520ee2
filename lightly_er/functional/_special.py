"""Special-function numerics: log I_nu(x) and the vMF log-normalizer log C_d(kappa).

Private: the public names are re-exported by :mod:`lightly_er.functional`. Everything
runs in float64 and in log space; the autograd Functions give exact derivatives.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import List, Tuple

import torch
from torch import Tensor
from typing_extensions import Protocol

from lightly_er.functional._checks import Kappa, as_kappa_tensor, check_dim
from lightly_er.utils._checks import check_real
from lightly_er.utils.compat import assume_constant_result

# ---------------------------------------------------------------------------------------
# Modified Bessel function of the first kind, in log space.
#
# For large orders nu the Debye uniform asymptotic expansion (DLMF 10.41.3)
#
#     I_nu(nu z) ~ exp(nu eta) / (sqrt(2 pi nu) (1 + z^2)^(1/4)) * sum_k u_k(t) / nu^k
#
# with t = 1 / sqrt(1 + z^2) and eta = sqrt(1 + z^2) + log(z / (1 + sqrt(1 + z^2))) is
# accurate to machine precision uniformly in z once nu >= _DEBYE_MIN_ORDER with
# _DEBYE_TERMS terms. Smaller orders start from the expansion at nu + m and recur
# downwards with I_{nu-1} = I_{nu+1} + (2 nu / x) I_nu, which is stable for I in that
# direction. Everything is evaluated in float64 and in log space, so nothing underflows:
# at d = 131072 and kappa = 1e-3, log I_nu(kappa) is about -1.16e6.
# ---------------------------------------------------------------------------------------
_DEBYE_TERMS = 12
_DEBYE_MIN_ORDER = 20.0


def _debye_polynomials(num_terms: int) -> List[List[Fraction]]:
    """Returns the coefficients of the Debye polynomials u_0 .. u_{num_terms - 1}.

    Exact rational arithmetic with the recurrence of DLMF 10.41.10:
    u_{k+1}(t) = t^2 (1 - t^2) u_k'(t) / 2 + int_0^t (1 - 5 s^2) u_k(s) ds / 8.
    Coefficient j of the returned list k multiplies t^j.
    """
    polys: List[List[Fraction]] = [[Fraction(1)]]
    for _ in range(num_terms - 1):
        u = polys[-1]
        nxt = [Fraction(0)] * (len(u) + 4)
        for j in range(1, len(u)):
            nxt[j + 1] += j * u[j] / 2
            nxt[j + 3] -= j * u[j] / 2
        for j, c in enumerate(u):
            nxt[j + 1] += c / (8 * (j + 1))
            nxt[j + 3] -= 5 * c / (8 * (j + 3))
        while nxt[-1] == 0:
            nxt.pop()
        polys.append(nxt)
    return polys


_DEBYE_POLYNOMIALS = _debye_polynomials(_DEBYE_TERMS)


@lru_cache(maxsize=256)
def _cached_debye_series_coefficients(order: float) -> Tuple[float, ...]:
    degree = max(len(p) for p in _DEBYE_POLYNOMIALS)
    coefficients = [Fraction(0)] * degree
    inverse_order = Fraction(1) / Fraction(order)
    for k, poly in enumerate(_DEBYE_POLYNOMIALS):
        scale = inverse_order**k
        for j, c in enumerate(poly):
            coefficients[j] += c * scale
    return tuple(float(c) for c in coefficients)


@assume_constant_result
def _debye_series_coefficients(order: float) -> Tuple[float, ...]:
    """Coefficients b_j of sum_k u_k(t) / nu^k = sum_j b_j t^j for a fixed order nu.

    A constant for torch.compile: torch 2.3's dynamo cannot trace the exact
    rational arithmetic (``fractions.Fraction``) and broke the graph there.
    """
    return _cached_debye_series_coefficients(order)


debye_series_coefficients = _debye_series_coefficients  # see assume_constant_result


def _log_iv_debye(order: float, x: Tensor) -> Tensor:
    """log I_order(x) from the Debye expansion; x is float64, order >= 20."""
    z = x / order
    s = torch.hypot(torch.ones_like(z), z)
    t = 1.0 / s
    eta = s + torch.log(z) - torch.log1p(s)
    series = torch.zeros_like(t)
    for c in reversed(debye_series_coefficients(order)):
        series = series * t + c
    return (
        order * eta
        - 0.5 * math.log(2.0 * math.pi * order)
        - 0.5 * torch.log(s)
        + torch.log(series)
    )


def _log_iv(order: float, x: Tensor) -> Tensor:
    """log I_order(x) for order >= -1/2 and x > 0, float64 in and out, no autograd.

    The downward recurrence holds for every real order; -1/2 is the order of S^0's
    normalizer (d = 1), where I_{-1/2}(x) = sqrt(2 / (pi x)) cosh(x).
    """
    if order >= _DEBYE_MIN_ORDER:
        return _log_iv_debye(order, x)
    steps = math.ceil(_DEBYE_MIN_ORDER - order)
    top = order + steps
    log_iv = _log_iv_debye(top, x)
    # ratio = I_{k+1}(x) / I_k(x), which lies in (0, 1).
    ratio = torch.exp(_log_iv_debye(top + 1.0, x) - log_iv)
    for k in range(steps):
        # I_{k-1} / I_k = I_{k+1} / I_k + 2 k / x: a sum of positive terms, so the
        # downward direction never cancels (upwards it would).
        step = ratio + 2.0 * (top - k) / x
        log_iv = log_iv + torch.log(step)
        ratio = 1.0 / step
    return log_iv


class _Context(Protocol):
    """The autograd context as the Functions below use it."""

    order: float
    saved_tensors: Tuple[Tensor, ...]

    def save_for_backward(self, *tensors: Tensor) -> None: ...


class _LogBesselIV(torch.autograd.Function):
    """log I_order(x) with the exact derivative I_{order+1}(x) / I_order(x) + order / x."""

    @staticmethod
    def forward(ctx: _Context, x: Tensor, order: float) -> Tensor:
        x64 = x.detach().to(torch.float64)
        out = _log_iv(order, x64)
        ctx.order = order
        ctx.save_for_backward(x, out)
        return out.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: _Context, *grad_outputs: Tensor) -> Tuple[Tensor, None]:
        # torch's signature: one gradient per output of forward (here one).
        (grad_output,) = grad_outputs
        x, out = ctx.saved_tensors
        x64 = x.to(torch.float64)
        ratio = torch.exp(_log_iv(ctx.order + 1.0, x64) - out)
        derivative = ratio + ctx.order / x64
        return (grad_output * derivative).to(x.dtype), None


class _LogVMFNormalizer(torch.autograd.Function):
    """log C_d(kappa) with the derivative -I_{order+1}(kappa) / I_order(kappa).

    Differentiating order log kappa - log I_order(kappa) term by term would give
    order / kappa - (I_{order+1} / I_order + order / kappa), which cancels
    catastrophically where order / kappa is much larger than the ratio (small kappa,
    large d): at d = 131072, kappa = 1e-3 it loses two digits. The backward computes
    the ratio directly instead.
    """

    @staticmethod
    def forward(ctx: _Context, kappa: Tensor, order: float) -> Tensor:
        kappa64 = kappa.detach()
        log_iv = _log_iv(order, kappa64)
        ctx.order = order
        ctx.save_for_backward(kappa64, log_iv)
        dim = 2.0 * (order + 1.0)
        return (
            order * torch.log(kappa64) - (dim / 2.0) * math.log(2.0 * math.pi) - log_iv
        )

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: _Context, *grad_outputs: Tensor) -> Tuple[Tensor, None]:
        (grad_output,) = grad_outputs
        kappa64, log_iv = ctx.saved_tensors
        ratio = torch.exp(_log_iv(ctx.order + 1.0, kappa64) - log_iv)
        return -grad_output * ratio, None


def log_bessel_iv(order: float, x: Kappa) -> Tensor:
    """Logarithm of the modified Bessel function of the first kind, log I_order(x).

    Accurate to about 1e-14 relative error in float64 for orders from 0 to beyond
    65535 and arguments from 1e-3 to 1e5, with no underflow or overflow (it never forms
    I_order(x) itself). Differentiable in x with the exact derivative
    d/dx log I_v(x) = I_{v+1}(x) / I_v(x) + v / x.

    Args:
        order:
            The order v >= 0 of the Bessel function.
        x:
            Positive arguments, a tensor of any shape or a float.

    Returns:
        log I_order(x), with the shape of x. The dtype is that of x if it is a floating
        point tensor, float64 otherwise. The computation always runs in float64.

    Raises:
        TypeError: If order is not a real number or x is not a tensor or a real number.
        ValueError: If order is negative or not finite, or x is not positive and finite.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import log_bessel_iv
        >>> log_bessel_iv(63.0, torch.tensor(10.0, dtype=torch.float64))
        tensor(-99.2..., dtype=torch.float64)
    """
    check_real(order, "order")
    if order < 0:
        raise ValueError(f"order must be finite and >= 0, got {order}")
    x_tensor = as_kappa_tensor(x, "x")
    result: Tensor = _LogBesselIV.apply(x_tensor, float(order))
    return result


def log_vmf_normalizer(dim: int, kappa: Kappa) -> Tensor:
    """Log-normalizer log C_d(kappa) of the von Mises-Fisher density on S^{d-1}.

    The vMF density with mean direction mu and concentration kappa on the unit sphere
    in R^d is f(x) = C_d(kappa) exp(kappa mu^T x), with

        C_d(kappa) = kappa^(d/2 - 1) / ((2 pi)^(d/2) I_{d/2-1}(kappa)).

    On S^0 = {-1, +1} (d = 1, counting measure) the same formula, with
    I_{-1/2}(kappa) = sqrt(2 / (pi kappa)) cosh(kappa), gives C_1(kappa) =
    1 / (2 cosh kappa). log I_{d/2-1}(kappa) is computed in log space (see
    :func:`log_bessel_iv`), so the
    result is exact to about 1e-14 relative error for every dimension SSL uses. The
    paper's reference code evaluates log(I(kappa) + 1e-7), which underflows for
    d >~ 64: at d = 128, kappa = 10 it gives log I = -16.1 where the true value is -99.2.
    The gradient is the exact d/dkappa log C_d(kappa) = -I_{d/2}(kappa) / I_{d/2-1}(kappa),
    so a learnable concentration trains correctly.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] Mardia & Jupp, Directional Statistics, 2000, Section 9.3.

    Args:
        dim:
            Dimension d >= 1 of the ambient space (embedding size).
        kappa:
            Concentration(s) kappa > 0, a tensor of any shape or a float.

    Returns:
        log C_d(kappa) in nats, with the shape of kappa; dtype as in
        :func:`log_bessel_iv`.

    Raises:
        TypeError: If dim is not an int or kappa is not a tensor or a real number.
        ValueError: If dim < 1 or kappa is not positive and finite.

    Examples:
        >>> import math, torch
        >>> from lightly_er.functional import log_vmf_normalizer
        >>> kappa = torch.tensor(2.0, dtype=torch.float64)
        >>> # closed form on S^2: log kappa - log(4 pi sinh kappa)
        >>> log_vmf_normalizer(3, kappa).item() - (
        ...     math.log(2.0) - math.log(4 * math.pi * math.sinh(2.0))
        ... ) < 1e-12
        True
    """
    check_dim(dim)
    kappa_tensor = as_kappa_tensor(kappa, "kappa")
    order = dim / 2.0 - 1.0
    # Computed in float64 throughout: at large d, order * log(kappa) and log I nearly
    # cancel, which float32 would not resolve.
    result: Tensor = _LogVMFNormalizer.apply(kappa_tensor.to(torch.float64), order)
    return result.to(kappa_tensor.dtype)


@lru_cache(maxsize=1024)
def _cached_log_vmf_normalizer(dim: int, kappa: float) -> float:
    return float(log_vmf_normalizer(dim, kappa))


@assume_constant_result
def _log_vmf_normalizer_constant(dim: int, kappa: float) -> float:
    """log C_d(kappa) for a fixed kappa, as a Python float, computed once per (d, kappa).

    A fixed concentration (a Python number, as the loss modules use) needs no
    gradient, so its normalizer is a constant: no Bessel expansion per call, and
    torch.compile evaluates it once while tracing and bakes the number into the graph.
    No checks: the callers have checked dim and kappa.
    """
    return _cached_log_vmf_normalizer(dim, kappa)


# Called under a name other than its own: torch.compile before 2.6 stores the
# constant under the function's own name in the compiled module's globals.
log_vmf_normalizer_constant = _log_vmf_normalizer_constant
