"""The backbones of the CIFAR-10 benchmark: lightly's CIFAR ResNet-18, a small CNN."""

from __future__ import annotations

from typing import List, Tuple

from lightly.models import ResNetGenerator
from lightly.models.batchnorm import get_norm_layer
from torch import nn

from benchmarks.cifar.names import BACKBONES as BACKBONES


class SmallBackbone(nn.Sequential):
    """A 3-layer CNN with 128 output features, for CPU runs.

    ``num_splits > 0`` uses lightly's split batch norm, as MoCo's ResNet does.
    """

    def __init__(self, num_splits: int = 0) -> None:
        layers: List[nn.Module] = []
        channels = [3, 32, 64, 128]
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:], strict=False)):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                get_norm_layer(c_out, num_splits),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(*layers)


def build_backbone(name: str, num_splits: int = 0) -> Tuple[nn.Module, int]:
    """(backbone, feature_dim) for ``resnet18`` (CIFAR variant) or ``small``."""
    if name == "resnet18":
        resnet = ResNetGenerator("resnet-18", num_splits=num_splits)
        return nn.Sequential(
            *list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1)
        ), 512
    if name == "small":
        return SmallBackbone(num_splits), 128
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
