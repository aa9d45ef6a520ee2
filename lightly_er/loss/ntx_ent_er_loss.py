"""SimCLR-ER and MoCo-ER: the ER objective in place of lightly's NTXentLoss."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from lightly_er.experimental._mixins import SphereEstimatorMixin
from lightly_er.experimental.estimator import EntropyEstimator, resolve_estimator
from lightly_er.loss._core import ntx_ent_er_loss as _core


class ERNTXentLoss(SphereEstimatorMixin, _core.ERNTXentLoss):
    """ER version of the contrastive NT-Xent loss: SimCLR-ER, and MoCo-ER with a bank.

    The loss of :mod:`lightly_er.loss._core.ntx_ent_er_loss` (what goes to lightly)
    with one more argument, ``estimator``, for the research options.
    docs/objectives.md derives the objective and lists the choices made here.

    Args:
        temperature:
            The parent's temperature; sets the default kappa.
        memory_bank_size:
            Size of the memory bank as a (num_features, dim) tuple, or 0 (SimCLR-ER).
        gather_distributed:
            If True, the entropy (and, as in the parent, the bank update) uses the
            batches of all processes.
        kappa:
            Concentration of the vMF kernel and reconstruction density, or None for
            1 / temperature (10, with a warning, for a non-positive temperature).
        entropy_weight:
            Weight of the entropy term, >= 0.
        estimator:
            The :class:`lightly_er.experimental.EntropyEstimator` with research
            options, or None for the authors' plug-in estimate.

    Raises:
        ValueError: If kappa is not positive, entropy_weight is negative, or an
            entropy memory is asked for beside a memory bank.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.experimental import EntropyEstimator
        >>> from lightly_er.loss import ERNTXentLoss
        >>> loss_fn = ERNTXentLoss(estimator=EntropyEstimator(name="joe"))
        >>> loss = loss_fn(torch.randn(32, 128), torch.randn(32, 128))
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: Union[int, Sequence[int]] = 0,
        gather_distributed: bool = False,
        *,
        kappa: Optional[float] = None,
        entropy_weight: float = 1.0,
        estimator: Optional[EntropyEstimator] = None,
        **deprecated: Any,
    ) -> None:
        super().__init__(
            temperature=temperature,
            memory_bank_size=memory_bank_size,
            gather_distributed=gather_distributed,
            kappa=kappa,
            entropy_weight=entropy_weight,
        )
        self._init_estimator(resolve_estimator(estimator, deprecated, "ERNTXentLoss"))
        if self.entropy_memory is not None and self.memory_bank.size[0] > 0:
            raise ValueError(
                "EntropyEstimator(memory_size=...) and memory_bank_size both keep "
                "past samples for the entropy: MoCo-ER's bank is its entropy memory; "
                "use one"
            )


__all__ = ["ERNTXentLoss"]
