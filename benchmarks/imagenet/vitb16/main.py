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

import functools  # noqa: E402
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence  # noqa: E402

# Only the command line at import: the methods' modules (torch, lightly, Lightning,
# timm) load after the arguments are parsed, so --help and a bad argument answer at
# once.
from benchmarks.common.cli import OneLineErrorParser  # noqa: E402

from .. import _cli  # noqa: E402

if TYPE_CHECKING:
    from .._method import SSLMethod

COMMAND_LINE = _cli.CommandLine(
    title="ImageNet ViT benchmark of lightly's DINO and DINOv2 and their ER versions",
    methods=_cli.with_er_twins(("dino", "dinov2")),
    backbones=("vit_small_patch16_224", "vit_tiny_patch16_224", "vit_test"),
    knn_t=0.07,
    finetune_epochs=100,
    eval_methods=("mae", "simclr"),
)
"""The flags' choices and lightly's defaults (a test holds them equal to the
modules': :data:`METHODS`, ``vitb16.dino.VIT_BACKBONES``,
``vitb16.evaluation.EVAL_METHODS``)."""


@functools.cache
def benchmark() -> _cli.Benchmark:
    """The benchmark with its methods' modules (imported on the first call)."""
    from lightly.data.multi_view_collate import MultiViewCollate

    from ..resnet50.evaluation import knn_eval
    from . import dino, dinov2, evaluation

    return _cli.with_modules(
        COMMAND_LINE,
        methods=_cli.method_specs(
            {
                "dino": (dino.DINO, dino.transform),
                "dinov2": (dinov2.DINOv2, dinov2.transform),
            }
        ),
        backbones=tuple(dino.VIT_BACKBONES),
        linear_eval=evaluation.linear_eval,
        finetune_eval=evaluation.finetune_eval,
        knn_eval=knn_eval,
        eval_methods=evaluation.EVAL_METHODS,
        collate_fn=MultiViewCollate(),
        pretrain_sanity_steps=0,
        seed_without_flag=True,
        check_image_size=dino.check_image_size,
    )


def __getattr__(name: str) -> Any:
    # METHODS (every --methods choice: dino, dino_er, dinov2, dinov2_er) and
    # BENCHMARK, built when first asked for.
    if name == "METHODS":
        return benchmark().methods
    if name == "BENCHMARK":
        return benchmark()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser() -> OneLineErrorParser:
    """The command line: lightly's flags, then lightly-er's options."""
    return _cli.build_parser(COMMAND_LINE)


def build_model(method: str, *args: Any, **kwargs: Any) -> SSLMethod:
    """The module of a method, as :func:`main` builds it; the arguments after the
    method are :func:`benchmarks.imagenet._runner.build_model`'s (``batch_size_per_device``,
    ``num_classes``, ``backbone``, ``ema``, ``entropy_weight``: ``--entropy-weight``;
    None: the ER losses' own)."""
    from .. import _runner

    return _runner.build_model(benchmark(), method, *args, **kwargs)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """Runs the benchmark; returns ``{method: {"<stage>/<metric>": best value}}``."""
    args = build_parser().parse_args(argv)
    _cli.check_args(COMMAND_LINE, args)
    from .. import _runner

    return _runner.run(benchmark(), args)


if __name__ == "__main__":
    main()
