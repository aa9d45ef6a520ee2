"""Tests of lightly_er.utils.checks: what each check accepts, rejects, and says."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch

from lightly_er.utils import checks
from lightly_er.utils.checks import (
    check_bool,
    check_choice,
    check_int,
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)


@pytest.mark.parametrize(
    "value", [0, -3, 2.5, -1e300, np.float32(0.5), np.int64(4), Fraction(1, 3)]
)
def test_check_real_accepts_finite_reals(value: Any) -> None:
    check_real(value, "x")


@pytest.mark.parametrize(
    "value", [True, False, "1.0", None, 1j, torch.tensor(1.0), [1.0]]
)
def test_check_real_rejects_non_reals(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^alpha must be a float, got "):
        check_real(value, "alpha")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_check_real_rejects_non_finite(value: float) -> None:
    with pytest.raises(ValueError, match=r"^alpha must be finite"):
        check_real(value, "alpha")


def test_check_real_names_the_type() -> None:
    with pytest.raises(TypeError, match=r"got bool$"):
        check_real(True, "alpha")
    with pytest.raises(TypeError, match=r"got str$"):
        check_real("2", "alpha")


@pytest.mark.parametrize("value", [1e-300, 0.5, 3, 1e300])
def test_check_positive_accepts_positive(value: float) -> None:
    check_positive(value, "kappa")


@pytest.mark.parametrize("value", [0, 0.0, -0.0, -1e-300, -2])
def test_check_positive_rejects_zero_and_negative(value: float) -> None:
    with pytest.raises(ValueError, match=r"^kappa must be positive and finite, got "):
        check_positive(value, "kappa")


def test_check_positive_rejects_what_check_real_rejects() -> None:
    with pytest.raises(TypeError, match=r"^kappa must be a float"):
        check_positive(True, "kappa")
    with pytest.raises(ValueError, match=r"^kappa must be finite"):
        check_positive(math.inf, "kappa")


@pytest.mark.parametrize(
    ("value", "minimum", "maximum"),
    [(1, 1, None), (5, 1, 5), (0, 0, 0), (-3, -5, None), (np.int32(7), 1, None)],
)
def test_check_int_accepts_ints_in_range(
    value: int, minimum: int, maximum: Optional[int]
) -> None:
    check_int(value, "steps", minimum, maximum)


@pytest.mark.parametrize("value", [True, 2.0, "3", None, np.float64(2.0)])
def test_check_int_rejects_non_ints(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^steps must be an int, got "):
        check_int(value, "steps", 0)


def test_check_int_bounds_are_inclusive_and_named() -> None:
    with pytest.raises(ValueError, match=r"^steps must be >= 1, got 0$"):
        check_int(0, "steps", 1)
    with pytest.raises(ValueError, match=r"^steps must be <= 4, got 5$"):
        check_int(5, "steps", 1, 4)
    check_int(4, "steps", 1, 4)
    check_int(1, "steps", 1, 4)


def test_check_bool() -> None:
    check_bool(True, "flag")
    check_bool(False, "flag")
    for value in (0, 1, "True", None, np.bool_(True)):
        with pytest.raises(TypeError, match=r"^flag must be a bool, got "):
            check_bool(value, "flag")


def test_check_choice() -> None:
    choices = ("warn", "stop")
    check_choice("warn", "on_collapse", choices)
    check_choice("stop", "on_collapse", choices)
    with pytest.raises(
        ValueError, match=r"^on_collapse must be one of 'warn', 'stop', got 'raise'$"
    ):
        check_choice("raise", "on_collapse", choices)
    # Matching is exact: no case folding, no whitespace stripping.
    for value in ("Warn", "warn ", ""):
        with pytest.raises(ValueError, match=r"^on_collapse must be one of"):
            check_choice(value, "on_collapse", choices)
    with pytest.raises(TypeError, match=r"^on_collapse must be a string, got int$"):
        check_choice(1, "on_collapse", choices)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_check_matrix_accepts_floating_matrices(dtype: torch.dtype) -> None:
    check_matrix(torch.zeros(3, 2, dtype=dtype), "z", min_rows=3, min_dim=2)


_BAD_MATRICES = [
    ("list", lambda: check_matrix([[1.0]], "z"), TypeError, r"^z must be a torch"),
    (
        "int",
        lambda: check_matrix(torch.ones(2, 2, dtype=torch.long), "z"),
        TypeError,
        r"^z must be a floating point tensor, got dtype torch.int64$",
    ),
    (
        "1d",
        lambda: check_matrix(torch.ones(4), "z"),
        ValueError,
        r"^z must have shape \(batch_size, dim\), got shape \(4,\)$",
    ),
    (
        "3d",
        lambda: check_matrix(torch.ones(2, 2, 2), "z"),
        ValueError,
        r"got shape \(2, 2, 2\)$",
    ),
    (
        "rows-1",
        lambda: check_matrix(torch.ones(0, 3), "z"),
        ValueError,
        r"^z must hold at least 1 sample, got a batch of 0$",
    ),
    (
        "rows-2",
        lambda: check_matrix(torch.ones(1, 3), "z", min_rows=2),
        ValueError,
        r"^z must hold at least 2 samples, got a batch of 1$",
    ),
    (
        "dim",
        lambda: check_matrix(torch.ones(3, 1), "z", min_dim=2),
        ValueError,
        r"^z must have dim >= 2, got shape \(3, 1\)$",
    ),
    (
        "nan",
        lambda: check_matrix(torch.tensor([[0.0, math.nan]]), "z"),
        ValueError,
        r"^z contains NaN or Inf$",
    ),
    (
        "inf",
        lambda: check_matrix(torch.tensor([[-math.inf, 0.0]]), "z"),
        ValueError,
        r"^z contains NaN or Inf$",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [pytest.param(c, e, m, id=i) for i, c, e, m in _BAD_MATRICES],
)
def test_check_matrix_rejects(
    call: Callable[[], None], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call()


def test_check_matrix_without_values_skips_only_the_value_pass() -> None:
    check_matrix(torch.full((2, 2), math.nan), "z", check_values=False)
    with pytest.raises(ValueError, match="shape"):
        check_matrix(torch.full((2,), math.nan), "z", check_values=False)
    with pytest.raises(ValueError, match="at least 3 samples"):
        check_matrix(torch.full((2, 2), math.nan), "z", 3, check_values=False)


def test_check_same_shape() -> None:
    check_same_shape(torch.ones(2, 3), "a", torch.zeros(2, 3), "b")
    with pytest.raises(
        ValueError,
        match=r"^z1 and z2 must have the same shape, got \(2, 3\) and \(3, 2\)$",
    ):
        check_same_shape(torch.ones(2, 3), "z1", torch.ones(3, 2), "z2")
    with pytest.raises(ValueError, match="same shape"):
        check_same_shape(torch.ones(2, 3), "z1", torch.ones(2, 3, 1), "z2")


def test_the_package_exports_the_checks() -> None:
    from lightly_er import utils

    for name in (
        "check_bool",
        "check_choice",
        "check_int",
        "check_matrix",
        "check_positive",
        "check_real",
        "check_same_shape",
    ):
        assert getattr(utils, name) is getattr(checks, name)
        assert name in utils.__all__
