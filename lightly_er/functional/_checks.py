"""Input checks of the estimators: unit-norm rows, probability rows, concentrations.

Every public function of :mod:`lightly_er.functional` validates its input here and
names the argument in its error. The value checks (finite, unit-norm, summing to 1)
read the data and cost a host sync on an accelerator; callers that build their
inputs themselves (the losses) skip them with ``validate=False``.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor

from lightly_er.utils._checks import check_matrix
from lightly_er.utils.compat import is_compiling

Kappa = Union[Tensor, float]
"""A concentration: a Python number (fixed) or a tensor (possibly learnable)."""


def at_least_float32(x: Tensor) -> Tensor:
    """x in float32 if it is in half precision, else x itself."""
    # Log-sum-exps and matrix factorizations lose too much in 16 bits.
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def unit_norm_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a row norm may be in dtype: a few ulps of rounding and more."""
    if dtype == torch.float64:
        return 1e-6
    if dtype == torch.float32:
        return 1e-4
    return 1e-2


def check_dim(dim: int) -> None:
    """Raises unless dim is an int >= 1 (S^0 = {-1, +1} is a sphere too)."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1 (the sphere S^(dim-1)), got {dim}")


def as_kappa_tensor(kappa: Kappa, name: str) -> Tensor:
    """kappa as a tensor (a number becomes a float64 scalar), checked positive."""
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
    if not is_compiling() and (
        not bool(torch.isfinite(tensor).all()) or not bool((tensor > 0).all())
    ):
        raise ValueError(f"{name} must be positive and finite, got {_describe(tensor)}")
    return tensor


def as_scalar_kappa(kappa: Kappa) -> Tensor:
    """kappa as a 0-dim tensor; raises unless it is one positive concentration."""
    tensor = as_kappa_tensor(kappa, "kappa")
    if tensor.numel() != 1:
        raise ValueError(
            f"kappa must be a single concentration, got shape {tuple(tensor.shape)}"
        )
    return tensor.reshape(())


def checked_kappa(kappa: Kappa) -> Union[float, Tensor]:
    """kappa checked: a Python float for a number (no tensor made), else a 0-dim tensor.

    The losses call the estimators with a fixed kappa every step: a number stays a
    number, so the kernel can fuse it into its matrix product.
    """
    if isinstance(kappa, (int, float)) and not isinstance(kappa, bool):
        if not math.isfinite(kappa) or kappa <= 0:
            raise ValueError(f"kappa must be positive and finite, got {float(kappa)}")
        return float(kappa)
    return as_scalar_kappa(kappa)


def _describe(tensor: Tensor) -> str:
    if tensor.numel() == 1:
        return str(tensor.item())
    return f"a tensor of shape {tuple(tensor.shape)} with non-positive or non-finite values"


def check_sphere(z: Tensor, name: str, min_samples: int, validate: bool = True) -> None:
    """Raises unless z is (N, d), N >= min_samples, d >= 1, with unit-norm rows.

    Without validate only the type and shape are checked (no pass over the data).
    """
    check_matrix(z, name, min_rows=min_samples, min_dim=1, check_values=validate)
    if z.shape[0] == 0 or not validate:
        return
    tolerance = unit_norm_tolerance(z.dtype)
    norms = torch.linalg.vector_norm(at_least_float32(z.detach()), dim=1)
    deviation = (norms - 1).abs().max().item()
    if deviation > tolerance:
        raise ValueError(
            f"{name} rows must be unit-norm (L2-normalize them first, e.g. with "
            f"torch.nn.functional.normalize); the largest | ||row|| - 1 | is "
            f"{deviation:.3g} > tolerance {tolerance:g}"
        )


def check_probability_shape(p: Tensor, name: str) -> None:
    """Raises unless p is a floating point (N, K) tensor with N, K >= 1."""
    check_matrix(p, name, min_rows=1, min_dim=1, check_values=False)


def check_probabilities(p: Tensor, name: str, log_input: bool) -> None:
    """Raises unless the rows of p are finite (log-)probability distributions."""
    check_probability_shape(p, name)
    values = at_least_float32(p.detach())
    # A row of K float32 numbers sums to 1 only up to K roundings.
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
