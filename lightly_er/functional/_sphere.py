"""The sphere entropy with its choice of estimator: the kernel and the sample estimators.

Private: the public names are re-exported by :mod:`lightly_er.functional`. This
module adds the ``estimator`` choice (and ``leave_one_out``) to the plug-in estimate
of ``_vmf``: the kernel estimators of ``_kernel_estimators`` (joe, Renyi-2) and the
sample estimators of ``_samples`` (nearest neighbors, log-determinant), research
options of lightly-er that the upstream series does not send.
``relative_sphere_entropy`` is the internal entry point for callers that add the
entropy to a reconstruction (the research losses, the meter): it returns the
estimate without the constant log C_d(kappa), which cancels in
``entropy + reconstruction`` and would otherwise swamp float32 at large d.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor
from typing_extensions import Literal

from lightly_er.functional._checks import Kappa, at_least_float32, checked_kappa
from lightly_er.functional._kernel_estimators import KDE_ESTIMATORS, kernel_entropy
from lightly_er.functional._samples import LOGDET_EPS, knn_entropy, logdet_entropy
from lightly_er.functional._vmf import check_centers, kappa_in, log_norm
from lightly_er.utils.checks import check_estimator, check_int, check_positive

SphereEstimator = Literal["joe", "plugin", "knn", "renyi2", "logdet"]
"""The entropy estimators of :func:`sphere_entropy`."""


def sphere_entropy(
    z: Tensor,
    kappa: Kappa,
    estimator: SphereEstimator = "plugin",
    leave_one_out: bool = False,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
) -> Tensor:
    """Entropy of embeddings on the unit sphere, by one of five sample estimators.

    The vMF kernel estimators [0, Section 4.1] estimate the density with a von
    Mises-Fisher kernel of concentration kappa centered on every sample,

        log p(z_i) = log C_d(kappa) + log sum_j exp(kappa z_i^T z_j) - log N

    (with leave_one_out, j != i and N - 1 instead of N), and reduce it:

    - ``"plugin"`` (default, as the authors' reference code): the entropy of the KDE
      evaluated on the samples, H = sum_i w_i (-log p(z_i)), w = softmax_i log p(z_i).
    - ``"joe"``: the resubstitution estimator H = -mean_i log p(z_i).
    - ``"renyi2"``: the Renyi entropy of order 2, H_2 = -log E[p(Z)] estimated by
      -log mean_i p(z_i). With leave_one_out it is minus Wang & Isola's uniformity
      at t = kappa / 2 [2], shifted by -log C_d(kappa) - kappa; H_2 <= H.

    Two estimators need no kernel (kappa is not used):

    - ``"knn"``: Kozachenko-Leonenko [1] with chordal balls,
      H = psi(N) - psi(1) + log V_{d-1} + (d - 1) mean_i log r_i, r_i the distance to
      the nearest other sample and V_{d-1} the volume of the unit (d - 1)-ball;
      :func:`knn_sphere_entropy` takes the k-th neighbor. DINOv2's KoLeo [3] is
      -mean_i log r_i: this estimate is (d - 1) times minus KoLeo plus a constant.
    - ``"logdet"``: the Gaussian entropy of the sample covariance Sigma (divided by
      N - 1), shifted to be exact for the uniform distribution:
      H = log|S^{d-1}| + 1/2 logdet(d Sigma + 0.05 I) (:func:`logdet_sphere_entropy`).

    Without leave_one_out the kernel estimates lie in
    [H_min, H_min + log N], H_min = -log C_d(kappa) - kappa
    (:func:`min_sphere_entropy`); N identical points give H_min.

    All run in O(N^2 d) time (logdet in O(N d min(N, d))), in at least float32
    (half precision is upcast, autocast switched off), and are differentiable. The
    kernel estimators are one fused matrix product forward and backward; the
    constant log C_d(kappa) (about -270,000 nats at d = 65,536) is added once, to the
    estimate computed without it. ``extra_support`` adds M more centers (a memory):
    the kernel sums and the neighbor search run over the N + M centers, the
    estimate is still taken at the N samples (a cross-entropy with the extra
    centers' distribution, which is biased upwards when they are stale), and
    logdet uses the covariance of all N + M rows. One sample without extra support
    gives H_min for the kernel estimators and is an error for knn.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] Kozachenko & Leonenko, Sample estimate of the entropy of a random vector,
      Problems Inform. Transmission 23, 1987; Goria et al., J. Nonparametric Stat. 2005
    - [2] Wang & Isola, ICML 2020, https://arxiv.org/abs/2005.10242
    - [3] Sablayrolles et al., Spreading vectors for similarity search, ICLR 2019

    Args:
        z:
            L2-normalized embeddings, shape (N, d), N >= 1, d >= 1 (knn: d >= 2; d = 1
            is S^0, rows of +1 or -1).
        kappa:
            Concentration of the kernel, a positive float or a one-element tensor
            (which may require grad). Checked, but not used, by knn and logdet.
        estimator:
            ``"plugin"`` (default), ``"joe"``, ``"renyi2"``, ``"knn"`` or ``"logdet"``.
        leave_one_out:
            Exclude each sample's own kernel (kernel estimators only; needs at
            least two centers in z and extra_support together).
        extra_support:
            Optional further centers, L2-normalized, shape (M, d).
        validate:
            Check that the inputs are finite and unit-norm (a full pass and a host
            sync); types and shapes are always checked.

    Returns:
        The entropy estimate in nats, a scalar tensor.

    Raises:
        TypeError: If z is not a floating point tensor, or estimator is not a string.
        ValueError: If z is not (N, d) with N >= 1 and d >= 1, is not finite or not
            unit-norm, if kappa is not positive, estimator is unknown, leave_one_out
            is asked of knn or logdet or leaves a sample no other kernel center, or
            knn gets d = 1 or no second sample.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import min_sphere_entropy, sphere_entropy
        >>> z = torch.nn.functional.normalize(torch.randn(256, 128), dim=1)
        >>> entropy = sphere_entropy(z, kappa=10.0)
        >>> gap = entropy - min_sphere_entropy(128, 10.0)  # in [0, log 256]
        >>> knn = sphere_entropy(z, kappa=10.0, estimator="knn")
    """
    checked = _check_entropy_inputs(
        z, kappa, estimator, leave_one_out, extra_support, validate
    )
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = at_least_float32(z)
        if estimator not in KDE_ESTIMATORS:
            return _sample_entropy(z, estimator, extra_support, None)
        kappa_z = kappa_in(checked, z)
        relative = kernel_entropy(z, kappa_z, estimator, leave_one_out, extra_support)
        return relative - log_norm(z.shape[1], kappa_z)


def relative_sphere_entropy(
    z: Tensor,
    kappa: Kappa,
    estimator: SphereEstimator = "plugin",
    leave_one_out: bool = False,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
    extra_valid: Optional[Tensor] = None,
) -> Tensor:
    """sphere_entropy(...) + log C_d(kappa): the estimate without its constant.

    Library-internal (not re-exported). Same arguments and checks as
    :func:`sphere_entropy`; for the kernel estimators the result is computed without
    the constant (a number of the order of kappa instead of 10^5 at large d, so
    float32 resolves it and its gradient); knn and logdet add log C_d(kappa) to
    their estimate, so that every caller subtracts the same constant.
    ``extra_valid`` (bool, shape (M,)) marks which rows of extra_support count (an
    entropy memory that is not full yet), without a host sync.
    """
    checked = _check_entropy_inputs(
        z, kappa, estimator, leave_one_out, extra_support, validate
    )
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = at_least_float32(z)
        kappa_z = kappa_in(checked, z)
        if estimator in KDE_ESTIMATORS:
            return kernel_entropy(
                z, kappa_z, estimator, leave_one_out, extra_support, extra_valid
            )
        entropy = _sample_entropy(z, estimator, extra_support, extra_valid)
        return entropy + log_norm(z.shape[1], kappa_z)


def knn_sphere_entropy(
    z: Tensor,
    k: int = 1,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
) -> Tensor:
    """Kozachenko-Leonenko entropy of embeddings on the unit sphere S^{d-1}, in nats.

    H = psi(n) - psi(k) + log V_{d-1} + (d - 1) mean_i log r_i [0, 1], with r_i the
    chordal (Euclidean) distance from z_i to its k-th nearest neighbor among the
    other samples and extra_support, n - 1 the number of those, and V_{d-1} =
    pi^((d-1)/2) / Gamma((d+1)/2) the volume of the unit ball of the sphere's
    dimension d - 1. The ball of chordal radius r is the spherical cap it cuts out,
    whose area is V_{d-1} r^(d-1) exactly on S^2 (Archimedes): there the estimate of
    a uniform sample is unbiased at every N. Above S^2 the cap is smaller than
    V_{d-1} r^(d-1), so the estimate is biased upwards at finite N and consistent as
    N grows. A squared distance gets 1e-16 added (KoLeo's eps of 1e-8), so
    duplicate points give a finite value. The neighbor search is one Gram matrix
    without gradient; the gradient flows through the N distances.

    - [0] Kozachenko & Leonenko, Problems Inform. Transmission 23, 1987
    - [1] Goria, Leonenko, Mergel & Novi Inverardi, J. Nonparametric Stat. 17, 2005

    Args:
        z:
            L2-normalized embeddings, shape (N, d), d >= 2.
        k:
            Which neighbor, 1 <= k <= N - 1 + M.
        extra_support:
            Optional further reference points, L2-normalized, shape (M, d).
        validate:
            Check that the inputs are finite and unit-norm.

    Returns:
        The entropy estimate in nats, a scalar tensor.

    Raises:
        TypeError: If z is not a floating point tensor or k not an int.
        ValueError: If z is not (N, d) with d >= 2, not unit-norm, or has fewer
            than k other points.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import knn_sphere_entropy
        >>> z = torch.nn.functional.normalize(torch.randn(512, 3), dim=1)
        >>> entropy = knn_sphere_entropy(z)  # about log(4 pi) = 2.53
    """
    _check_entropy_inputs(z, 1.0, "knn", False, extra_support, validate)
    others = z.shape[0] - 1 + (0 if extra_support is None else extra_support.shape[0])
    check_int(k, "k", 1, max(others, 1))
    with torch.autocast(device_type=z.device.type, enabled=False):
        return knn_entropy(at_least_float32(z), k, extra_support)


def logdet_sphere_entropy(
    z: Tensor,
    eps: float = LOGDET_EPS,
    extra_support: Optional[Tensor] = None,
    validate: bool = True,
) -> Tensor:
    """Gaussian (log-determinant) entropy of embeddings on the unit sphere, in nats.

    H = log|S^{d-1}| + 1/2 logdet(d Sigma + eps I), with Sigma the sample covariance
    of the rows (centered, divided by N - 1, as torch.cov and VICReg [1]; 0 for one
    row). It is the differential entropy 1/2 logdet(2 pi e (Sigma + eps/d I)) of a
    Gaussian with that covariance, shifted by log|S^{d-1}| - d/2 log(2 pi e / d) so
    that the uniform distribution (Sigma = I / d) gets its exact entropy
    log|S^{d-1}| as eps -> 0 and N grows. It is at most log|S^{d-1}| + d/2 log(1 +
    eps) (the trace of Sigma is at most 1 on the sphere), is maximal for an isotropic
    covariance, and measures only second moments: unlike the other estimators it is
    not a consistent estimator of the entropy on the sphere. MEC's coding length [2]
    is the same log-determinant of the uncentered second moment, with its distortion
    in the place of eps. The smaller of the two Gram matrices (N x N or d x d) is
    factorized (Cholesky, no host sync).

    - [0] Cover & Thomas, Elements of Information Theory, Theorem 8.6.5
    - [1] VICReg, 2022, https://arxiv.org/abs/2105.04906
    - [2] MEC, 2022, https://arxiv.org/abs/2210.11464

    Args:
        z:
            L2-normalized embeddings, shape (N, d).
        eps:
            Ridge added to d Sigma, > 0 (0.05: 5% of the uniform's variance).
        extra_support:
            Optional further rows, L2-normalized, shape (M, d), whose covariance
            counts with z's (without gradient if they have none).
        validate:
            Check that the inputs are finite and unit-norm.

    Returns:
        The entropy estimate in nats, a scalar tensor.

    Raises:
        TypeError: If z is not a floating point tensor or eps not a real number.
        ValueError: If z is not (N, d), not unit-norm, or eps not positive.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import log_sphere_area, logdet_sphere_entropy
        >>> z = torch.nn.functional.normalize(torch.randn(4096, 8), dim=1)
        >>> gap = logdet_sphere_entropy(z, eps=1e-6) - log_sphere_area(8)  # about 0
    """
    _check_entropy_inputs(z, 1.0, "logdet", False, extra_support, validate)
    check_positive(eps, "eps")
    with torch.autocast(device_type=z.device.type, enabled=False):
        return logdet_entropy(at_least_float32(z), float(eps), extra_support)


def _sample_entropy(
    z: Tensor,
    estimator: str,
    extra_support: Optional[Tensor],
    extra_valid: Optional[Tensor],
) -> Tensor:
    if estimator == "knn":
        return knn_entropy(z, 1, extra_support, extra_valid)
    return logdet_entropy(z, LOGDET_EPS, extra_support, extra_valid)


def _check_entropy_inputs(
    z: Tensor,
    kappa: Kappa,
    estimator: str,
    leave_one_out: bool,
    extra_support: Optional[Tensor],
    validate: bool,
) -> Union[float, Tensor]:
    """Checks the arguments of sphere_entropy; returns kappa (a float or a tensor)."""
    check_estimator(estimator)
    num_centres = check_centers(z, extra_support, validate)
    if estimator not in KDE_ESTIMATORS and leave_one_out:
        raise ValueError(
            f"leave_one_out applies to the kernel estimators; {estimator!r} "
            "never counts a sample as its own neighbor"
        )
    if estimator == "knn":
        if z.shape[1] < 2:
            raise ValueError(
                f"the knn estimator needs dim >= 2 (a sphere S^(d-1) of dimension "
                f">= 1), got shape {tuple(z.shape)}"
            )
        if num_centres < 2:
            raise ValueError(
                "the knn estimator needs a second point (in z or extra_support), "
                f"got {num_centres}"
            )
    if leave_one_out and num_centres < 2:
        raise ValueError(
            "leave_one_out needs at least 2 kernel centers (z and extra_support "
            f"together), got {num_centres}"
        )
    return checked_kappa(kappa)
