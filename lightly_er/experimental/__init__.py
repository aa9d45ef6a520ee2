"""Research options of the ER losses, beyond the authors' defaults.

The losses in :mod:`lightly_er.loss` use the authors' settings unless given an
:class:`EntropyEstimator`; its options (other estimators, leave-one-out, a separate
or learned kappa, an entropy memory, the NaN check) are documented in
docs/objectives.md with what our measurements say of them.
"""

from lightly_er.experimental.estimator import EntropyEstimator

__all__ = ["EntropyEstimator"]
