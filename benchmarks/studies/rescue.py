"""Entry point of the rescue study: ``python benchmarks/studies/rescue.py --help``.

The study lives in the package ``benchmarks/studies/rescue/`` (see its ``cli``
module); this file only makes ``python <path>`` work from a checkout.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.studies.rescue.cli import main

    sys.exit(main())
