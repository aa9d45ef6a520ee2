"""The ER terms on the unit sphere: the plug-in vMF entropy and the vMF reconstruction.

Private: the public names are re-exported by :mod:`lightly_er.functional`.
``relative_sphere_entropy`` and ``relative_vmf_reconstruction`` are the library's
internal entry points for callers that add the two terms (the losses): they return
the terms without the constant log C_d(kappa), which cancels in
``entropy + reconstruction`` and would otherwise swamp float32 at large d.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from lightly_er.functional._checks import (
    Kappa,
    at_least_float32,
    check_dim,
    check_sphere,
    checked_kappa,
)
from lightly_er.functional._kde import kernel_entropy
from lightly_er.functional._special import (
    log_vmf_normalizer,
    log_vmf_normalizer_constant,
)
from lightly_er.utils._checks import check_positive, check_same_shape


def sphere_entropy(
    z: Tensor,
    kappa: Kappa,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
) -> Tensor:
    """Entropy of embeddings on the unit sphere: the plug-in vMF kernel estimate.

    The density is estimated with a von Mises-Fisher kernel of concentration kappa
    centered on every sample [0, Section 4.1],

        log p(z_i) = log C_d(kappa) + log sum_j exp(kappa z_i^T z_j) - log N,

    and the estimate is the entropy of this kernel density evaluated on the samples,
    H = sum_i w_i (-log p(z_i)) with w = softmax_i log p(z_i), as in the authors'
    reference code (each sample's own kernel kept). It lies in
    [H_min, H_min + log N], H_min = -log C_d(kappa) - kappa
    (:func:`min_sphere_entropy`); N identical points give H_min.

    It runs in O(N^2 d) time, in at least float32 (half precision is upcast, autocast
    switched off), and is differentiable: one fused matrix product forward and
    backward. The constant log C_d(kappa) (about -270,000 nats at d = 65,536) is
    added once, to the estimate computed without it. ``extra_support`` adds M more
    kernel centers (a memory bank): the kernel sums run over the N + M centers and
    the estimate is still taken at the N samples (a cross-entropy with the extra
    centers' distribution, which is biased upwards when they are stale).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        z:
            L2-normalized embeddings, shape (N, d), N >= 1, d >= 1.
        kappa:
            Concentration of the kernel, a positive float or a one-element tensor
            (which may require grad).
        extra_support:
            Optional further kernel centers, L2-normalized, shape (M, d).
        validate:
            Check that the inputs are finite and unit-norm (a full pass and a host
            sync); types and shapes are always checked.

    Returns:
        The entropy estimate in nats, a scalar tensor.

    Raises:
        TypeError: If z is not a floating point tensor.
        ValueError: If z is not (N, d) with N >= 1 and d >= 1, is not finite or not
            unit-norm, or if kappa is not positive.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import min_sphere_entropy, sphere_entropy
        >>> z = torch.nn.functional.normalize(torch.randn(256, 128), dim=1)
        >>> entropy = sphere_entropy(z, kappa=10.0)
        >>> gap = entropy - min_sphere_entropy(128, 10.0)  # in [0, log 256]
    """
    checked = _check_plugin_inputs(z, kappa, extra_support, validate)
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = at_least_float32(z)
        kappa_z = kappa_in(checked, z)
        relative = kernel_entropy(z, kappa_z, extra_support)
        return relative - log_norm(z.shape[1], kappa_z)


def relative_sphere_entropy(
    z: Tensor,
    kappa: Kappa,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
) -> Tensor:
    """sphere_entropy(...) + log C_d(kappa): the estimate without its constant.

    Library-internal (not re-exported). Same arguments and checks as
    :func:`sphere_entropy`; the result is computed without the constant (a number
    of the order of kappa instead of 10^5 at large d, so float32 resolves it and its
    gradient).
    """
    checked = _check_plugin_inputs(z, kappa, extra_support, validate)
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = at_least_float32(z)
        return kernel_entropy(z, kappa_in(checked, z), extra_support)


def check_centers(z: Tensor, extra_support: Optional[Tensor], validate: bool) -> int:
    """Checks z and extra_support; returns the number of kernel centers."""
    check_sphere(z, "z", min_samples=1, validate=validate)
    num_centers = z.shape[0]
    if extra_support is not None:
        check_sphere(extra_support, "extra_support", min_samples=0, validate=validate)
        if extra_support.shape[1] != z.shape[1]:
            raise ValueError(
                f"extra_support must have the same dim as z, got shape "
                f"{tuple(extra_support.shape)} for z of shape {tuple(z.shape)}"
            )
        num_centers += extra_support.shape[0]
    return num_centers


def _check_plugin_inputs(
    z: Tensor, kappa: Kappa, extra_support: Optional[Tensor], validate: bool
) -> Union[float, Tensor]:
    check_centers(z, extra_support, validate)
    return checked_kappa(kappa)


def kappa_in(kappa: Union[float, Tensor], z: Tensor) -> Union[float, Tensor]:
    """kappa for the kernel: a Python float stays one (fused into the product)."""
    if isinstance(kappa, Tensor):
        return kappa.to(device=z.device, dtype=z.dtype)
    return kappa


def log_norm(dim: int, kappa: Union[float, Tensor]) -> Union[float, Tensor]:
    """log C_d(kappa): a cached Python float for a number, a tensor (with grad) else."""
    if isinstance(kappa, Tensor):
        return log_vmf_normalizer(dim, kappa)
    return log_vmf_normalizer_constant(dim, float(kappa))


def min_sphere_entropy(dim: int, kappa: float) -> float:
    """The smallest plug-in :func:`sphere_entropy`: -log C_d(kappa) - kappa.

    It is the estimate for a batch of identical points, and the constant that makes
    raw sphere entropies hard to read (-137 nats at d = 128, kappa = 10). The gap
    ``sphere_entropy(z, kappa) - min_sphere_entropy(d, kappa)`` is free of it and lies
    in [0, log N] for a batch of N: 0 for a collapsed batch, log N for points whose
    kernels do not overlap.

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
    Mises-Fisher density centered at the prediction z_pred (from view 1) with
    concentration kappa,

        E[log q(z_target | z_pred)] = log C_d(kappa) + kappa * mean_i z_pred_i^T z_target_i.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        z_target:
            L2-normalized targets, shape (N, d).
        z_pred:
            L2-normalized predicted mean directions, shape (N, d).
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
    checked = _check_reconstruction_inputs(z_target, z_pred, kappa, validate)
    with torch.autocast(device_type=z_target.device.type, enabled=False):
        z_target, z_pred = _as_working_dtype(z_target, z_pred)
        kappa_z = kappa_in(checked, z_target)
        relative = kappa_z * _mean_cosine(z_target, z_pred)
        return relative + log_norm(z_target.shape[1], kappa_z)


def relative_vmf_reconstruction(
    z_target: Tensor, z_pred: Tensor, kappa: Kappa, validate: bool = True
) -> Tensor:
    """vmf_reconstruction(...) - log C_d(kappa) = kappa * mean_i z_pred_i^T z_target_i.

    Library-internal (not re-exported); same arguments and checks as
    :func:`vmf_reconstruction`.
    """
    checked = _check_reconstruction_inputs(z_target, z_pred, kappa, validate)
    with torch.autocast(device_type=z_target.device.type, enabled=False):
        z_target, z_pred = _as_working_dtype(z_target, z_pred)
        result: Tensor = kappa_in(checked, z_target) * _mean_cosine(z_target, z_pred)
        return result


def _check_reconstruction_inputs(
    z_target: Tensor, z_pred: Tensor, kappa: Kappa, validate: bool
) -> Union[float, Tensor]:
    check_sphere(z_target, "z_target", min_samples=1, validate=validate)
    check_sphere(z_pred, "z_pred", min_samples=1, validate=validate)
    check_same_shape(z_target, "z_target", z_pred, "z_pred")
    return checked_kappa(kappa)


def _as_working_dtype(z_target: Tensor, z_pred: Tensor) -> Tuple[Tensor, Tensor]:
    z_target = at_least_float32(z_target)
    return z_target, at_least_float32(z_pred).to(z_target.dtype)


def _mean_cosine(z_target: Tensor, z_pred: Tensor) -> Tensor:
    # Rows are unit-norm: the row-wise dot product is the cosine.
    return (z_pred * z_target).sum(dim=1).mean()
