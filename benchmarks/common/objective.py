"""The objective switch of every benchmark method: lightly's objective or ER.

A method is one LightningModule with an ``objective``: ``"original"`` builds lightly's
loss and heads, ``"er"`` their lightly-er subclasses (:meth:`ObjectiveSwitch.pick`,
:meth:`ObjectiveSwitch.make_loss`), which take the same arguments, draw the same
random numbers and return the same outputs; so the two objectives start from the
same weights under one seed and differ only in the loss. Both benchmarks (CIFAR-10
and ImageNet) build their methods on :class:`ObjectiveSwitch`.

kappa and temperatures are never worked out here: the ER heads' meters take them
from the loss (:meth:`ObjectiveSwitch.meter_kwargs`), and a user's ``--kappa`` goes
to the ER loss's constructor only.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, TypeVar

from pytorch_lightning import LightningModule
from torch import nn

from benchmarks.common.names import Objective as Objective
from lightly_er.monitoring import EntropyMeter

OBJECTIVES: Tuple[str, ...] = ("original", "er")
T = TypeVar("T")


class ObjectiveSwitch(LightningModule):
    """The switch between lightly's objective and ER, mixed into each method's base.

    Call :meth:`init_objective` in ``__init__``, build the loss with
    :meth:`make_loss` and the heads with :meth:`pick` (the loss first where the
    heads' meters take its kappa, :meth:`meter_kwargs`), and log with
    :meth:`log_er_terms`.

    Attributes:
        objective: ``"original"`` or ``"er"``.
        er_options: Keyword arguments of the ER loss that the run sets (the
            user's kappa, entropy weight, estimator); empty for lightly's defaults.
        criterion: The loss.
    """

    objective: Objective
    er_options: Dict[str, Any]
    criterion: nn.Module

    def init_objective(
        self, objective: str, er_options: Optional[Mapping[str, Any]] = None
    ) -> None:
        """Sets the objective and the ER loss options.

        Raises:
            ValueError: For an unknown objective, or ER options with the original.
        """
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be 'original' or 'er', got {objective!r}")
        if er_options and objective != "er":
            raise ValueError("er_kwargs apply to the ER objective only")
        self.objective = objective  # type: ignore[assignment]
        self.er_options = dict(er_options or {})

    def pick(self, original: type[T], er: type[T]) -> type[T]:
        """lightly's class, or its lightly-er subclass for the ER objective."""
        return er if self.objective == "er" else original

    def make_loss(
        self,
        original: type,
        er: type,
        er_only: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> nn.Module:
        """lightly's loss with kwargs, or its ER subclass with kwargs, ``er_only``
        (arguments that only the ER class takes) and :attr:`er_options` (which
        win over ``er_only``: a study's arm may switch a device back on)."""
        loss: nn.Module
        if self.objective == "er":
            loss = er(**{**kwargs, **(er_only or {}), **self.er_options})
        else:
            loss = original(**kwargs)
        return loss

    def meter_kwargs(self, support: str) -> Dict[str, Any]:
        """The keyword of an ER head's meter: the loss's kappa or temperature.

        Asks the loss (:meth:`lightly_er.monitoring.EntropyMeter.for_loss`); a head
        on the other support (SwAV's projection head under its discrete loss) gets
        what the library's meter uses by default. Empty for the original objective,
        whose heads are lightly's.

        Args:
            support: ``"sphere"`` (``kappa``) or ``"discrete"`` (``temperature``).
        """
        if self.objective != "er":
            return {}
        meter = EntropyMeter.for_loss(self.criterion)
        if meter.support != support:
            meter = EntropyMeter(support)  # type: ignore[arg-type]
        settings = meter.settings()
        key = "kappa" if support == "sphere" else "temperature"
        return {key: settings[key]}

    def log_er_terms(self, batch_size: int, **log_kwargs: Any) -> None:
        """Logs an ER loss's two terms of the last call, in nats.

        ``train_entropy`` and ``train_reconstruction``; nothing for lightly's loss.
        ``log_kwargs`` go to ``log_dict`` (e.g. ``sync_dist=True``).
        """
        components = getattr(self.criterion, "last_components", None)
        if components is not None:
            self.log_dict(
                {
                    "train_entropy": components.entropy,
                    "train_reconstruction": components.reconstruction,
                },
                batch_size=batch_size,
                **log_kwargs,
            )
