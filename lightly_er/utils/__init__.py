"""The one home of what every layer of lightly-er shares.

- :mod:`lightly_er.utils.checks`: argument checks with errors that name the argument.
- :mod:`lightly_er.utils.dist`: gathering rows across processes, with or without
  gradient. ``global_rank`` is lightly's ``lightly.utils.dist.rank`` under the name
  the benchmarks import.
- :mod:`lightly_er.utils.io`: atomic file writes, so an interrupted run never leaves
  half a file behind.
"""

from lightly.utils.dist import rank as global_rank

from lightly_er.utils.checks import (
    SPHERE_ESTIMATORS,
    check_bool,
    check_choice,
    check_estimator,
    check_int,
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)
from lightly_er.utils.dist import gather_rows, gather_rows_no_grad
from lightly_er.utils.io import atomic_path, write_atomic

__all__ = [
    "SPHERE_ESTIMATORS",
    "atomic_path",
    "check_bool",
    "check_choice",
    "check_estimator",
    "check_int",
    "check_matrix",
    "check_positive",
    "check_real",
    "check_same_shape",
    "gather_rows",
    "gather_rows_no_grad",
    "global_rank",
    "write_atomic",
]
