"""Fallbacks for torch APIs newer than the oldest torch the library supports.

The library calls these instead of the newer API, so that one code path runs on
every supported torch (and on lightly's older floor, upstream). Each helper uses the
torch API where it exists (and works) and an equivalent otherwise.
tests/utils/test_compat.py checks both paths, and tests/test_torch_api.py checks that
every ``torch.*`` name the library uses exists in the floor version.
"""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

import torch
from torch import Tensor

_F = TypeVar("_F", bound=Callable[..., object])


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


def assume_constant_result(function: _F) -> _F:
    """Marks a function as ``torch.compiler.assume_constant_result`` does.

    torch.compile then calls the function once while tracing and puts its result
    into the graph as a constant. The decorator only sets a flag on the function;
    setting it directly saves importing ``torch._dynamo`` (2.6 s at import). The function's name must start with an underscore, and callers
    bind it under another name: torch 2.0-2.5 store the traced result in the globals
    of the compiled code's module under the function's name (prefixed with "sub"
    when it does not start with a letter), which would replace a function bound
    under that name by a number there (every later call then fails with "'float'
    object is not callable").

    Args:
        function: A function whose result depends only on its arguments, with a
            name that starts with an underscore.

    Returns:
        The same function, marked.

    Raises:
        ValueError: If the function's name does not start with an underscore.

    Examples:
        >>> from lightly_er.utils.compat import assume_constant_result
        >>> @assume_constant_result
        ... def _three() -> int:
        ...     return 3
        >>> three = _three  # what callers call
        >>> three()
        3
    """
    name = getattr(function, "__name__", "")
    if not name.startswith("_"):
        raise ValueError(
            "assume_constant_result needs a function whose name starts with an "
            f"underscore (torch < 2.6 would overwrite a global of that name), got {name!r}"
        )
    function._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return function
