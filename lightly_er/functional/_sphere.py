"""The ER terms on the unit sphere: vMF kernel-density entropy and vMF reconstruction.

Private: the public names are re-exported by :mod:`lightly_er.functional`.
``relative_sphere_entropy`` and ``relative_vmf_reconstruction`` are the library's
internal entry points for callers that add the two terms (the losses, the meter):
they return the terms without the constant log C_d(kappa), which cancels in
``entropy + reconstruction`` and would otherwise swamp float32 at large d.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from lightly_er.functional._checks import (
    Kappa,
    SphereEstimator,
    as_scalar_kappa,
    at_least_float32,
    check_dim,
    check_sphere,
)
from lightly_er.functional._special import (
    log_vmf_normalizer,
    log_vmf_normalizer_constant,
)
from lightly_er.utils.checks import check_estimator, check_positive, check_same_shape


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
    The constant log C_d(kappa) (about -270,000 nats at d = 65,536) is added once, to
    the estimate computed without it, so that float32 keeps the estimate's detail.
    ``extra_support`` adds M more kernel centres (for example a memory bank); the sums
    then run over the N + M centres and N + M replaces N. One sample (N = 1, no
    extra support) is a valid input: its estimate is H_min, whatever z is.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        z:
            L2-normalised embeddings, shape (N, d), N >= 1, d >= 1 (d = 1: S^0,
            rows of +1 or -1).
        kappa:
            Concentration of the kernel, a positive float or a one-element tensor
            (which may require grad).
        estimator:
            ``"plugin"`` (default) or ``"joe"``.
        leave_one_out:
            Exclude each sample from its own density estimate (needs at least two
            kernel centres in z and extra_support together).
        extra_support:
            Optional further kernel centres, L2-normalised, shape (M, d).
        validate:
            Check that the inputs are finite and unit-norm (a full pass and a host
            sync); types and shapes are always checked.

    Returns:
        The entropy estimate in nats, a scalar tensor.

    Raises:
        TypeError: If z is not a floating point tensor, or estimator is not a string.
        ValueError: If z is not (N, d) with N >= 1 and d >= 1, is not finite or not
            unit-norm, if kappa is not positive, estimator is unknown, or
            leave_one_out leaves a sample no other kernel centre.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import min_sphere_entropy, sphere_entropy
        >>> z = torch.nn.functional.normalize(torch.randn(256, 128), dim=1)
        >>> entropy = sphere_entropy(z, kappa=10.0)
        >>> gap = entropy - min_sphere_entropy(128, 10.0)  # in [0, log 256]
    """
    kappa_tensor = _check_entropy_inputs(
        z, kappa, estimator, leave_one_out, extra_support, validate
    )
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = at_least_float32(z)
        kappa_z = kappa_tensor.to(device=z.device, dtype=z.dtype)
        relative = _relative_entropy(
            z, kappa_z, estimator, leave_one_out, extra_support
        )
        return relative - _log_norm(z.shape[1], kappa, kappa_z)


def relative_sphere_entropy(
    z: Tensor,
    kappa: Kappa,
    estimator: SphereEstimator = "plugin",
    leave_one_out: bool = False,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
) -> Tensor:
    """sphere_entropy(...) + log C_d(kappa): the estimate without its constant.

    Library-internal (not re-exported). Same arguments and checks as
    :func:`sphere_entropy`; the result is -sum_i w_i r_i (plug-in) or -mean_i r_i
    (joe) with r_i = log sum_j exp(kappa z_i^T z_j) - log N, a number of the order of
    kappa instead of 10^5 at large d, so float32 resolves it and its gradient.
    """
    kappa_tensor = _check_entropy_inputs(
        z, kappa, estimator, leave_one_out, extra_support, validate
    )
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = at_least_float32(z)
        kappa_z = kappa_tensor.to(device=z.device, dtype=z.dtype)
        return _relative_entropy(z, kappa_z, estimator, leave_one_out, extra_support)


def _check_entropy_inputs(
    z: Tensor,
    kappa: Kappa,
    estimator: str,
    leave_one_out: bool,
    extra_support: Optional[Tensor],
    validate: bool,
) -> Tensor:
    """Checks the arguments of sphere_entropy; returns kappa as a 0-dim tensor."""
    check_estimator(estimator)
    check_sphere(z, "z", min_samples=1, validate=validate)
    num_centres = z.shape[0]
    if extra_support is not None:
        check_sphere(extra_support, "extra_support", min_samples=0, validate=validate)
        if extra_support.shape[1] != z.shape[1]:
            raise ValueError(
                f"extra_support must have the same dim as z, got shape "
                f"{tuple(extra_support.shape)} for z of shape {tuple(z.shape)}"
            )
        num_centres += extra_support.shape[0]
    if leave_one_out and num_centres < 2:
        raise ValueError(
            "leave_one_out needs at least 2 kernel centres (z and extra_support "
            f"together), got {num_centres}"
        )
    return as_scalar_kappa(kappa)


def _relative_entropy(
    z: Tensor,
    kappa_z: Tensor,
    estimator: str,
    leave_one_out: bool,
    extra_support: Optional[Tensor],
) -> Tensor:
    n = z.shape[0]
    support = z
    if extra_support is not None:
        support = torch.cat([z, extra_support.to(z.dtype)], dim=0)
    # One N x (N + M) matrix; the exponentials stay inside logsumexp.
    logits = kappa_z * (z @ support.T)
    count = support.shape[0]
    if leave_one_out:
        # The diagonal holds each sample's own kernel: exp(-inf) = 0 drops it.
        logits = logits.diagonal_scatter(
            torch.full((n,), float("-inf"), dtype=z.dtype, device=z.device)
        )
        count -= 1
    # log p(z_i) - log C_d(kappa): the constant is added by the caller, once.
    log_density = torch.logsumexp(logits, dim=1) - math.log(count)
    if estimator == "joe":
        return -log_density.mean()
    # softmax is shift-invariant: these are the weights of the full log-densities.
    weights = torch.softmax(log_density, dim=0)
    return -(weights * log_density).sum()


def _log_norm(dim: int, kappa: Kappa, kappa_tensor: Tensor) -> Union[float, Tensor]:
    """log C_d(kappa): a cached Python float for a number, a tensor (with grad) else."""
    if isinstance(kappa, (int, float)):
        return log_vmf_normalizer_constant(dim, float(kappa))
    return log_vmf_normalizer(dim, kappa_tensor)


def min_sphere_entropy(dim: int, kappa: float) -> float:
    """The smallest value of :func:`sphere_entropy`: -log C_d(kappa) - kappa.

    It is the estimate for a batch of identical points, and the constant that makes
    raw sphere entropies hard to read (-137 nats at d = 128, kappa = 10). The gap
    ``sphere_entropy(z, kappa) - min_sphere_entropy(d, kappa)`` is free of it and lies
    in [0, log N] for a batch of N (without leave-one-out): 0 for a collapsed batch,
    log N for points whose kernels do not overlap.

    Args:
        dim:
            Dimension d >= 1 of the embeddings.
        kappa:
            Concentration of the kernel, a positive float.

    Returns:
        The minimum in nats, a Python float.

    Raises:
        TypeError: If dim is not an int or kappa not a real number.
        ValueError: If dim < 1 or kappa is not positive and finite.

    Examples:
        >>> from lightly_er.functional import min_sphere_entropy
        >>> round(min_sphere_entropy(3, 2.0), 6)  # -log(2 / (4 pi sinh 2)) - 2
        1.126244
    """
    check_dim(dim)
    check_positive(kappa, "kappa")
    return -log_vmf_normalizer_constant(dim, float(kappa)) - float(kappa)


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
        ValueError: If the shapes differ or are not (N, d) with N >= 1 and d >= 1, if an
            input is not finite or not unit-norm, or kappa is not positive.

    Examples:
        >>> import torch
        >>> from torch.nn.functional import normalize
        >>> from lightly_er.functional import vmf_reconstruction
        >>> z1 = normalize(torch.randn(256, 128), dim=1)
        >>> z2 = normalize(z1 + 0.1 * torch.randn(256, 128), dim=1)
        >>> reconstruction = vmf_reconstruction(z2, z1, kappa=10.0)
    """
    kappa_tensor = _check_reconstruction_inputs(z_target, z_pred, kappa, validate)
    with torch.autocast(device_type=z_target.device.type, enabled=False):
        z_target, z_pred, kappa_z = _as_working_dtype(z_target, z_pred, kappa_tensor)
        relative = kappa_z * _mean_cosine(z_target, z_pred)
        return relative + _log_norm(z_target.shape[1], kappa, kappa_z)


def relative_vmf_reconstruction(
    z_target: Tensor, z_pred: Tensor, kappa: Kappa, validate: bool = True
) -> Tensor:
    """vmf_reconstruction(...) - log C_d(kappa) = kappa * mean_i z_pred_i^T z_target_i.

    Library-internal (not re-exported); same arguments and checks as
    :func:`vmf_reconstruction`.
    """
    kappa_tensor = _check_reconstruction_inputs(z_target, z_pred, kappa, validate)
    with torch.autocast(device_type=z_target.device.type, enabled=False):
        z_target, z_pred, kappa_z = _as_working_dtype(z_target, z_pred, kappa_tensor)
        return kappa_z * _mean_cosine(z_target, z_pred)


def _check_reconstruction_inputs(
    z_target: Tensor, z_pred: Tensor, kappa: Kappa, validate: bool
) -> Tensor:
    check_sphere(z_target, "z_target", min_samples=1, validate=validate)
    check_sphere(z_pred, "z_pred", min_samples=1, validate=validate)
    check_same_shape(z_target, "z_target", z_pred, "z_pred")
    return as_scalar_kappa(kappa)


def _as_working_dtype(
    z_target: Tensor, z_pred: Tensor, kappa_tensor: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    z_target = at_least_float32(z_target)
    z_pred = at_least_float32(z_pred).to(z_target.dtype)
    return z_target, z_pred, kappa_tensor.to(z_target.device, z_target.dtype)


def _mean_cosine(z_target: Tensor, z_pred: Tensor) -> Tensor:
    # Rows are unit-norm: the row-wise dot product is the cosine.
    return (z_pred * z_target).sum(dim=1).mean()
