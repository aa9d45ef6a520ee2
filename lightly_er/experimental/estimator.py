"""The research options of the ER losses, in one typed object.

The ER losses take the authors' settings by default (the plug-in kernel estimate of
the entropy with the self-term kept, a fixed kappa, no memory). Everything beyond
that is an option of :class:`EntropyEstimator`, passed to a loss as its
``estimator`` argument, so the losses' signatures stay their lightly parents' plus
``kappa``, ``entropy_weight`` and ``estimator``. docs/objectives.md explains each
option and what our measurements say of it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Literal, Mapping, Optional, Tuple, Union

from lightly_er.functional._sphere import SphereEstimator
from lightly_er.utils.checks import (
    check_bool,
    check_choice,
    check_estimator,
    check_int,
    check_positive,
)

ValidateMode = Literal["first", "always", "never"]
VALIDATE_MODES = ("first", "always", "never")

_KERNEL_ESTIMATORS = ("plugin", "joe", "renyi2")


@dataclass(frozen=True)
class EntropyEstimator:
    """How an ER loss estimates its entropy term, beyond the authors' defaults.

    ``EntropyEstimator()`` is what every loss uses when ``estimator`` is None: the
    plug-in vMF kernel-density estimate with the self-term kept, as in the authors'
    reference code. The discrete losses (DINO-ER, SwAV-ER, MSN-ER, PMSN-ER) estimate
    the entropy of the marginal distribution exactly and accept only ``memory_size``
    and ``validate``.

    Args:
        name:
            The sphere estimator: ``"plugin"`` (the authors'), ``"joe"``,
            ``"renyi2"``, ``"knn"`` (Kozachenko-Leonenko, as KoLeo) or ``"logdet"``
            (a Gaussian fit). :func:`lightly_er.functional.sphere_entropy` defines
            them.
        leave_one_out:
            Leave each sample out of its own kernel-density estimate (kernel
            estimators only).
        density_kappa:
            The kernel's own concentration, or None to use the loss's kappa
            (kernel estimators only).
        learn_kappa:
            Learn kappa (and ``density_kappa``, if given) as parameters of the loss.
        kappa_bounds:
            (low, high) bounds of a learned kappa, or None for two decades either
            side of its initial value.
        memory_size:
            Rows of earlier batches kept as extra samples of the entropy estimate,
            or 0 for none. A sphere loss also takes a (rows, dim) pair, which
            allocates the memory at once.
        validate:
            When the loss is checked for NaN/Inf (a host sync on an accelerator):
            ``"first"`` the first 10 calls, ``"always"``, or ``"never"`` (lightly's
            behavior).

    Raises:
        TypeError: If an option has the wrong type.
        ValueError: If an option is out of range, or the options contradict each
            other (``density_kappa`` or ``leave_one_out`` without a kernel).

    Examples:
        >>> from lightly_er.experimental import EntropyEstimator
        >>> from lightly_er.loss import ERNTXentLoss
        >>> loss_fn = ERNTXentLoss(
        ...     temperature=0.1,
        ...     estimator=EntropyEstimator(name="joe", leave_one_out=True),
        ... )
        >>> loss_fn.estimator.name
        'joe'
    """

    name: SphereEstimator = "plugin"
    leave_one_out: bool = False
    density_kappa: Optional[float] = None
    learn_kappa: bool = False
    kappa_bounds: Optional[Tuple[float, float]] = None
    memory_size: Union[int, Tuple[int, int]] = 0
    validate: ValidateMode = "first"

    def __post_init__(self) -> None:
        check_estimator(self.name, "estimator")
        check_bool(self.leave_one_out, "leave_one_out")
        check_bool(self.learn_kappa, "learn_kappa")
        if self.density_kappa is not None:
            check_positive(self.density_kappa, "density_kappa")
            if self.name not in _KERNEL_ESTIMATORS:
                raise ValueError(
                    "density_kappa is the kernel's concentration; the estimator "
                    f"{self.name!r} has no kernel"
                )
        if self.leave_one_out and self.name not in _KERNEL_ESTIMATORS:
            raise ValueError(
                f"leave_one_out applies to the kernel estimators "
                f"{list(_KERNEL_ESTIMATORS)}, not to {self.name!r}"
            )
        if self.kappa_bounds is not None and not self.learn_kappa:
            raise ValueError("kappa_bounds bound a learned kappa: set learn_kappa=True")
        if isinstance(self.memory_size, (tuple, list)):
            if len(self.memory_size) != 2:
                raise ValueError(
                    "memory_size must be an int or a (rows, dim) pair, got "
                    f"{self.memory_size!r}"
                )
            check_int(self.memory_size[0], "memory_size (rows)", 1)
            check_int(self.memory_size[1], "memory_size (dim)", 1)
        else:
            check_int(self.memory_size, "memory_size", 0)
        check_choice(self.validate, "validate", VALIDATE_MODES)

    @property
    def memory_rows(self) -> int:
        """How many rows the memory keeps (0: no memory)."""
        size = self.memory_size
        return int(size[0]) if isinstance(size, (tuple, list)) else int(size)


# The loss keywords that this object replaced (deprecated), and its fields.
_LEGACY_KEYWORDS = {
    "leave_one_out": "leave_one_out",
    "density_kappa": "density_kappa",
    "learn_kappa": "learn_kappa",
    "kappa_bounds": "kappa_bounds",
    "entropy_memory_size": "memory_size",
    "validate": "validate",
}


def resolve_estimator(
    estimator: Union[EntropyEstimator, str, None],
    legacy: Mapping[str, Any],
    owner: str,
    default_name: SphereEstimator = "plugin",
    discrete: bool = False,
) -> EntropyEstimator:
    """The estimator of a loss, from its ``estimator`` argument and old keywords.

    A string ``estimator`` and the keyword arguments that :class:`EntropyEstimator`
    replaced still work for one release, with one DeprecationWarning per
    construction.

    Args:
        estimator:
            The loss's ``estimator`` argument.
        legacy:
            The other keyword arguments the loss was given.
        owner:
            The loss's class name, for the messages.
        default_name:
            The estimator when none is named (``"knn"`` for KoLeo-ER).
        discrete:
            Whether the loss estimates a discrete entropy (only ``memory_size``
            and ``validate`` apply).

    Returns:
        The checked estimator.

    Raises:
        TypeError: If estimator has the wrong type, or legacy holds a keyword the
            loss never accepted.
        ValueError: If an option does not apply to the loss.
    """
    unknown = sorted(set(legacy) - set(_LEGACY_KEYWORDS))
    if unknown:
        raise TypeError(
            f"{owner}.__init__() got an unexpected keyword argument {unknown[0]!r}"
        )
    old: Dict[str, Any] = {_LEGACY_KEYWORDS[k]: v for k, v in legacy.items()}
    if isinstance(estimator, str):
        old["name"] = estimator
        estimator = None
    if estimator is None:
        estimator = EntropyEstimator(name=default_name)
    elif not isinstance(estimator, EntropyEstimator):
        raise TypeError(
            "estimator must be a lightly_er.experimental.EntropyEstimator or "
            f"None, got {type(estimator).__name__}"
        )
    if old:
        if "memory_size" in old and isinstance(old["memory_size"], list):
            old["memory_size"] = tuple(old["memory_size"])
        if old.get("kappa_bounds") is not None:
            old["kappa_bounds"] = tuple(old["kappa_bounds"])
        names = ", ".join(
            sorted(legacy) + (["estimator=<str>"] if "name" in old else [])
        )
        warnings.warn(
            f"{owner}: {names} are deprecated and will be removed in the next "
            "release; pass "
            "estimator=lightly_er.experimental.EntropyEstimator(...) instead",
            DeprecationWarning,
            stacklevel=3,
        )
        estimator = replace(estimator, **old)
    if discrete:
        _check_discrete(estimator, owner)
    return estimator


def _check_discrete(estimator: EntropyEstimator, owner: str) -> None:
    """Raises unless only the options a discrete entropy has are set."""
    default = EntropyEstimator()
    for field in fields(EntropyEstimator):
        if field.name in ("memory_size", "validate"):
            continue
        if getattr(estimator, field.name) != getattr(default, field.name):
            raise ValueError(
                f"{owner} computes the entropy of its marginal distribution exactly: "
                f"EntropyEstimator({field.name}=...) does not apply to it (only "
                "memory_size and validate do)"
            )
    if isinstance(estimator.memory_size, tuple):
        raise ValueError(
            f"{owner}: memory_size must be an int for a discrete loss, got "
            f"{estimator.memory_size!r}"
        )


__all__ = ["EntropyEstimator", "ValidateMode", "resolve_estimator"]
