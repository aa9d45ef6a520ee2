"""Label-free diagnostics of a representation: collapse score, effective rank,
participation ratio, dimension score, alignment, uniformity and LiDAR.

Private: the public names are re-exported by :mod:`lightly_er.functional`. Unlike the
ER terms, these are not terms of the bound; they are differentiable all the same.
Alignment and uniformity keep the sign of their paper: loss-like, lower is better.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightly_er.functional._checks import at_least_float32, check_sphere
from lightly_er.utils.checks import (
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)

_RANKME_EPS = 1e-7
F64 = torch.float64


_COLLAPSE_RESOLUTION = 1e-3


def collapse_score(z: Tensor, resolution: float = _COLLAPSE_RESOLUTION) -> Tensor:
    """A collapse score in [0, 1]: 1 for a batch spread over all directions, 0 for one point.

    The rows are L2-normalized and centered, z_c = z/||z|| - mean. The score is

        (v / (v + resolution)) * log(1 + r) / log(1 + min(N - 1, d))

    where v = mean_i ||z_c,i||^2 = 1 - ||mean||^2 is the total variance of the
    batch on the unit sphere and r is the effective rank (RankMe [0]) of z_c, 0 when
    z_c is zero. The second factor counts the affine dimensions the batch spans on a
    log scale: one point 0, two antipodal points log 2 / log(1 + m), a random rank-k
    batch about log(1 + k) / log(1 + m), an isotropic batch about 1. Centering is what
    lets it see a narrow cone (post-ReLU features of an untrained network, with a
    mean cosine of 0.98) as the spread batch it is. The first factor makes the score
    scale-aware: variation far below ``resolution`` (a root-mean-square angle of
    about 0.03 rad at the default) counts as collapse, not as a spread batch.

    - [0] Garrido et al., RankMe, ICML 2023, https://arxiv.org/abs/2210.02885

    Args:
        z:
            Embeddings, shape (N, d), N >= 2, d >= 1; any scale (rows are normalized
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
        z = at_least_float32(z)
        z = torch.nn.functional.normalize(z, dim=1)
        # Centered: a narrow cone (post-ReLU features) is a spread batch, not one point.
        centred = z - z.mean(dim=0, keepdim=True)
        variance = centred.pow(2).sum(dim=1).mean()
        singular_values = torch.linalg.svdvals(centred)
        total = singular_values.sum()
        p = singular_values / total.clamp_min(torch.finfo(z.dtype).tiny)
        rank = torch.exp(-torch.special.xlogy(p, p).sum())
        # Centering removes one dimension: N points span at most N - 1.
        max_rank = min(n - 1, dim)
        # All rows equal: no singular value, rank 0 (the formula gives 1).
        rank = torch.where(total > 0, rank, torch.zeros_like(rank)).clamp(0, max_rank)
        dimensions = torch.log1p(rank) / math.log1p(max_rank)
        spread = variance / (variance + resolution)
        return (spread * dimensions).clamp(0.0, 1.0)


def participation_ratio(z: Tensor) -> Tensor:
    """Participation ratio of the population covariance, estimated without N-bias.

    The participation ratio (tr S)^2 / tr(S^2) of a covariance S [0, 1] counts the
    directions the distribution spreads over: k for a covariance with k equal
    non-zero eigenvalues, d for an isotropic one. The plug-in value of a batch's
    sample covariance is biased by the batch size (an isotropic batch of N < d rows
    spans at most N - 1 directions): here (tr S)^2 and tr(S^2) are each estimated
    by their unbiased U-statistics over distinct rows (translation invariant, no
    distributional assumption), so a rank-k population reads about k at any N >= 32
    (relative spread about 6% at N = 32, 3% at N = 64 for k <= 128; the estimate is
    a ratio, unbiased only to first order).

    - [0] Gao et al., A theory of multineuronal dimensionality, dynamics and
      measurement, bioRxiv 2017, https://doi.org/10.1101/214262
    - [1] Chen & Qin, A two-sample test for high-dimensional data, Annals of
      Statistics 2010 (the U-statistic of tr(S^2)).

    Args:
        z:
            Rows, shape (N, d), N >= 4, d >= 1, as given (not normalized here).

    Returns:
        The participation ratio, a scalar tensor clamped to [1, d], or 0 when the
        rows do not vary (no direction); float32 for half precision inputs, the
        dtype of z otherwise.

    Raises:
        TypeError: If z is not a floating point tensor.
        ValueError: If z is not (N, d) with N >= 4, or is not finite.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import participation_ratio
        >>> basis = torch.linalg.qr(torch.randn(128, 16))[0]  # 16 of 128 directions
        >>> small = torch.randn(64, 16) @ basis.T
        >>> large = torch.randn(1024, 16) @ basis.T
        >>> 14 < participation_ratio(small).item() < 18
        True
        >>> 15 < participation_ratio(large).item() < 17
        True
    """
    check_matrix(z, "z", min_rows=4)
    dim = z.shape[1]
    with torch.autocast(device_type=z.device.type, enabled=False):
        squared_trace, trace_of_square = _covariance_moments(at_least_float32(z))
        ratio = squared_trace / trace_of_square.clamp_min(torch.finfo(F64).tiny)
        ratio = torch.where(
            (trace_of_square > 0) & (squared_trace > 0),
            ratio.clamp(1.0, float(dim)),
            torch.zeros_like(ratio),
        )
        return ratio.to(at_least_float32(z).dtype)


def dimension_score(z: Tensor, resolution: float = _COLLAPSE_RESOLUTION) -> Tensor:
    """A collapse score in [0, 1] that does not depend on the batch size.

    The rows are L2-normalized; the score is

        (v / (v + resolution)) * log(1 + r) / log(1 + d)

    with v the unbiased total variance of the rows on the unit sphere (the mean
    squared distance to their mean, times N / (N - 1)) and r their
    :func:`participation_ratio`, the number of directions the population spreads
    over. Like :func:`collapse_score` it reads 0 for one point, log 2 / log(1 + d)
    for two antipodal points, log(1 + k) / log(1 + d) for a population spread
    evenly over k directions and about 1 for an isotropic one, and counts spread
    far below ``resolution`` as collapse; unlike it, the ceiling is d, not
    min(N - 1, d), so a rank-k population reads the same at N = 64 as at N = 1024.
    It sees how many directions the outputs use, not whether they carry
    information about the input.

    Args:
        z:
            Embeddings, shape (N, d), N >= 4, d >= 1; any scale (rows are normalized
            here; zero rows stay zero).
        resolution:
            The total variance on the unit sphere below which spread counts as
            collapse, > 0.

    Returns:
        The score, a scalar tensor in [0, 1], float32 for half precision inputs and
        the dtype of z otherwise. A diagnostic: its gradient is not meant for
        training.

    Raises:
        TypeError: If z is not a floating point tensor, or resolution not a number.
        ValueError: If z is not (N, d) with N >= 4, is not finite, or resolution is
            not positive.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import dimension_score
        >>> round(dimension_score(torch.ones(256, 128)).item(), 3)  # one point
        0.0
        >>> dimension_score(torch.randn(64, 128)).item() > 0.95  # isotropic, N < d
        True
    """
    check_matrix(z, "z", min_rows=4)
    check_positive(resolution, "resolution")
    n, dim = z.shape
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = torch.nn.functional.normalize(at_least_float32(z), dim=1)
        centred = z - z.mean(dim=0, keepdim=True)
        variance = centred.pow(2).sum(dim=1).sum() / (n - 1)
        rank = participation_ratio(z)
        dimensions = torch.log1p(rank) / math.log1p(dim)
        spread = variance / (variance + resolution)
        return (spread * dimensions).clamp(0.0, 1.0)


def _covariance_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Unbiased estimates of (tr S)^2 and tr(S^2) from the rows x, in float64.

    U-statistics over distinct indices of the Gram matrix G of the centered rows:
    with G0 = G without its diagonal g, row sums r and total s of G0,

        tr(S^2) ~ T1 / P2 - 2 T2 / P3 + T3 / P4
        (tr S)^2 ~ U1 / P2 - 2 U2 / P3 + T3 / P4

    T1 = sum G0^2, T2 = sum r^2 - T1, T3 = s^2 - 2 T1 - 4 T2, U1 = (sum g)^2 -
    sum g^2, U2 = sum g (s - 2 r), Pk = N (N - 1) ... (N - k + 1). They are the
    U-statistics of the translation-invariant kernels ((x_i - x_k)^T (x_j -
    x_l))^2 / 4 and |x_i - x_k|^2 |x_j - x_l|^2 / 4, so centering first changes
    nothing but the rounding.
    """
    n = x.shape[0]
    centred = x - x.mean(dim=0, keepdim=True)
    gram = (centred @ centred.T).to(F64)
    diagonal = gram.diagonal()
    off = gram - torch.diag_embed(diagonal)
    rows = off.sum(dim=1)
    total = rows.sum()
    t1 = off.pow(2).sum()
    t2 = rows.pow(2).sum() - t1
    t3 = total.pow(2) - 2.0 * t1 - 4.0 * t2
    p2 = float(n * (n - 1))
    p3 = p2 * (n - 2)
    p4 = p3 * (n - 3)
    trace_of_square = t1 / p2 - 2.0 * t2 / p3 + t3 / p4
    u1 = diagonal.sum().pow(2) - diagonal.pow(2).sum()
    u2 = (diagonal * (total - 2.0 * rows)).sum()
    squared_trace = u1 / p2 - 2.0 * u2 / p3 + t3 / p4
    return squared_trace, trace_of_square


def effective_rank(z: Tensor, eps: float = _RANKME_EPS) -> Tensor:
    """Effective rank of a batch of embeddings, RankMe [0].

    With sigma_1 .. sigma_m the singular values of z, m = min(N, d), and
    p_k = sigma_k / sum_l sigma_l + eps, the effective rank is exp(-sum_k p_k log p_k),
    the exponential of the Shannon entropy of the normalized singular values [0, 1].
    It is k for a matrix with k equal non-zero singular values and the rest zero, 1
    for a collapsed batch (all rows parallel, or all zero), and close to m only if
    the embeddings spread evenly over m directions; a dimensional collapse shows as
    an effective rank well below the embedding size. The rows are used as given, not
    centered, as in [0]. The eps of [0] (1e-7) keeps log p_k finite for zero singular
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
            The small constant added to the normalized singular values, >= 0.

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
        z = at_least_float32(z)
        singular_values = torch.linalg.svdvals(z)
        # A zero matrix: no division by 0; every p is eps and the rank clamps to 1.
        total = singular_values.sum().clamp_min(torch.finfo(z.dtype).tiny)
        p = singular_values / total + eps
        entropy = -(p * torch.log(p)).sum()
        return torch.exp(entropy).clamp(1.0, float(min(z.shape)))


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """Alignment of two views on the unit sphere, mean_i ||z1_i - z2_i||^alpha [0].

    How close the embeddings of two views of the same input are, on L2-normalized
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
            L2-normalized embeddings of the first views, shape (N, d), N >= 1, d >= 1.
        z2:
            L2-normalized embeddings of the second views, same shape; row i is the
            other view of the input of row i of z1.
        alpha:
            The exponent alpha > 0 of the distance (2 in [0]).

    Returns:
        The alignment, a scalar tensor in [0, 2^alpha].

    Raises:
        TypeError: If an input is not a floating point tensor, or alpha is not a real
            number.
        ValueError: If the shapes differ or are not (N, d) with N >= 1 and d >= 1, if
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
    check_sphere(z1, "z1", min_samples=1)
    check_sphere(z2, "z2", min_samples=1)
    check_same_shape(z1, "z1", z2, "z2")
    check_positive(alpha, "alpha")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z1 = at_least_float32(z1)
        z2 = at_least_float32(z2).to(z1.dtype)
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
            L2-normalized embeddings, shape (N, d), N >= 2, d >= 1.
        t:
            The scale t > 0 of the Gaussian potential (2 in [0]).

    Returns:
        The uniformity, a scalar tensor in [-4 t, 0].

    Raises:
        TypeError: If z is not a floating point tensor, or t is not a real number.
        ValueError: If z is not (N, d) with N >= 2 and d >= 1, is not finite or not
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
    check_sphere(z, "z", min_samples=2)
    check_positive(t, "t")
    n = z.shape[0]
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = at_least_float32(z)
        rows, cols = torch.triu_indices(n, n, offset=1, device=z.device)
        # ||z_i||^2 + ||z_j||^2 - 2 z_i^T z_j with the actual norms, not 2 - 2 cos,
        # so rows that are unit-norm only to rounding still give 0 for equal rows.
        squared_norms = z.pow(2).sum(dim=1)
        gram = z @ z.T
        squared = (
            squared_norms[rows] + squared_norms[cols] - 2.0 * gram[rows, cols]
        ).clamp_min(0.0)
        return torch.logsumexp(-t * squared, dim=0) - math.log(rows.numel())


def lidar(views: Tensor, delta: float = 1e-4, eps: float = _RANKME_EPS) -> Tensor:
    """LiDAR [0]: the effective rank of the LDA matrix between views of the samples.

    The n samples are the classes of a linear discriminant analysis, their q views
    its members. With class means mu_i and their mean mu,

        S_b = sum_i (mu_i - mu)(mu_i - mu)^T / (n - 1),
        S_w = sum_ij (z_ij - mu_i)(z_ij - mu_i)^T / (n (q - 1)) + delta I,

    lambda_k the d eigenvalues of S_w^(-1/2) S_b S_w^(-1/2) and p_k = lambda_k /
    sum_l lambda_l + eps, LiDAR is exp(-sum_k p_k log p_k), the RankMe [1] of the LDA
    spectrum: how many directions tell samples apart relative to how their views
    differ. eps is added after the normalization, as in RankMe (placed as in [0] it
    would read d, not 1, for samples that all coincide). For d > n q the spectrum
    is computed in the span of the views (the rest of it is 0, exactly).
    - [0] Thilak et al., LiDAR: Sensing Linear Probing Performance in Joint
      Embedding SSL Architectures, 2023, https://arxiv.org/abs/2312.04000
    - [1] Garrido et al., RankMe, ICML 2023, https://arxiv.org/abs/2210.02885

    Args:
        views:
            Embeddings, shape (n, q, d): q >= 2 views of each of n >= 2 samples,
            d >= 1; any scale (used as given).
        delta:
            The ridge added to S_w, > 0 (1e-4 in [0]).
        eps:
            The small constant added to the normalized eigenvalues, >= 0.

    Returns:
        LiDAR, a scalar tensor in [1, d]; float32 for half precision inputs, the
        dtype of views otherwise.

    Raises:
        TypeError: If views is not a floating point tensor, or delta or eps is not
            a real number.
        ValueError: If views is not (n, q, d) with n, q >= 2 and d >= 1, is not
            finite, delta is not positive or eps is negative.

    Examples:
        >>> import torch
        >>> from lightly_er.functional._diagnostics import lidar
        >>> samples = torch.randn(256, 1, 8)
        >>> views = samples + 0.1 * torch.randn(256, 2, 8)
        >>> lidar(views).item() > 7.5  # 8 directions tell the samples apart
        True
        >>> round(lidar(torch.ones(256, 2, 8)).item(), 3)  # all samples coincide
        1.0
    """
    if isinstance(views, Tensor) and (views.ndim != 3 or min(views.shape[:2]) < 2):
        raise ValueError(
            "views must have shape (n_samples >= 2, n_views >= 2, dim), got shape "
            f"{tuple(views.shape)}"
        )
    check_matrix(views.flatten(0, 1) if isinstance(views, Tensor) else views, "views")
    check_positive(delta, "delta")
    check_real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    n, q, d = views.shape
    with torch.autocast(device_type=views.device.type, enabled=False):
        x = at_least_float32(views)
        if d > n * q:
            # S_b and S_w - delta I live in the span of the views: the spectrum is
            # theirs there, and 0 on the d - n q directions orthogonal to it.
            x = x - x.mean(dim=(0, 1))
            x = x @ torch.linalg.qr(x.reshape(n * q, d).T)[0]
        means = x.mean(dim=1)
        between = means - means.mean(dim=0)
        within = (x - means.unsqueeze(1)).flatten(0, 1)
        eye = torch.eye(x.shape[2], dtype=x.dtype, device=x.device)
        s_b = between.T @ between / (n - 1)
        s_w = within.T @ within / (n * (q - 1)) + delta * eye
        # One Cholesky factor instead of the eigendecomposition of S_w^(-1/2).
        factor = torch.linalg.cholesky(s_w)
        half = torch.linalg.solve_triangular(factor, s_b, upper=False)
        lda = torch.linalg.solve_triangular(factor, half.T, upper=False)
        spectrum = torch.linalg.eigvalsh(0.5 * (lda + lda.T)).clamp_min(0.0)
        total = spectrum.sum().clamp_min(torch.finfo(x.dtype).tiny)
        p = spectrum / total + eps
        # xlogy: 0 log 0 = 0 where eps = 0; the zeros outside the span give eps.
        entropy = -torch.xlogy(p, p).sum() - (d - len(p)) * math.log(eps or 1.0) * eps
        return torch.exp(entropy).clamp(1.0, float(d))
