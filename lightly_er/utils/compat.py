"""Fallbacks for torch APIs newer than the library's declared floor."""

from __future__ import annotations

import torch


def is_compiling() -> bool:
    """Whether torch.compile is tracing the caller (False where torch cannot tell)."""
    compiler = getattr(torch, "compiler", None)
    check = getattr(compiler, "is_compiling", None)
    return bool(check()) if check is not None else False
