"""Calibration of the collapse score: the table in docs/reading_the_numbers.md.

Measures :func:`lightly_er.functional.collapse_score` and RankMe on batches of 256
whose state is known (:mod:`lightly_er.benchmarking.calibration`) and prints a
Markdown table with the verdict of the monitor's default alarm threshold.

    python benchmarks/collapse_calibration.py

About two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightly_er.benchmarking.calibration import calibration, markdown


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prints the calibration table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="*",
        default=["fashion-mnist", "digits"],
        help="real images for the untrained networks (default: fashion-mnist digits)",
    )
    args = parser.parse_args(argv)
    rows = calibration(args.datasets, log=print)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
