"""Behavior shared by every ER loss: NaN/Inf inputs give a clear error."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import Tensor

from lightly_er.experimental import EntropyEstimator
from lightly_er.loss import (
    ERDINOLoss,
    ERLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)


def _views(bad: float) -> tuple[Tensor, Tensor]:
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    a[3, 5] = bad
    return a, b


CALLS: dict[str, Callable[[float], Tensor]] = {
    "ERLoss-sphere": lambda bad: ERLoss()(*_views(bad)),
    "ERLoss-discrete": lambda bad: ERLoss(support="discrete")(*_views(bad)),
    "ERNTXentLoss": lambda bad: ERNTXentLoss()(*_views(bad)),
    "ERNegativeCosineSimilarity": lambda bad: ERNegativeCosineSimilarity()(
        *_views(bad)
    ),
    "ERDINOLoss": lambda bad: ERDINOLoss(output_dim=16, centering=False)(
        [_views(0.0)[0]], list(_views(bad))
    ),
    "ERSwaVLoss": lambda bad: ERSwaVLoss(use_sinkhorn=False)(list(_views(bad)), []),
}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_non_finite_inputs_raise(name: str, bad: float) -> None:
    with pytest.raises(ValueError, match="not finite|contains NaN or Inf"):
        CALLS[name](bad)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_finite_inputs_pass(name: str) -> None:
    assert torch.isfinite(CALLS[name](0.0))


def test_check_int_names_the_argument_and_bound() -> None:
    # check_int lives in lightly_er.utils.checks (loss._base no longer exports it).
    from lightly_er.utils.checks import check_int

    check_int(0, "n", 0)
    check_int(3, "n", 1)
    with pytest.raises(ValueError, match=r"^n must be >= 1, got 0$"):
        check_int(0, "n", 1)
    with pytest.raises(TypeError, match=r"^n must be an int, got float$"):
        check_int(1.5, "n", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^n must be an int, got bool$"):
        check_int(True, "n", 0)


def test_validate_first_checks_the_first_calls_only() -> None:
    # validate="first" (default): the first 10 calls are checked, then the loss is
    # lightly's: a NaN passes through (as under a mixed-precision scaler).
    criterion = ERNTXentLoss()
    good = _views(0.0)
    for _ in range(10):
        criterion(*good)
    assert torch.isnan(criterion(*_views(float("nan"))))
    fresh = ERNTXentLoss()
    with pytest.raises(ValueError, match="not finite"):
        fresh(*_views(float("nan")))


def test_validate_always_and_never() -> None:
    always = ERNegativeCosineSimilarity(estimator=EntropyEstimator(validate="always"))
    for _ in range(12):
        always(*_views(0.0))
    with pytest.raises(ValueError, match="validate='never'"):
        always(*_views(float("inf")))
    never = ERNegativeCosineSimilarity(estimator=EntropyEstimator(validate="never"))
    assert not torch.isfinite(never(*_views(float("inf"))))


def test_validate_mode_is_checked() -> None:
    with pytest.raises(
        ValueError, match="validate must be one of 'first', 'always', 'never'"
    ):
        ERSwaVLoss(estimator=EntropyEstimator(validate="sometimes"), use_sinkhorn=False)
