"""Bitwise comparison of two modules' state, shared by the benchmark tests."""

from __future__ import annotations

from typing import Set

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from torch import nn


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
