"""Entry point of the alarm validation: ``python benchmarks/studies/alarm.py --help``.

The replay lives in the package ``benchmarks/studies/alarm/`` (see its ``cli``
module); this file only makes ``python <path>`` work from a checkout.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.studies.alarm.cli import main

    sys.exit(main())
