"""Comparisons shared by the benchmark tests: modules' state bit for bit, transforms
by their public settings."""

from __future__ import annotations

import enum
from typing import Any, Set

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from torch import Tensor, nn


def unset_buffers(module: nn.Module) -> Set[str]:
    """The pointer buffers of disabled memory banks: lightly leaves them
    uninitialised (``torch.empty``) and never reads them."""
    return {
        f"{name}.bank_ptr".lstrip(".")
        for name, m in module.named_modules()
        if isinstance(m, MemoryBankModule) and tuple(m.size) == (0,)
    }


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """Equal state dicts and buffers, bit for bit (memory banks are not in the former)."""
    unset = unset_buffers(a)
    for sa, sb in (
        (a.state_dict(), b.state_dict()),
        (dict(a.named_buffers()), dict(b.named_buffers())),
    ):
        assert sa.keys() == sb.keys()
        for key in sa.keys() - unset:
            assert torch.equal(sa[key], sb[key]), key


def fingerprint(obj: Any, depth: int = 0) -> Any:
    """The public state of a (nested) transform, comparable across instances."""
    if depth > 12:
        return "..."
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [fingerprint(item, depth + 1) for item in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: fingerprint(v, depth + 1) for k, v in obj.items()}
    if not hasattr(obj, "__dict__"):
        return type(obj).__name__
    state = {
        key: fingerprint(value, depth + 1)
        for key, value in vars(obj).items()
        if not key.startswith("_") and key != "training"
    }
    return (type(obj).__name__, state)
