"""ImageNet ResNet-50 benchmark of lightly's methods and their ER versions.

lightly's ``benchmarks/imagenet/resnet50/main.py`` for ``simclr``, ``mocov2``,
``byol``, ``dino`` and ``swav``, value for value (same flags and defaults), and for
``<name>_er``, the same module trained with lightly-er's ER objective [0]. Each
method pretrains on an ImageFolder tree, then its backbone is scored by kNN (k=200,
t=0.1), a linear classifier (90 epochs) and fine-tuning (30 epochs). The differences
from lightly's script are the table of ``benchmarks/imagenet/README.md``
(:data:`benchmarks.imagenet.differences.DIFFERENCES`); the run folder is described in
:mod:`benchmarks.imagenet._runner`.

Examples (from the repository root)::

    python benchmarks/imagenet/resnet50/main.py \\
        --train-dir /datasets/imagenet/train --val-dir /datasets/imagenet/val \\
        --devices 2 --batch-size-per-device 128 --methods simclr simclr_er

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script: make the repository root importable and run as a module.
    import runpy

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    runpy.run_module("benchmarks.imagenet.resnet50.main", run_name="__main__")
    raise SystemExit(0)

from typing import Dict, Optional, Sequence  # noqa: E402

from benchmarks.common.cli import OneLineErrorParser  # noqa: E402

from .. import _cli, _runner  # noqa: E402
from .._method import SSLMethod  # noqa: E402
from . import byol, dino, evaluation, mocov2, simclr, swav  # noqa: E402
from ._base import BACKBONES  # noqa: E402

METHODS = _cli.method_specs(
    {
        "simclr": (simclr.SimCLR, simclr.transform),
        "mocov2": (mocov2.MoCoV2, mocov2.transform),
        "byol": (byol.BYOL, byol.transform),
        "dino": (dino.DINO, dino.transform),
        "swav": (swav.SwAV, swav.transform),
    }
)
"""Every ``--methods`` choice: the five methods and their ``_er`` twins."""

BENCHMARK = _cli.Benchmark(
    title="ImageNet ResNet-50 benchmark of lightly methods and their ER versions",
    methods=METHODS,
    backbones=BACKBONES,
    knn_t=0.1,
    finetune_epochs=30,
    linear_eval=evaluation.linear_eval,
    finetune_eval=evaluation.finetune_eval,
    knn_eval=evaluation.knn_eval,
)


def build_parser() -> OneLineErrorParser:
    """The command line: lightly's flags, then lightly-er's options."""
    return _cli.build_parser(BENCHMARK)


def build_model(
    method: str,
    batch_size_per_device: int,
    num_classes: int,
    backbone: str = "resnet50",
    ema: Optional[float] = None,
    knn_k: int = 200,
    knn_t: float = 0.1,
) -> SSLMethod:
    """The module of a method, as :func:`main` builds it."""
    return _runner.build_model(
        BENCHMARK,
        method,
        batch_size_per_device=batch_size_per_device,
        num_classes=num_classes,
        backbone=backbone,
        ema=ema,
        knn_k=knn_k,
        knn_t=knn_t,
    )


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """Runs the benchmark; returns ``{method: {"<stage>/<metric>": best value}}``."""
    return _runner.main(BENCHMARK, argv)


if __name__ == "__main__":
    main()
