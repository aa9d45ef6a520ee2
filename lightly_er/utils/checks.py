"""Argument checks shared by the estimators, losses, meters and benchmarks.

Each check raises a :class:`TypeError` for a value of the wrong type and a
:class:`ValueError` for a value out of range, and the message names the argument and
what was expected. Booleans are not accepted where a number is expected.

The generic checks live in the private ``_checks`` module (the one that the
upstream series sends); this module adds the names of the sphere entropy estimators,
which are lightly-er's research options.
"""

from __future__ import annotations

from typing import Any, Tuple

from lightly_er.utils._checks import (
    check_bool,
    check_choice,
    check_int,
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)

SPHERE_ESTIMATORS: Tuple[str, ...] = ("joe", "plugin", "knn", "renyi2", "logdet")
"""The entropy estimators of :func:`lightly_er.functional.sphere_entropy`: the vMF
kernel density (``"plugin"``, ``"joe"``), Kozachenko-Leonenko nearest neighbors
(``"knn"``), the Renyi-2 entropy of the kernel density (``"renyi2"``) and the Gaussian
log-determinant (``"logdet"``)."""


def check_estimator(estimator: Any, name: str = "estimator") -> None:
    """Raises unless estimator names a sphere entropy estimator (SPHERE_ESTIMATORS)."""
    check_choice(estimator, name, SPHERE_ESTIMATORS)


__all__ = [
    "SPHERE_ESTIMATORS",
    "check_bool",
    "check_choice",
    "check_estimator",
    "check_int",
    "check_matrix",
    "check_positive",
    "check_real",
    "check_same_shape",
]
