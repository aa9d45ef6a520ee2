"""Argument checks shared by the entropy and reconstruction estimators and losses.

Each check raises a :class:`TypeError` for a value of the wrong type and a
:class:`ValueError` for a value out of range, and the message names the argument and
what was expected. Booleans are not accepted where a number is expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

import torch
from torch import Tensor


def check_real(value: Any, name: str) -> None:
    """Raises unless value is a finite real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def check_positive(value: Any, name: str) -> None:
    """Raises unless value is a finite real number > 0."""
    check_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")


def check_int(
    value: Any, name: str, minimum: int, maximum: Optional[int] = None
) -> None:
    """Raises unless value is an int (not a bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and int(value) > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")


def check_bool(value: Any, name: str) -> None:
    """Raises a TypeError unless value is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_choice(value: Any, name: str, choices: Sequence[str]) -> None:
    """Raises a TypeError unless value is a str, a ValueError unless it is a choice."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )


def check_matrix(
    x: Any, name: str, min_rows: int = 1, min_dim: int = 1, check_values: bool = True
) -> None:
    """Raises unless x is a floating point tensor (N, d), N >= min_rows, d >= min_dim.

    With check_values, also unless every value is finite (a pass over x and, on an
    accelerator, a host sync).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(
            f"{name} must have shape (batch_size, dim), got shape {tuple(x.shape)}"
        )
    if x.shape[0] < min_rows:
        samples = "sample" if min_rows == 1 else "samples"
        raise ValueError(
            f"{name} must hold at least {min_rows} {samples}, got a batch of "
            f"{x.shape[0]}"
        )
    if x.shape[1] < min_dim:
        raise ValueError(
            f"{name} must have dim >= {min_dim}, got shape {tuple(x.shape)}"
        )
    if check_values and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")


def check_same_shape(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Raises a ValueError naming both arguments unless a and b have one shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
