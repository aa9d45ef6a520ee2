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


def er_variant(criterion: Any) -> str:
    """Which variant of its ER loss a run trains, read from the loss itself.

    Args:
        criterion: The run's loss (an original lightly loss or an ER loss).

    Returns:
        ``"-"`` for a loss without an entropy term; for DINO-ER and SwAV-ER whether
        the parent's device is kept or removed (the paper's variant); for BYOL-ER and
        SimSiam-ER which input is the prediction; ``"term added"`` otherwise.

    Examples:
        >>> from lightly_er.loss import ERDINOLoss
        >>> er_variant(ERDINOLoss(centering=False))
        'paper: centering off'
    """
    if not hasattr(criterion, "entropy_weight"):
        return "-"
    if hasattr(criterion, "centering"):
        return "centering kept" if criterion.centering else "paper: centering off"
    if hasattr(criterion, "use_sinkhorn"):
        return "Sinkhorn kept" if criterion.use_sinkhorn else "paper: Sinkhorn off"
    if hasattr(criterion, "prediction"):
        return f"prediction {criterion.prediction}"
    return "term added"


__all__ = ["ESTIMATORS", "er_loss_kwargs", "er_variant"]
