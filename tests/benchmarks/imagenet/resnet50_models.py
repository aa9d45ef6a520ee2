"""The ResNet-50 benchmark's modules as the tests build them: at lightly's size (once),
and small (ResNet-18) for training steps on small images."""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import Tensor

from benchmarks.imagenet.resnet50 import byol, dino, mocov2, simclr, swav
from benchmarks.imagenet.resnet50 import main as bench
from tests.benchmarks.imagenet.helpers import NUM_CLASSES

METHOD_MODULES = {
    "simclr": simclr,
    "mocov2": mocov2,
    "byol": byol,
    "dino": dino,
    "swav": swav,
}

# Built once: the original modules at lightly's size (ResNet-50, 128 per device).
_ORIGINALS: Dict[str, Any] = {}


def original_module(method: str) -> Any:
    """lightly's module of a method at lightly's size, built under seed 0 (cached)."""
    if method not in _ORIGINALS:
        torch.manual_seed(0)
        _ORIGINALS[method] = bench.build_model(method, 128, 1000)
    return _ORIGINALS[method]


def small_module(method: str, seed: int = 0) -> Any:
    """A ResNet-18 module for steps on small images."""
    torch.manual_seed(seed)
    return bench.build_model(method, 4, NUM_CLASSES, backbone="resnet18")


def views_of(method: str, batch_size: int = 4) -> List[Tensor]:
    """A batch of the method's views (DINO and SwAV: 2 global and 6 local crops)."""
    if method in ("dino", "swav"):
        counts = (2, 6)
        return [torch.randn(batch_size, 3, 32, 32) for _ in range(counts[0])] + [
            torch.randn(batch_size, 3, 14, 14) for _ in range(counts[1])
        ]
    return [torch.randn(batch_size, 3, 32, 32) for _ in range(2)]
