"""Stateless estimators of the ER bound on the mutual information between two views.

Everything here is a pure PyTorch function: no state, no distributed communication,
differentiable, in float32 or float64. Loss modules, heads and callbacks call these
functions; they never re-derive the math.

The ER bound [0] on the mutual information between two views Z1 and Z2 reads

    I(Z1; Z2) >= H(Z2) + E[log q(Z2 | Z1)]

an entropy term and a reconstruction term. Every function returns nats, and higher is
better: ER = entropy + reconstruction.

- [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in Multi-View
  Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable, List, Literal, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from lightly_er.utils.checks import (
    check_choice,
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)

Kappa = Union[Tensor, float]
SphereEstimator = Literal["joe", "plugin"]

__all__ = [
    "log_bessel_iv",
    "log_vmf_normalizer",
    "sphere_entropy",
    "discrete_entropy",
    "vmf_reconstruction",
    "discrete_reconstruction",
    "min_sphere_entropy",
    "collapse_score",
    "effective_rank",
    "alignment",
    "uniformity",
]

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
def _debye_series_coefficients(order: float) -> Tuple[float, ...]:
    """Coefficients b_j of sum_k u_k(t) / nu^k = sum_j b_j t^j for a fixed order nu."""
    degree = max(len(p) for p in _DEBYE_POLYNOMIALS)
    coefficients = [Fraction(0)] * degree
    inverse_order = Fraction(1) / Fraction(order)
    for k, poly in enumerate(_DEBYE_POLYNOMIALS):
        scale = inverse_order**k
        for j, c in enumerate(poly):
            coefficients[j] += c * scale
    return tuple(float(c) for c in coefficients)


def _log_iv_debye(order: float, x: Tensor) -> Tensor:
    """log I_order(x) from the Debye expansion; x is float64, order >= 20."""
    z = x / order
    s = torch.hypot(torch.ones_like(z), z)
    t = 1.0 / s
    eta = s + torch.log(z) - torch.log1p(s)
    series = torch.zeros_like(t)
    for c in reversed(_debye_series_coefficients(order)):
        series = series * t + c
    return (
        order * eta
        - 0.5 * math.log(2.0 * math.pi * order)
        - 0.5 * torch.log(s)
        + torch.log(series)
    )


def _log_iv(order: float, x: Tensor) -> Tensor:
    """log I_order(x) for order >= 0 and x > 0, float64 in and out, no autograd."""
    if order >= _DEBYE_MIN_ORDER:
        return _log_iv_debye(order, x)
    steps = math.ceil(_DEBYE_MIN_ORDER - order)
    top = order + steps
    log_iv = _log_iv_debye(top, x)
    # ratio = I_{k+1}(x) / I_k(x), which lies in (0, 1).
    ratio = torch.exp(_log_iv_debye(top + 1.0, x) - log_iv)
    for k in range(steps):
        # I_{k-1} / I_k = I_{k+1} / I_k + 2 k / x
        step = ratio + 2.0 * (top - k) / x
        log_iv = log_iv + torch.log(step)
        ratio = 1.0 / step
    return log_iv


class _LogBesselIV(torch.autograd.Function):
    """log I_order(x) with the exact derivative I_{order+1}(x) / I_order(x) + order / x."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, order: float) -> Tensor:
        x64 = x.detach().to(torch.float64)
        out = _log_iv(order, x64)
        ctx.order = order
        ctx.save_for_backward(x, out)
        return out.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Tensor, None]:
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
    def forward(ctx: Any, kappa: Tensor, order: float) -> Tensor:
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
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Tensor, None]:
        kappa64, log_iv = ctx.saved_tensors
        ratio = torch.exp(_log_iv(ctx.order + 1.0, kappa64) - log_iv)
        return -grad_output * ratio, None


@lru_cache(maxsize=1024)
def _cached_log_vmf_normalizer(dim: int, kappa: float) -> float:
    return float(log_vmf_normalizer(dim, kappa))


def _log_vmf_normalizer_constant_impl(dim: int, kappa: float) -> float:
    return _cached_log_vmf_normalizer(dim, kappa)


# torch.compile evaluates this once when tracing and bakes in the number.
_log_vmf_normalizer_constant: Callable[[int, float], float] = (
    torch._dynamo.assume_constant_result(_log_vmf_normalizer_constant_impl)  # type: ignore[no-untyped-call]
)


def _log_norm(dim: int, kappa: Kappa, kappa_tensor: Tensor) -> Tensor:
    """log C_d(kappa) as a tensor like kappa_tensor; a float kappa hits a cache.

    A fixed concentration (a Python number, as the loss modules use by default) needs
    no gradient, so its normaliser is computed once per (dim, kappa) instead of
    evaluating the Bessel expansion on every call.
    """
    if isinstance(kappa, (int, float)):
        return kappa_tensor.new_tensor(_log_vmf_normalizer_constant(dim, float(kappa)))
    return log_vmf_normalizer(dim, kappa_tensor)


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
    x_tensor = _as_kappa_tensor(x, "x")
    result: Tensor = _LogBesselIV.apply(x_tensor, float(order))
    return result


def log_vmf_normalizer(dim: int, kappa: Kappa) -> Tensor:
    """Log-normaliser log C_d(kappa) of the von Mises-Fisher density on S^{d-1}.

    The vMF density with mean direction mu and concentration kappa on the unit sphere
    in R^d is f(x) = C_d(kappa) exp(kappa mu^T x), with

        C_d(kappa) = kappa^(d/2 - 1) / ((2 pi)^(d/2) I_{d/2-1}(kappa)).

    log I_{d/2-1}(kappa) is computed in log space (see :func:`log_bessel_iv`), so the
    result is exact to about 1e-14 relative error for every dimension SSL uses. The
    paper's reference code evaluates log(I(kappa) + 1e-7), which underflows for
    d >~ 64: at d = 128, kappa = 10 it gives log I = -16.1 where the true value is -99.2.
    The gradient is the exact d/dkappa log C_d(kappa) = -I_{d/2}(kappa) / I_{d/2-1}(kappa),
    so a learnable concentration trains correctly.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] Mardia & Jupp, Directional Statistics, 2000, Section 9.3.

    Args:
        dim:
            Dimension d >= 2 of the ambient space (embedding size).
        kappa:
            Concentration(s) kappa > 0, a tensor of any shape or a float.

    Returns:
        log C_d(kappa) in nats, with the shape of kappa; dtype as in
        :func:`log_bessel_iv`.

    Raises:
        TypeError: If dim is not an int or kappa is not a tensor or a real number.
        ValueError: If dim < 2 or kappa is not positive and finite.

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
    _check_dim(dim)
    kappa_tensor = _as_kappa_tensor(kappa, "kappa")
    order = dim / 2.0 - 1.0
    # Computed in float64 throughout: at large d, order * log(kappa) and log I nearly
    # cancel, which float32 would not resolve.
    result: Tensor = _LogVMFNormalizer.apply(kappa_tensor.to(torch.float64), order)
    return result.to(kappa_tensor.dtype)


def sphere_entropy(
    z: Tensor,
    kappa: Kappa,
    estimator: SphereEstimator = "plugin",
    leave_one_out: bool = False,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
) -> Tensor:
    """vMF kernel-density estimate of the entropy of embeddings on the unit sphere.

    The density of the embeddings is estimated with a von Mises-Fisher kernel of
    concentration kappa centred on every sample [0, Section 4.1]:

        log p(z_i) = log C_d(kappa) + log sum_j exp(kappa z_i^T z_j) - log N

    (with leave_one_out, j != i and N - 1 instead of N). Two estimators of the entropy
    from these log-densities are available:

    - ``"plugin"`` (default, as the authors' reference code): the entropy of the KDE
      evaluated on the samples, H = sum_i w_i (-log p(z_i)) with
      w = softmax_i(log p(z_i)). Dense regions weigh more, so it reacts most to
      samples that crowd together (partial collapse).
    - ``"joe"``: the resubstitution estimator H = -mean_i log p(z_i), every sample
      weighted equally.

    Without leave_one_out both estimates lie in [H_min, H_min + log N] with
    H_min = -log C_d(kappa) - kappa (:func:`min_sphere_entropy`): N identical points
    give H_min, points whose kernels do not overlap H_min + log N, so the ER bound of a
    batch is at most log N. ``leave_one_out=True`` removes that ceiling: the estimate,
    and the bound, then grows without limit in kappa. See docs/objectives.md.

    It runs in O(N^2 d) time with one N x N matrix, in log-sum-exp form, and in at
    least float32: half-precision inputs are upcast and autocast is switched off.
    ``extra_support`` adds M more kernel centres (for example a memory bank); the sums
    then run over the N + M centres and N + M replaces N.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        z:
            L2-normalised embeddings, shape (N, d), N >= 2, d >= 2.
        kappa:
            Concentration of the kernel, a positive float or a one-element tensor
            (which may require grad).
        estimator:
            ``"plugin"`` (default) or ``"joe"``.
        leave_one_out:
            Exclude each sample from its own density estimate.
        extra_support:
            Optional further kernel centres, L2-normalised, shape (M, d).
        validate:
            Check that the inputs are finite and unit-norm (a full pass and a host
            sync); types and shapes are always checked.

    Returns:
        The entropy estimate in nats, a scalar tensor.

    Raises:
        TypeError: If z is not a floating point tensor, or estimator is not a string.
        ValueError: If z is not (N, d) with N >= 2 and d >= 2, is not finite or not
            unit-norm, if kappa is not positive, or estimator is unknown.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import min_sphere_entropy, sphere_entropy
        >>> z = torch.nn.functional.normalize(torch.randn(256, 128), dim=1)
        >>> entropy = sphere_entropy(z, kappa=10.0)
        >>> gap = entropy - min_sphere_entropy(128, 10.0)  # in [0, log 256]
    """
    _check_estimator(estimator)
    _check_sphere(z, "z", min_samples=2, validate=validate)
    if extra_support is not None:
        _check_sphere(extra_support, "extra_support", min_samples=0, validate=validate)
        if extra_support.shape[1] != z.shape[1]:
            raise ValueError(
                f"extra_support must have the same dim as z, got shape "
                f"{tuple(extra_support.shape)} for z of shape {tuple(z.shape)}"
            )
    kappa_tensor = _as_scalar_kappa(kappa)
    n, dim = z.shape
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = _at_least_float32(z)
        support = z
        if extra_support is not None:
            support = torch.cat([z, extra_support.to(z.dtype)], dim=0)
        kappa_z = kappa_tensor.to(device=z.device, dtype=z.dtype)
        logits = kappa_z * (z @ support.T)
        count = support.shape[0]
        if leave_one_out:
            logits = logits.diagonal_scatter(
                torch.full((n,), float("-inf"), dtype=z.dtype, device=z.device)
            )
            count -= 1
        log_norm = _log_norm(dim, kappa, kappa_z)
        log_density = log_norm + torch.logsumexp(logits, dim=1) - math.log(count)
        if estimator == "joe":
            return -log_density.mean()
        weights = torch.softmax(log_density, dim=0)
        return -(weights * log_density).sum()


def min_sphere_entropy(dim: int, kappa: float) -> float:
    """The smallest value of :func:`sphere_entropy`: -log C_d(kappa) - kappa.

    It is the estimate for a batch of identical points, and the constant that makes
    raw sphere entropies hard to read (-137 nats at d = 128, kappa = 10). The gap
    ``sphere_entropy(z, kappa) - min_sphere_entropy(d, kappa)`` is free of it and lies
    in [0, log N] for a batch of N (without leave-one-out): 0 for a collapsed batch,
    log N for points whose kernels do not overlap.

    Args:
        dim:
            Dimension d >= 2 of the embeddings.
        kappa:
            Concentration of the kernel, a positive float.

    Returns:
        The minimum in nats, a Python float.

    Raises:
        TypeError: If dim is not an int or kappa not a real number.
        ValueError: If dim < 2 or kappa is not positive and finite.

    Examples:
        >>> from lightly_er.functional import min_sphere_entropy
        >>> round(min_sphere_entropy(3, 2.0), 6)  # -log(2 / (4 pi sinh 2)) - 2
        1.126244
    """
    _check_dim(dim)
    check_positive(kappa, "kappa")
    return -_log_vmf_normalizer_constant(dim, float(kappa)) - float(kappa)


def discrete_entropy(p: Tensor, validate: bool = True) -> Tensor:
    """Entropy of the batch-mean of probability rows, H(mean_i p_i).

    The entropy term of ER on a discrete support (DINO, SwAV prototypes) [0]: the
    marginal distribution of the assignments is estimated by the mean of the
    per-sample distributions, and its Shannon entropy is returned. It is log K for a
    uniform use of the K classes and 0 when every sample puts all its mass on one class.
    Classes with zero mean mass contribute 0 (and a finite gradient).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        p:
            Probability rows, shape (N, K), N >= 1, non-negative, each row summing to 1.
        validate:
            Check that the rows are finite probability distributions (several passes
            and a host sync); a caller that builds them with softmax may pass False.
            Types and shapes are always checked.

    Returns:
        The entropy in nats, a scalar tensor in [0, log K].

    Raises:
        TypeError: If p is not a floating point tensor.
        ValueError: If p is not (N, K) with N >= 1, not finite, or its rows are not
            probability distributions.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import discrete_entropy
        >>> p = torch.softmax(torch.randn(256, 1000), dim=1)
        >>> entropy = discrete_entropy(p)
    """
    if validate:
        _check_probabilities(p, "p", log_input=False)
    else:
        _check_probability_shape(p, "p")
    with torch.autocast(device_type=p.device.type, enabled=False):
        mean = _at_least_float32(p).mean(dim=0)
        tiny = torch.finfo(mean.dtype).tiny
        return -(mean * torch.log(mean.clamp_min(tiny))).sum()


def vmf_reconstruction(
    z_target: Tensor, z_pred: Tensor, kappa: Kappa, validate: bool = True
) -> Tensor:
    """Expected vMF log-likelihood of the targets given the predictions.

    The reconstruction term of ER on the sphere [0]: with q(z2 | z1) the von
    Mises-Fisher density centred at the prediction z_pred (from view 1) with
    concentration kappa,

        E[log q(z_target | z_pred)] = log C_d(kappa) + kappa * mean_i z_pred_i^T z_target_i.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        z_target:
            L2-normalised targets, shape (N, d).
        z_pred:
            L2-normalised predicted mean directions, shape (N, d).
        kappa:
            Concentration, a positive float or a one-element tensor.
        validate:
            Check that the inputs are finite and unit-norm (see
            :func:`sphere_entropy`); types and shapes are always checked.

    Returns:
        The expected log-likelihood in nats, a scalar tensor.

    Raises:
        TypeError: If an input is not a floating point tensor.
        ValueError: If the shapes differ or are not (N, d) with N >= 1 and d >= 2, if an
            input is not finite or not unit-norm, or kappa is not positive.

    Examples:
        >>> import torch
        >>> from torch.nn.functional import normalize
        >>> from lightly_er.functional import vmf_reconstruction
        >>> z1 = normalize(torch.randn(256, 128), dim=1)
        >>> z2 = normalize(z1 + 0.1 * torch.randn(256, 128), dim=1)
        >>> reconstruction = vmf_reconstruction(z2, z1, kappa=10.0)
    """
    _check_sphere(z_target, "z_target", min_samples=1, validate=validate)
    _check_sphere(z_pred, "z_pred", min_samples=1, validate=validate)
    check_same_shape(z_target, "z_target", z_pred, "z_pred")
    kappa_tensor = _as_scalar_kappa(kappa)
    with torch.autocast(device_type=z_target.device.type, enabled=False):
        z_target = _at_least_float32(z_target)
        z_pred = _at_least_float32(z_pred).to(z_target.dtype)
        kappa_z = kappa_tensor.to(device=z_target.device, dtype=z_target.dtype)
        cosine = (z_pred * z_target).sum(dim=1).mean()
        return _log_norm(z_target.shape[1], kappa, kappa_z) + kappa_z * cosine


def discrete_reconstruction(
    p_target: Tensor, p_pred: Tensor, log_input: bool = False, validate: bool = True
) -> Tensor:
    """Expected log-likelihood of target distributions under predicted ones.

    The reconstruction term of ER on a discrete support [0]: the negative
    cross-entropy E_i[sum_c p_target_ic log p_pred_ic], which is at most
    -E_i[H(p_target_i)] and reaches it when the prediction equals the target.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        p_target:
            Target probability rows, shape (N, K).
        p_pred:
            Predicted probability rows, shape (N, K); log-probabilities (for example a
            log_softmax output, more accurate than the log of a softmax) if log_input.
        log_input:
            Whether p_pred holds log-probabilities.
        validate:
            Whether to check that the rows are finite probability distributions.
            The check reads every input several times (with a log-sum-exp over
            p_pred when log_input) and costs more than the estimate; a caller that
            builds the rows with softmax / log_softmax may pass False. Types and
            shapes are always checked.

    Returns:
        The expected log-likelihood in nats, a scalar tensor (<= 0).

    Raises:
        TypeError: If an input is not a floating point tensor.
        ValueError: If the shapes differ or are not (N, K) with N >= 1, if an input is
            not finite (p_pred may hold -inf where log_input and p_target is 0), or
            its rows are not probability distributions.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import discrete_reconstruction
        >>> teacher = torch.softmax(torch.randn(256, 1000) / 0.04, dim=1)
        >>> student = torch.log_softmax(torch.randn(256, 1000) / 0.1, dim=1)
        >>> reconstruction = discrete_reconstruction(teacher, student, log_input=True)
    """
    if validate:
        _check_probabilities(p_target, "p_target", log_input=False)
        _check_probabilities(p_pred, "p_pred", log_input=log_input)
    else:
        _check_probability_shape(p_target, "p_target")
        _check_probability_shape(p_pred, "p_pred")
    check_same_shape(p_target, "p_target", p_pred, "p_pred")
    with torch.autocast(device_type=p_target.device.type, enabled=False):
        p_target = _at_least_float32(p_target)
        p_pred = _at_least_float32(p_pred).to(p_target.dtype)
        if log_input:
            log_pred = p_pred
        else:
            log_pred = torch.log(p_pred.clamp_min(torch.finfo(p_pred.dtype).tiny))
        # One fused multiply-and-sum per row. A log-probability of -inf is clamped to
        # the most negative finite value, so that a target of exactly 0 there
        # contributes 0 (xlogy-style) instead of 0 * -inf = NaN, with no host sync.
        log_pred = log_pred.clamp_min(torch.finfo(log_pred.dtype).min)
        per_row: Tensor = torch.linalg.vecdot(p_target, log_pred)
        return per_row.mean()


# ---------------------------------------------------------------------------------------
# Label-free monitors of the representation: effective rank, alignment, uniformity.
#
# Unlike the ER terms above, these are diagnostics, not terms of the bound. They are
# differentiable all the same. Alignment and uniformity keep the sign of their paper:
# they are loss-like, lower is better.
# ---------------------------------------------------------------------------------------
_RANKME_EPS = 1e-7


_COLLAPSE_RESOLUTION = 1e-3


def collapse_score(z: Tensor, resolution: float = _COLLAPSE_RESOLUTION) -> Tensor:
    """A collapse score in [0, 1]: 1 for a batch spread over all directions, 0 for one point.

    The rows are L2-normalised and centred, z_c = z/||z|| - mean. The score is

        (v / (v + resolution)) * log(1 + r) / log(1 + min(N - 1, d))

    where v = mean_i ||z_c,i||^2 = 1 - ||mean||^2 is the total variance of the
    batch on the unit sphere and r is the effective rank (RankMe [0]) of z_c, 0 when
    z_c is zero. The second factor counts the affine dimensions the batch spans on a
    log scale: one point 0, two antipodal points log 2 / log(1 + m), a random rank-k
    batch about log(1 + k) / log(1 + m), an isotropic batch about 1. Centring is what
    lets it see a narrow cone (post-ReLU features of an untrained network, with a
    mean cosine of 0.98) as the spread batch it is. The first factor makes the score
    scale-aware: variation far below ``resolution`` (a root-mean-square angle of
    about 0.03 rad at the default) counts as collapse, not as a spread batch.
    docs/reading_the_numbers.md has the calibration.

    - [0] Garrido et al., RankMe, ICML 2023, https://arxiv.org/abs/2210.02885

    Args:
        z:
            Embeddings, shape (N, d), N >= 2, d >= 1; any scale (rows are normalised
            here; zero rows stay zero).
        resolution:
            The total variance on the unit sphere below which spread counts as
            collapse, > 0.

    Returns:
        The score, a scalar tensor in [0, 1], float32 for half-precision inputs and
        the dtype of z otherwise. A diagnostic: its gradient is not meant for
        training.

    Raises:
        TypeError: If z is not a floating point tensor, or resolution not a number.
        ValueError: If z is not (N, d) with N >= 2, is not finite, or resolution is
            not positive.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import collapse_score
        >>> round(collapse_score(torch.ones(256, 128)).item(), 3)  # one point
        0.0
        >>> two = torch.cat([torch.ones(128, 128), -torch.ones(128, 128)])
        >>> round(collapse_score(two).item(), 3)  # (1 / 1.001) * log 2 / log 129
        0.142
        >>> collapse_score(torch.randn(256, 128)).item() > 0.95
        True
    """
    check_matrix(z, "z", min_rows=2)
    check_positive(resolution, "resolution")
    n, dim = z.shape
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = _at_least_float32(z)
        z = torch.nn.functional.normalize(z, dim=1)
        centred = z - z.mean(dim=0, keepdim=True)
        variance = centred.pow(2).sum(dim=1).mean()
        singular_values = torch.linalg.svdvals(centred)
        total = singular_values.sum()
        p = singular_values / total.clamp_min(torch.finfo(z.dtype).tiny)
        rank = torch.exp(-torch.special.xlogy(p, p).sum())
        max_rank = min(n - 1, dim)
        rank = torch.where(total > 0, rank, torch.zeros_like(rank)).clamp(0, max_rank)
        dimensions = torch.log1p(rank) / math.log1p(max_rank)
        spread = variance / (variance + resolution)
        return (spread * dimensions).clamp(0.0, 1.0)


def effective_rank(z: Tensor, eps: float = _RANKME_EPS) -> Tensor:
    """Effective rank of a batch of embeddings, RankMe [0].

    With sigma_1 .. sigma_m the singular values of z, m = min(N, d), and
    p_k = sigma_k / sum_l sigma_l + eps, the effective rank is exp(-sum_k p_k log p_k),
    the exponential of the Shannon entropy of the normalised singular values [0, 1].
    It is k for a matrix with k equal non-zero singular values and the rest zero, 1
    for a collapsed batch (all rows parallel, or all zero), and close to m only if
    the embeddings spread evenly over m directions; a dimensional collapse shows as
    an effective rank well below the embedding size. The rows are used as given, not
    centred, as in [0]. The eps of [0] (1e-7) keeps log p_k finite for zero singular
    values; it moves the result by less than m * eps * log(1 / eps), and the result
    is clamped to [1, m].

    - [0] Garrido et al., RankMe: Assessing the Downstream Performance of Pretrained
      Self-Supervised Representations by Their Rank, ICML 2023,
      https://arxiv.org/abs/2210.02885
    - [1] Roy & Vetterli, The effective rank: a measure of effective dimensionality,
      EUSIPCO 2007.

    Args:
        z:
            Embeddings, shape (N, d), N >= 1, d >= 1; any scale.
        eps:
            The small constant added to the normalised singular values, >= 0.

    Returns:
        The effective rank, a scalar tensor in [1, min(N, d)]; float32 for half
        precision inputs, the dtype of z otherwise.

    Raises:
        TypeError: If z is not a floating point tensor, or eps not a real number.
        ValueError: If z is not (N, d) with N >= 1 and d >= 1, is not finite, or eps
            is negative or not finite.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import effective_rank
        >>> z = torch.randn(512, 16) @ torch.diag(torch.tensor([1.0] * 4 + [0.0] * 12))
        >>> round(effective_rank(z).item())  # 4 directions used out of 16
        4
        >>> round(effective_rank(torch.ones(512, 16)).item(), 3)  # collapsed
        1.0
    """
    check_matrix(z, "z", min_rows=1)
    check_real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = _at_least_float32(z)
        singular_values = torch.linalg.svdvals(z)
        total = singular_values.sum().clamp_min(torch.finfo(z.dtype).tiny)
        p = singular_values / total + eps
        entropy = -(p * torch.log(p)).sum()
        return torch.exp(entropy).clamp(1.0, float(min(z.shape)))


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """Alignment of two views on the unit sphere, mean_i ||z1_i - z2_i||^alpha [0].

    How close the embeddings of two views of the same input are, on L2-normalised
    embeddings. Like its paper [0], and unlike the entropies of this module, it is a
    loss-like quantity: lower is better. 0 means the views embed identically (which a
    collapsed representation also achieves, so read it together with
    :func:`uniformity` or an entropy); with alpha = 2 it equals 2 - 2 mean_i cos(z1_i,
    z2_i) and lies in [0, 4].

    - [0] Wang & Isola, Understanding Contrastive Representation Learning through
      Alignment and Uniformity on the Hypersphere, ICML 2020,
      https://arxiv.org/abs/2005.10242

    Args:
        z1:
            L2-normalised embeddings of the first views, shape (N, d), N >= 1, d >= 2.
        z2:
            L2-normalised embeddings of the second views, same shape; row i is the
            other view of the input of row i of z1.
        alpha:
            The exponent alpha > 0 of the distance (2 in [0]).

    Returns:
        The alignment, a scalar tensor in [0, 2^alpha].

    Raises:
        TypeError: If an input is not a floating point tensor, or alpha is not a real
            number.
        ValueError: If the shapes differ or are not (N, d) with N >= 1 and d >= 2, if
            an input is not finite or not unit-norm, or alpha is not positive.

    Examples:
        >>> import torch
        >>> from torch.nn.functional import normalize
        >>> from lightly_er.functional import alignment
        >>> z1 = normalize(torch.randn(256, 32), dim=1)
        >>> alignment(z1, z1).item()
        0.0
        >>> alignment(z1, -z1).item()  # antipodal views: ||z1 - (-z1)||^2 = 4
        4.0
    """
    _check_sphere(z1, "z1", min_samples=1)
    _check_sphere(z2, "z2", min_samples=1)
    check_same_shape(z1, "z1", z2, "z2")
    check_positive(alpha, "alpha")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z1 = _at_least_float32(z1)
        z2 = _at_least_float32(z2).to(z1.dtype)
        # The squared distance, not the norm: exactly 0 for identical views, with a
        # finite gradient there (the norm has none at 0).
        squared = (z1 - z2).pow(2).sum(dim=1)
        if alpha == 2:
            return squared.mean()
        return squared.pow(alpha / 2.0).mean()


def uniformity(z: Tensor, t: float = 2.0) -> Tensor:
    """Uniformity of embeddings on the unit sphere, log mean exp(-t ||z_i - z_j||^2) [0].

    The logarithm of the mean Gaussian potential over the N (N - 1) / 2 distinct
    pairs i < j. Like its paper [0] it is loss-like: lower is better (more uniform).
    It is 0 for a collapsed batch (all rows equal) and lies in [-4 t, 0]; for points
    spread uniformly over a high-dimensional sphere it approaches -2 t. Computed in
    log-sum-exp form from the Gram matrix, so identical rows have a finite gradient.

    - [0] Wang & Isola, Understanding Contrastive Representation Learning through
      Alignment and Uniformity on the Hypersphere, ICML 2020,
      https://arxiv.org/abs/2005.10242

    Args:
        z:
            L2-normalised embeddings, shape (N, d), N >= 2, d >= 2.
        t:
            The scale t > 0 of the Gaussian potential (2 in [0]).

    Returns:
        The uniformity, a scalar tensor in [-4 t, 0].

    Raises:
        TypeError: If z is not a floating point tensor, or t is not a real number.
        ValueError: If z is not (N, d) with N >= 2 and d >= 2, is not finite or not
            unit-norm, or t is not positive.

    Examples:
        >>> import torch
        >>> from torch.nn.functional import normalize
        >>> from lightly_er.functional import uniformity
        >>> uniformity(normalize(torch.ones(64, 8), dim=1)).item()  # collapsed
        0.0
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # one antipodal pair
        >>> uniformity(z, t=2.0).item()  # log exp(-2 * 4)
        -8.0
    """
    _check_sphere(z, "z", min_samples=2)
    check_positive(t, "t")
    n = z.shape[0]
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = _at_least_float32(z)
        rows, cols = torch.triu_indices(n, n, offset=1, device=z.device)
        # ||z_i||^2 + ||z_j||^2 - 2 z_i^T z_j with the actual norms, not 2 - 2 cos,
        # so rows that are unit-norm only to rounding still give 0 for equal rows.
        squared_norms = z.pow(2).sum(dim=1)
        gram = z @ z.T
        squared = (
            squared_norms[rows] + squared_norms[cols] - 2.0 * gram[rows, cols]
        ).clamp_min(0.0)
        return torch.logsumexp(-t * squared, dim=0) - math.log(rows.numel())


# ---------------------------------------------------------------------------------------
# Argument checks. Every public function validates its input and names the argument.
# ---------------------------------------------------------------------------------------
_ESTIMATORS: Sequence[str] = ("joe", "plugin")


def _unit_norm_tolerance(dtype: torch.dtype) -> float:
    if dtype == torch.float64:
        return 1e-6
    if dtype == torch.float32:
        return 1e-4
    return 1e-2


def _at_least_float32(x: Tensor) -> Tensor:
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _check_dim(dim: int) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (the sphere S^(dim-1)), got {dim}")


def _as_kappa_tensor(kappa: Kappa, name: str) -> Tensor:
    if isinstance(kappa, Tensor):
        if not kappa.is_floating_point():
            raise TypeError(
                f"{name} must be a floating point tensor, got dtype {kappa.dtype}"
            )
        tensor = kappa
    elif isinstance(kappa, (int, float)) and not isinstance(kappa, bool):
        # A number is checked in Python: no tensor op, nothing for torch.compile.
        if not math.isfinite(kappa) or kappa <= 0:
            raise ValueError(f"{name} must be positive and finite, got {float(kappa)}")
        return torch.tensor(float(kappa), dtype=torch.float64)
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or a real number, got {type(kappa).__name__}"
        )
    if tensor.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    # A data-dependent check (a host sync on an accelerator): skipped while
    # torch.compile traces.
    if not torch.compiler.is_compiling() and (
        not bool(torch.isfinite(tensor).all()) or not bool((tensor > 0).all())
    ):
        raise ValueError(f"{name} must be positive and finite, got {_describe(tensor)}")
    return tensor


def _as_scalar_kappa(kappa: Kappa) -> Tensor:
    tensor = _as_kappa_tensor(kappa, "kappa")
    if tensor.numel() != 1:
        raise ValueError(
            f"kappa must be a single concentration, got shape {tuple(tensor.shape)}"
        )
    return tensor.reshape(())


def _describe(tensor: Tensor) -> str:
    if tensor.numel() == 1:
        return str(tensor.item())
    return f"a tensor of shape {tuple(tensor.shape)} with non-positive or non-finite values"


def _check_sphere(
    z: Tensor, name: str, min_samples: int, validate: bool = True
) -> None:
    check_matrix(z, name, min_rows=min_samples, min_dim=2, check_values=validate)
    if z.shape[0] == 0 or not validate:
        return
    tolerance = _unit_norm_tolerance(z.dtype)
    norms = torch.linalg.vector_norm(_at_least_float32(z.detach()), dim=1)
    deviation = (norms - 1).abs().max().item()
    if deviation > tolerance:
        raise ValueError(
            f"{name} rows must be unit-norm (L2-normalise them first, e.g. with "
            f"torch.nn.functional.normalize); the largest | ||row|| - 1 | is "
            f"{deviation:.3g} > tolerance {tolerance:g}"
        )


def _check_probability_shape(p: Tensor, name: str) -> None:
    check_matrix(p, name, min_rows=1, min_dim=1, check_values=False)


def _check_probabilities(p: Tensor, name: str, log_input: bool) -> None:
    _check_probability_shape(p, name)
    values = _at_least_float32(p.detach())
    tolerance = 1e-6 * p.shape[1] if p.dtype == torch.float64 else 1e-3
    if log_input:
        if bool(torch.isnan(values).any()) or bool((values == float("inf")).any()):
            raise ValueError(f"{name} contains NaN or +Inf")
        if bool((values > tolerance).any()):
            raise ValueError(f"{name} must hold log-probabilities (<= 0)")
        sums = torch.logsumexp(values, dim=1).exp()
    else:
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name} contains NaN or Inf")
        if bool((values < 0).any()):
            raise ValueError(f"{name} must hold probabilities (>= 0)")
        sums = values.sum(dim=1)
    deviation = (sums - 1).abs().max().item()
    if deviation > tolerance:
        what = "log-probability" if log_input else "probability"
        raise ValueError(
            f"{name} rows must be {what} distributions summing to 1 (apply "
            f"{'log_softmax' if log_input else 'softmax'} first); the largest "
            f"|sum - 1| is {deviation:.3g} > tolerance {tolerance:g}"
        )


def _check_estimator(estimator: str) -> None:
    check_choice(estimator, "estimator", _ESTIMATORS)
