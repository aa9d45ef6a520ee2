"""Fallbacks for torch APIs newer than the oldest torch the library supports.

The library calls these instead of the newer API, so that one code path runs on
every supported torch (and on lightly's older floor, upstream). Each helper uses the
torch API where it exists and an equivalent otherwise.
tests/utils/test_compat.py checks both paths, and tests/test_torch_api.py checks that
every ``torch.*`` name the library uses exists in the floor version.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


def _never_compiling() -> bool:
    return False


def _resolve_is_compiling() -> Callable[[], bool]:
    compiler = getattr(torch, "compiler", None)
    function: Optional[Callable[[], bool]] = getattr(compiler, "is_compiling", None)
    if function is not None:
        return function
    # torch 2.0-2.2: the flag that torch.compile reads as True while it traces;
    # before 2.0 there is no torch.compile, so nothing is ever compiling.
    private = getattr(torch, "_utils", None)
    fallback: Callable[[], bool] = getattr(private, "is_compiling", _never_compiling)
    return fallback


_IS_COMPILING = _resolve_is_compiling()


def is_compiling() -> bool:
    """Whether torch.compile is tracing the caller: ``torch.compiler.is_compiling()``.

    Falls back on ``torch._utils.is_compiling()`` before torch 2.3 (both read True
    while torch.compile traces) and on False before torch 2.0, which has no
    torch.compile.

    Returns:
        True while torch.compile traces the calling code, else False.

    Examples:
        >>> from lightly_er.utils.compat import is_compiling
        >>> is_compiling()
        False
    """
    return _IS_COMPILING()


def vecdot(x: Tensor, y: Tensor, dim: int = -1) -> Tensor:
    """The dot product of real tensors along ``dim``: ``torch.linalg.vecdot``.

    ``(x * y).sum(dim)``, which is what ``torch.linalg.vecdot`` computes for real
    inputs of two or more dimensions, bit for bit (of two vectors it calls a BLAS
    dot product, equal to rounding); ``torch.linalg.vecdot`` needs torch 1.13.

    Args:
        x: A real tensor.
        y: A real tensor broadcastable with ``x``.
        dim: The dimension to sum over.

    Returns:
        The sum over ``dim`` of the product, with ``dim`` removed.

    Examples:
        >>> import torch
        >>> from lightly_er.utils.compat import vecdot
        >>> vecdot(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]]))
        tensor([11.])
    """
    return (x * y).sum(dim)
