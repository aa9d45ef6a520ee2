"""The names a sweep's command line offers, importable without torch.

``--help`` and the argument checks of ``benchmarks/cifar10.py`` need the method,
backbone and dataset names and lightly's EMA, not the modules that implement them:
these constants let the command line answer before torch, lightly and Lightning load
(``benchmarks/cifar/methods.py``, ``backbones.py`` and ``data.py`` re-export them, and
a test holds them equal to the modules' own).
"""

from __future__ import annotations

from typing import FrozenSet, Tuple

from benchmarks.common import names

BASE_METHODS: Tuple[str, ...] = ("simclr", "moco", "byol", "simsiam", "dino", "swav")
"""The methods of lightly's CIFAR-10 benchmark, in its order."""

METHODS: Tuple[str, ...] = names.with_er_twins(BASE_METHODS)
"""Every runnable method name: ``simclr``, ``simclr_er``, ``moco``, ..."""

SPHERE_METHODS: FrozenSet[str] = frozenset({"simclr", "moco", "byol", "simsiam"})
"""The methods whose ER loss measures its entropy on the sphere (they take kappa and
an estimator; DINO's and SwAV's are discrete)."""

TEACHER_METHODS: FrozenSet[str] = frozenset({"moco", "byol", "dino"})
"""The methods with an EMA teacher (the ``--ema`` axis applies to them)."""

MOCO_SPLITS = 8
"""The split batch norm's number of splits in lightly's MoCo (batch sizes divide by it)."""

LIGHTLY_EMA = 0.99
"""The constant EMA coefficient of lightly's CIFAR-10 benchmark."""

BACKBONES: Tuple[str, ...] = ("resnet18", "small")
"""``resnet18``: lightly's CIFAR variant; ``small``: a 3-layer CNN for CPU runs."""

DATASETS: Tuple[str, ...] = ("cifar10", "fashion-mnist", "digits")
"""The datasets a sweep can load (:func:`benchmarks.cifar.data.load_dataset`)."""


def split_method(method: str) -> Tuple[str, str]:
    """``"byol_er"`` -> (``"byol"``, ``"er"``); ``"byol"`` -> (``"byol"``, ``"original"``).

    The benchmarks' one rule (:func:`benchmarks.common.names.split_method`) over
    lightly's CIFAR-10 methods.

    Raises:
        ValueError: If the method is unknown; the message lists the known ones.
    """
    return names.split_method(method, BASE_METHODS)


__all__ = [
    "BACKBONES",
    "BASE_METHODS",
    "DATASETS",
    "LIGHTLY_EMA",
    "METHODS",
    "MOCO_SPLITS",
    "SPHERE_METHODS",
    "TEACHER_METHODS",
    "split_method",
]
