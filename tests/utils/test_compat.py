"""Tests of lightly_er.utils.compat: the fallbacks equal the torch APIs they replace."""

from __future__ import annotations

import types

import pytest
import torch
from torch import Tensor

from lightly_er.utils import compat
from lightly_er.utils.compat import assume_constant_result, is_compiling, vecdot


def test_is_compiling_is_false_in_eager_mode() -> None:
    assert is_compiling() is False


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch < 2.0")
def test_is_compiling_is_true_while_torch_compile_traces() -> None:
    def branch(x: Tensor) -> Tensor:
        return x + 1 if is_compiling() else x - 1

    x = torch.zeros(3)
    # The eager backend: dynamo traces (is_compiling is read), no code generation.
    compiled = torch.compile(branch, backend="eager")
    assert torch.equal(compiled(x), x + 1)
    assert torch.equal(branch(x), x - 1)


def test_is_compiling_resolves_the_api_of_each_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiler = getattr(torch, "compiler", None)
    if getattr(compiler, "is_compiling", None) is not None:  # torch >= 2.3
        assert compat._resolve_is_compiling() is torch.compiler.is_compiling

    # torch 2.1-2.2: torch.compiler without is_compiling; torch 2.0: no torch.compiler.
    # Both have torch._utils.is_compiling (a stand-in here: torch < 2.0 has none).
    def flag() -> bool:
        return False

    monkeypatch.setattr(torch._utils, "is_compiling", flag, raising=False)
    for stand_in in (types.SimpleNamespace(), None):
        monkeypatch.setattr(torch, "compiler", stand_in, raising=False)
        assert compat._resolve_is_compiling() is flag
    # Before torch 2.0: no torch.compile at all.
    monkeypatch.delattr(torch._utils, "is_compiling")
    function = compat._resolve_is_compiling()
    assert function is compat._never_compiling and function() is False


@pytest.mark.parametrize(
    ("shape", "dim", "dtype"),
    [
        *(
            ((7, 5), -1, dtype)
            for dtype in (torch.float16, torch.float32, torch.float64)
        ),
        *(((3, 4, 6), 1, dtype) for dtype in (torch.float16, torch.float32)),
        # Not float16: torch < 2.1 has no half-precision dot of vectors on the CPU.
        ((9,), 0, torch.float32),
    ],
)
def test_vecdot_equals_torch_linalg_vecdot(
    dtype: torch.dtype, shape: tuple[int, ...], dim: int
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(dtype).requires_grad_(True)
    y = torch.randn(shape, generator=generator).to(dtype).requires_grad_(True)
    expected = torch.linalg.vecdot(x, y, dim=dim)
    result = vecdot(x, y, dim=dim)
    assert result.dtype == expected.dtype
    if len(shape) > 1:
        # torch computes vecdot of real matrices as (x * y).sum(dim): bit for bit.
        assert torch.equal(result, expected)
    else:
        # Of two vectors, as a BLAS dot product: equal to rounding.
        torch.testing.assert_close(result, expected)
    weights = torch.randn(expected.shape, generator=generator).to(dtype)
    grads = torch.autograd.grad((expected * weights).sum(), (x, y))
    fallback_grads = torch.autograd.grad((result * weights).sum(), (x, y))
    for grad, fallback in zip(grads, fallback_grads, strict=True):
        assert torch.equal(grad, fallback)


def test_vecdot_broadcasts_like_torch_linalg_vecdot() -> None:
    x = torch.arange(6.0).reshape(2, 1, 3)
    y = torch.arange(12.0).reshape(4, 3)
    result = vecdot(x, y)
    assert result.shape == (2, 4)
    assert torch.equal(result, torch.linalg.vecdot(x, y))
    # Row 0 of x is (0, 1, 2); row 0 of y is (0, 1, 2): 0 + 1 + 4.
    assert float(result[0, 0]) == 5.0


@assume_constant_result
def _constant(dim: int, kappa: float) -> float:
    return 2.0 * dim + kappa


constant = _constant  # called under another name, as the library does


def times_constant(x: Tensor, kappa: float) -> Tensor:
    return x * constant(x.shape[1], float(kappa))


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch < 2.0")
def test_a_marked_function_survives_torch_compile() -> None:
    # torch 2.0-2.5 store the result in this module's globals under the function's
    # name ("sub_constant" here); under "constant" it would replace the function by
    # 16.0 and every later call would fail.
    compiled = torch.compile(times_constant, backend="eager")
    expected = torch.full((2, 3), 16.0)
    assert torch.equal(compiled(torch.ones(2, 3), 10.0), expected)
    assert callable(globals()["constant"]) and callable(globals()["_constant"])
    assert torch.equal(times_constant(torch.ones(2, 3), 10.0), expected)


def test_assume_constant_result_marks_as_torch_does() -> None:
    def _probe() -> None:
        pass

    assert assume_constant_result(_probe) is _probe
    assert vars(_probe) == {"_dynamo_marked_constant": True}
    compiler = getattr(torch, "compiler", None)
    decorator = getattr(compiler, "assume_constant_result", None)
    if decorator is not None:  # torch >= 2.1: the flag torch's decorator sets

        def _reference() -> None:
            pass

        assert decorator(_reference) is _reference
        assert vars(_reference) == vars(_probe)


def test_assume_constant_result_needs_a_private_name() -> None:
    def probe() -> None:
        pass

    with pytest.raises(ValueError, match="underscore.*'probe'"):
        assume_constant_result(probe)
    assert vars(probe) == {}


def test_the_library_calls_its_constant_under_another_name() -> None:
    from lightly_er.functional import _special

    function = _special.log_vmf_normalizer_constant
    assert function.__name__ == "_log_vmf_normalizer_constant"
    assert vars(function) == {"_dynamo_marked_constant": True}
