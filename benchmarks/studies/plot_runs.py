"""Per-epoch curves of chosen run records of a benchmark log directory.

Selects the records in ``<log dir>/runs/*.json`` (written by ``benchmarks/cifar10.py``)
by method, batch size, EMA, seed and epochs, and draws their per-epoch kNN top-1, ER
entropy of the output, backbone collapse score and RankMe, one column per model (solid:
ER, dashed: original). Nothing is trained.

    python benchmarks/studies/plot_runs.py /work/runs/stability --methods byol byol_er \\
        --batch-sizes 128 --ema 0.99 0 --epochs 30 --out byol_curves.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.cifar.plots import plot_curves
from benchmarks.common.records import RunResult, load_results


def select(
    results: Sequence[RunResult],
    methods: Optional[Sequence[str]] = None,
    batch_sizes: Optional[Sequence[int]] = None,
    emas: Optional[Sequence[float]] = None,
    seeds: Optional[Sequence[int]] = None,
    epochs: Optional[int] = None,
) -> List[RunResult]:
    """The records that match every given filter (None: any value)."""
    return [
        r
        for r in results
        if (methods is None or r.method in methods)
        and (batch_sizes is None or r.batch_size in batch_sizes)
        and (emas is None or (r.ema is not None and r.ema in emas))
        and (seeds is None or r.seed in seeds)
        and (epochs is None or r.epochs == epochs)
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log_dir", type=Path, help="a log directory of cifar10.py")
    parser.add_argument("--methods", nargs="+", help="(default: all)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, help="(default: all)")
    parser.add_argument(
        "--ema",
        nargs="+",
        type=float,
        help="(default: all; when given, runs without a teacher are left out)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="(default: all)")
    parser.add_argument("--epochs", type=int, help="(default: all)")
    parser.add_argument("--out", type=Path, default=Path("curves.png"))
    args = parser.parse_args(argv)
    if not (args.log_dir / "runs").is_dir():
        parser.error(f"log_dir: no runs/ directory in {args.log_dir}")
    chosen = select(
        load_results(args.log_dir),
        args.methods,
        args.batch_sizes,
        args.ema,
        args.seeds,
        args.epochs,
    )
    if not chosen:
        parser.error(f"no run record in {args.log_dir / 'runs'} matches the filters")
    plot_curves(chosen, args.out)
    print(f"{len(chosen)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
