"""The ResNet backbone shared by the methods of the ImageNet ResNet-50 benchmark.

Each method (``simclr.py``, ``mocov2.py``, ``byol.py``, ``dino.py``, ``swav.py``) is a
:class:`ResNetMethod` with an ``objective`` switch (see
:mod:`benchmarks.imagenet._method`) and otherwise lightly's
``benchmarks/imagenet/resnet50/<method>.py`` value for value.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torchvision
from torch import Tensor, nn

from benchmarks.common.objective import Objective

from .._method import SSLMethod

BACKBONES: Tuple[str, ...] = ("resnet50", "resnet18", "resnet34", "resnet101")
"""torchvision ResNets accepted as backbone (``resnet50`` is lightly's)."""


def build_backbone(name: str = "resnet50") -> Tuple[nn.Module, int]:
    """A randomly initialized torchvision ResNet whose classifier is an identity.

    Args:
        name: One of :data:`BACKBONES`.

    Returns:
        (backbone, feature_dim): the network maps (N, 3, H, W) images to
        (N, feature_dim) features (2048 for ResNet-50).

    Raises:
        ValueError: If the name is not in :data:`BACKBONES`.
    """
    if name not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}"
        )
    resnet = getattr(torchvision.models, name)()
    feature_dim = int(resnet.fc.in_features)
    resnet.fc = nn.Identity()
    return resnet, feature_dim


class ResNetMethod(SSLMethod):
    """A method on a torchvision ResNet (lightly's ``resnet50()`` by default).

    Attributes:
        backbone:
            The ResNet; the network that the evaluations score (through
            :meth:`forward`).
        feature_dim:
            Size of its features (the heads' input size).

    Args:
        batch_size_per_device, num_classes, objective, ema, er_kwargs:
            See :class:`benchmarks.imagenet._method.SSLMethod`.
        backbone:
            A name of :data:`BACKBONES`.
    """

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
        objective: Objective = "original",
        backbone: str = "resnet50",
        ema: Optional[float] = None,
        er_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(batch_size_per_device, num_classes, objective, ema, er_kwargs)
        self.backbone, self.feature_dim = build_backbone(backbone)

    def forward(self, x: Tensor) -> Any:
        """The backbone's features of x, shape (batch_size, feature_dim)."""
        return self.backbone(x)
