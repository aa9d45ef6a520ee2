"""DINO-ER: the ER objective on the discrete support of DINO's prototypes."""

from __future__ import annotations

from typing import Any, Optional

from lightly_er.experimental._mixins import DiscreteEstimatorMixin
from lightly_er.experimental.estimator import EntropyEstimator, resolve_estimator
from lightly_er.loss._core import dino_er_loss as _core


class ERDINOLoss(DiscreteEstimatorMixin, _core.ERDINOLoss):
    """DINO loss with an explicit entropy term: DINO-ER.

    The loss of :mod:`lightly_er.loss._core.dino_er_loss` (what goes to lightly)
    with one more argument, ``estimator``, for the research options.
    docs/objectives.md explains the choices where the paper leaves room.

    Args:
        output_dim, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs,
        student_temp, center_momentum, center_mode:
            As :class:`lightly.loss.DINOLoss`.
        entropy_weight:
            Weight of the entropy term, >= 0.
        centering:
            Whether the teacher output is centered, as in DINO (the default); the
            paper's DINO-ER is ``centering=False``.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        estimator:
            An :class:`lightly_er.experimental.EntropyEstimator` for the options
            that apply to a discrete entropy (``memory_size``, ``validate``), or
            None.

    Raises:
        ValueError: If a temperature is not positive, center_momentum is outside
            [0, 1], center_mode is unknown, entropy_weight is negative, or an
            estimator option does not apply to a discrete entropy.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.experimental import EntropyEstimator
        >>> from lightly_er.loss import ERDINOLoss
        >>> loss_fn = ERDINOLoss(output_dim=128, estimator=EntropyEstimator(memory_size=64))
        >>> teacher_out = [torch.randn(8, 128) for _ in range(2)]
        >>> student_out = [torch.randn(8, 128, requires_grad=True) for _ in range(6)]
        >>> loss = loss_fn(teacher_out, student_out, epoch=0)
    """

    def __init__(
        self,
        output_dim: int = 65536,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        center_mode: str = "mean",
        *,
        entropy_weight: float = 1.0,
        centering: bool = True,
        gather_distributed: bool = False,
        estimator: Optional[EntropyEstimator] = None,
        **deprecated: Any,
    ) -> None:
        super().__init__(
            output_dim=output_dim,
            warmup_teacher_temp=warmup_teacher_temp,
            teacher_temp=teacher_temp,
            warmup_teacher_temp_epochs=warmup_teacher_temp_epochs,
            student_temp=student_temp,
            center_momentum=center_momentum,
            center_mode=center_mode,
            entropy_weight=entropy_weight,
            centering=centering,
            gather_distributed=gather_distributed,
        )
        self._init_estimator(
            resolve_estimator(estimator, deprecated, "ERDINOLoss", discrete=True)
        )


__all__ = ["ERDINOLoss"]
