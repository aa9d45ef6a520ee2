"""SwAV-ER: the ER objective on the discrete support of SwAV's prototypes."""

from __future__ import annotations

from typing import Any, Optional

from lightly_er.experimental._mixins import DiscreteEstimatorMixin
from lightly_er.experimental.estimator import EntropyEstimator, resolve_estimator
from lightly_er.loss._core import swav_er_loss as _core


class ERSwaVLoss(DiscreteEstimatorMixin, _core.ERSwaVLoss):
    """SwAV loss with an explicit entropy term: SwAV-ER.

    The loss of :mod:`lightly_er.loss._core.swav_er_loss` (what goes to lightly)
    with one more argument, ``estimator``, for the research options.
    docs/objectives.md explains the choices where the paper leaves room.

    Args:
        temperature, sinkhorn_iterations, sinkhorn_epsilon,
        sinkhorn_gather_distributed:
            As :class:`lightly.loss.SwaVLoss`.
        entropy_weight:
            Weight of the entropy term, >= 0.
        use_sinkhorn:
            Whether the codes come from Sinkhorn-Knopp, as in SwAV (the default);
            the paper's SwAV-ER is ``use_sinkhorn=False``.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        estimator:
            An :class:`lightly_er.experimental.EntropyEstimator` for the options
            that apply to a discrete entropy (``memory_size``, ``validate``), or
            None.

    Raises:
        ValueError: If a temperature or epsilon is not positive, entropy_weight is
            negative, or an estimator option does not apply to a discrete entropy.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.experimental import EntropyEstimator
        >>> from lightly_er.loss import ERSwaVLoss
        >>> loss_fn = ERSwaVLoss(estimator=EntropyEstimator(validate="never"))
        >>> high = [torch.randn(8, 32, requires_grad=True) for _ in range(2)]
        >>> loss = loss_fn(high, [])
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_gather_distributed: bool = False,
        *,
        entropy_weight: float = 1.0,
        use_sinkhorn: bool = True,
        gather_distributed: bool = False,
        estimator: Optional[EntropyEstimator] = None,
        **deprecated: Any,
    ) -> None:
        super().__init__(
            temperature=temperature,
            sinkhorn_iterations=sinkhorn_iterations,
            sinkhorn_epsilon=sinkhorn_epsilon,
            sinkhorn_gather_distributed=sinkhorn_gather_distributed,
            entropy_weight=entropy_weight,
            use_sinkhorn=use_sinkhorn,
            gather_distributed=gather_distributed,
        )
        self._init_estimator(
            resolve_estimator(estimator, deprecated, "ERSwaVLoss", discrete=True)
        )


__all__ = ["ERSwaVLoss"]
