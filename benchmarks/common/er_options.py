"""The ER losses' options on the benchmarks' command lines, and which loss gets which.

``--kappa``, ``--entropy-weight`` and ``--estimator`` are named alike in every entry
point (``benchmarks/cifar10.py``, the ImageNet mains); :func:`er_loss_kwargs` is the
one rule that turns them into the ER loss's keyword arguments. Importable without
torch (``--help`` shows :data:`ESTIMATORS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, cast

if TYPE_CHECKING:  # importable without torch: --help reads ESTIMATORS
    from lightly_er.functional import SphereEstimator

ESTIMATORS: Tuple[SphereEstimator, ...] = ("plugin", "joe", "renyi2", "knn", "logdet")
"""The sphere entropy estimators the library offers, the authors' (plug-in) first
(a test holds them equal to ``lightly_er.utils.checks.SPHERE_ESTIMATORS``)."""


def er_loss_kwargs(
    objective: str,
    sphere: bool,
    kappa: Optional[float] = None,
    entropy_weight: Optional[float] = None,
    estimator: Optional[str] = None,
) -> Dict[str, Any]:
    """The keyword arguments a method's ER loss gets from the command line.

    Args:
        objective: ``"original"`` (nothing: lightly's loss takes none of them) or
            ``"er"``.
        sphere: Whether the method's ER loss measures its entropy on the sphere
            (SimCLR, MoCo, BYOL, SimSiam): only those take kappa and an estimator;
            a discrete one (DINO, SwAV) takes the entropy weight only.
        kappa: The vMF concentration (None: the loss's own).
        entropy_weight: The weight of the entropy term (None: the loss's own).
        estimator: The sphere entropy estimator (None: the loss's own).

    Returns:
        The options that were given and apply to the loss.

    Examples:
        >>> er_loss_kwargs("er", sphere=True, kappa=5.0, entropy_weight=1.0)
        {'entropy_weight': 1.0, 'kappa': 5.0}
        >>> er_loss_kwargs("er", sphere=False, kappa=5.0, estimator="joe")
        {}
    """
    if objective != "er":
        return {}
    kwargs: Dict[str, Any] = {}
    if entropy_weight is not None:
        kwargs["entropy_weight"] = entropy_weight
    if sphere:
        if estimator is not None:
            # The library takes the estimator as its typed object (torch: imported
            # only when a loss is built).
            from lightly_er.experimental import EntropyEstimator

            kwargs["estimator"] = EntropyEstimator(
                name=cast("SphereEstimator", estimator)
            )
        if kappa is not None:
            kwargs["kappa"] = kappa
    return kwargs


__all__ = ["ESTIMATORS", "er_loss_kwargs"]
