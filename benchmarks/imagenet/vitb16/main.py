"""ImageNet ViT benchmark of lightly's DINO and DINOv2, and their ER versions.

lightly's ``benchmarks/imagenet/vitb16/main.py`` for ``dino`` and ``dinov2``, value
for value (same flags and defaults: kNN temperature 0.07, MAE's linear and
fine-tuning evaluation), and ``dino_er`` and ``dinov2_er``, the same modules trained
with lightly-er's ER objective [0]. The
backbone is timm's ViT-S/16 (the folder's name is lightly's). The differences from
lightly's script are the table of ``benchmarks/imagenet/README.md``
(:data:`benchmarks.imagenet.differences.DIFFERENCES`); the run folder is described in
:mod:`benchmarks.imagenet._runner`.

Examples (from the repository root)::

    python benchmarks/imagenet/vitb16/main.py \\
        --train-dir /datasets/imagenet/train --val-dir /datasets/imagenet/val \\
        --devices 2 --batch-size-per-device 128 --methods dino dino_er

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script: make the repository root importable and run as a module.
    import runpy

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    runpy.run_module("benchmarks.imagenet.vitb16.main", run_name="__main__")
    raise SystemExit(0)

from typing import Dict, Optional, Sequence  # noqa: E402

from lightly.data.multi_view_collate import MultiViewCollate  # noqa: E402

from benchmarks.common.cli import OneLineErrorParser  # noqa: E402

from .. import _cli, _runner  # noqa: E402
from .._method import SSLMethod  # noqa: E402
from ..resnet50.evaluation import knn_eval  # noqa: E402
from . import dino, dinov2, evaluation  # noqa: E402

METHODS = _cli.method_specs(
    {
        "dino": (dino.DINO, dino.transform),
        "dinov2": (dinov2.DINOv2, dinov2.transform),
    }
)
"""Every ``--methods`` choice: ``dino``, ``dino_er``, ``dinov2``, ``dinov2_er``."""

BENCHMARK = _cli.Benchmark(
    title="ImageNet ViT benchmark of lightly's DINO and DINOv2 and their ER versions",
    methods=METHODS,
    backbones=tuple(dino.VIT_BACKBONES),
    knn_t=0.07,
    finetune_epochs=100,
    linear_eval=evaluation.linear_eval,
    finetune_eval=evaluation.finetune_eval,
    knn_eval=knn_eval,
    eval_methods=evaluation.EVAL_METHODS,
    collate_fn=MultiViewCollate(),
    pretrain_sanity_steps=0,
    seed_without_flag=True,
    check_image_size=dino.check_image_size,
)


def build_parser() -> OneLineErrorParser:
    """The command line: lightly's flags, then lightly-er's options."""
    return _cli.build_parser(BENCHMARK)


def build_model(
    method: str,
    batch_size_per_device: int,
    num_classes: int,
    backbone: str = "vit_small_patch16_224",
    ema: Optional[float] = None,
) -> SSLMethod:
    """The module of a method, as :func:`main` builds it."""
    return _runner.build_model(
        BENCHMARK,
        method,
        batch_size_per_device=batch_size_per_device,
        num_classes=num_classes,
        backbone=backbone,
        ema=ema,
    )


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """Runs the benchmark; returns ``{method: {"<stage>/<metric>": best value}}``."""
    return _runner.main(BENCHMARK, argv)


if __name__ == "__main__":
    main()
