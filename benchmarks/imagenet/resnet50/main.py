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

import functools  # noqa: E402
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence  # noqa: E402

# Only the command line at import: the methods' modules (torch, lightly, Lightning)
# load after the arguments are parsed, so --help and a bad argument answer at once.
from benchmarks.common.cli import OneLineErrorParser  # noqa: E402

from .. import _cli  # noqa: E402

if TYPE_CHECKING:
    from .._method import SSLMethod

COMMAND_LINE = _cli.CommandLine(
    title="ImageNet ResNet-50 benchmark of lightly methods and their ER versions",
    methods=_cli.with_er_twins(("simclr", "mocov2", "byol", "dino", "swav")),
    backbones=("resnet50", "resnet18", "resnet34", "resnet101"),
    knn_t=0.1,
    finetune_epochs=30,
    sphere_methods=("simclr", "mocov2", "byol"),
)
"""The flags' choices and lightly's defaults (a test holds them equal to the
modules': :data:`METHODS`, ``resnet50._base.BACKBONES``)."""


@functools.cache
def benchmark() -> _cli.Benchmark:
    """The benchmark with its methods' modules (imported on the first call)."""
    from . import byol, dino, evaluation, mocov2, simclr, swav
    from ._base import BACKBONES

    return _cli.with_modules(
        COMMAND_LINE,
        methods=_cli.method_specs(
            {
                "simclr": (simclr.SimCLR, simclr.transform),
                "mocov2": (mocov2.MoCoV2, mocov2.transform),
                "byol": (byol.BYOL, byol.transform),
                "dino": (dino.DINO, dino.transform),
                "swav": (swav.SwAV, swav.transform),
            }
        ),
        backbones=BACKBONES,
        linear_eval=evaluation.linear_eval,
        finetune_eval=evaluation.finetune_eval,
        knn_eval=evaluation.knn_eval,
    )


def __getattr__(name: str) -> Any:
    # METHODS (every --methods choice: the five methods and their _er twins) and
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
    method are :func:`benchmarks.imagenet._runner.build_model`'s
    (``batch_size_per_device``, ``num_classes``, ``backbone``, ``ema``, ``knn_k``,
    ``knn_t``; ``kappa``, ``entropy_weight``, ``estimator``: ``--kappa``,
    ``--entropy-weight``, ``--estimator``; None: the ER loss's own)."""
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
