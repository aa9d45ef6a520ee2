"""The one kappa resolver, and the measuring settings of a criterion built on it.

Every place that needs the vMF concentration of a loss asks :func:`resolve_kappa`
(directly, or through :func:`entropy_settings`): the ER losses' constructors, the
heads' meters, :class:`lightly_er.monitoring.EntropyMeter` and
:class:`lightly_er.monitoring.EntropyMonitor`. So a run can never measure at a kappa
its loss does not use. docs/kappa.md explains the rule.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

from lightly.loss import (
    DINOLoss,
    KoLeoLoss,
    MSNLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    SwaVLoss,
)

from lightly_er.loss._terms import DEFAULT_KAPPA, resolve_kappa
from lightly_er.utils.checks import (
    check_choice,
    check_estimator,
    check_positive,
)

DEFAULT_ESTIMATOR = "plugin"
"""The sphere entropy estimator of the authors' reference code."""

DEFAULT_TEMPERATURE = 0.1
"""Softmax temperature of discrete logits when none is known: DINO's student's and
SwAV's prediction temperature."""


def default_kappa(temperature: Optional[float] = None) -> float:
    """Deprecated: ``resolve_kappa(temperature=temperature)`` under an earlier name.

    Examples:
        >>> import warnings
        >>> from lightly_er.loss._kappa import default_kappa
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     default_kappa(0.2)
        5.0
    """
    warnings.warn(
        "default_kappa is deprecated and will be removed in the next release; use "
        "lightly_er.monitoring.resolve_kappa(temperature=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    return resolve_kappa(temperature=temperature)


def entropy_settings(
    criterion: Any,
    *,
    support: Optional[str] = None,
    kappa: Optional[float] = None,
    temperature: Optional[float] = None,
    estimator: Optional[str] = None,
) -> Optional[Dict[str, Any]]:
    """How the ER entropy of the outputs fed to criterion is measured, by the one rule.

    Returns keyword arguments for :class:`lightly_er.monitoring.EntropyMeter`:
    ``{"support": "sphere", "kappa": ..., "estimator": ...}`` for NT-Xent, negative
    cosine similarity and their ER versions (kappa from :func:`resolve_kappa`),
    ``{"support": "discrete", "temperature": ...}`` for DINO and SwAV (the student's,
    resp. the prediction's, softmax temperature). An original lightly loss and its
    ER version give the same settings, so a benchmark's original run is measured at
    the kappa of its ER twin.

    Args:
        criterion:
            The loss, or None.
        support:
            ``"sphere"`` or ``"discrete"``: the support to measure; None: the
            criterion's. The criterion's numbers are used only where its support is
            the one measured.
        kappa, temperature, estimator:
            Explicit settings (a monitor's or a head's); each wins over the
            criterion's.

    Returns:
        The settings, or None when the support is neither given nor known from the
        criterion.

    Raises:
        ValueError: If support, estimator, kappa or temperature is invalid.

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_er.monitoring import entropy_settings
        >>> entropy_settings(NTXentLoss(temperature=0.5))
        {'support': 'sphere', 'kappa': 2.0, 'estimator': 'plugin'}
    """
    if support is not None:
        check_choice(support, "support", ("sphere", "discrete"))
    if estimator is not None:
        check_estimator(estimator)
    if temperature is not None:
        check_positive(temperature, "temperature")
    known = _criterion_settings(criterion)
    if support is None:
        support = known.get("support")
        if support is None:
            return None
    elif known.get("support") != support:
        known = {}
    if support == "discrete":
        if temperature is None:
            temperature = float(known.get("temperature", DEFAULT_TEMPERATURE))
        return {"support": "discrete", "temperature": float(temperature)}
    resolved = resolve_kappa(
        kappa if kappa is not None else known.get("kappa"),
        temperature=known.get("parent_temperature"),
    )
    estimator = estimator or known.get("estimator", DEFAULT_ESTIMATOR)
    return {"support": "sphere", "kappa": resolved, "estimator": estimator}


def _criterion_settings(criterion: Any) -> Dict[str, Any]:
    """What criterion says about its support, kappa (or its source) and temperature.

    An ER loss answers for itself (``entropy_settings()``). lightly's own losses are
    measured as their ER twins would measure them, so an original run and its ER
    twin are measured alike.
    """
    if criterion is None:
        return {}
    ask = getattr(criterion, "entropy_settings", None)
    if callable(ask):
        return dict(ask())
    if isinstance(criterion, NTXentLoss):
        return {
            "support": "sphere",
            "parent_temperature": float(criterion.temperature),
            "estimator": DEFAULT_ESTIMATOR,
        }
    if isinstance(criterion, KoLeoLoss):
        # KoLeo is the knn estimate: measured as ERKoLeoLoss measures it.
        return {"support": "sphere", "estimator": "knn"}
    if isinstance(criterion, NegativeCosineSimilarity):
        return {"support": "sphere", "estimator": DEFAULT_ESTIMATOR}
    if isinstance(criterion, MSNLoss):  # MSN and PMSN: the anchors' softmax
        return {"support": "discrete", "temperature": float(criterion.temperature)}
    if isinstance(criterion, DINOLoss):
        return {"support": "discrete", "temperature": float(criterion.student_temp)}
    if isinstance(criterion, SwaVLoss):
        return {"support": "discrete", "temperature": float(criterion.temperature)}
    return {}


__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_KAPPA",
    "DEFAULT_TEMPERATURE",
    "default_kappa",
    "entropy_settings",
    "resolve_kappa",
]
