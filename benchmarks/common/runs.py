"""One run of a benchmark or study, and its identifier.

:class:`RunSpec` is what every engine trains: a method (or a study's variant of one,
its arm) at a batch size, teacher EMA, seed and budget. :func:`run_id` names it; the
id is the stem of the run's record and of its folders. It has two spellings, one per
kind of budget, kept as they were so that the records already on disk (the sweeps'
``runs/*.json``, the mechanism study's committed records) are found by the same
names:

- a budget in epochs (the CIFAR-10 sweep): ``byol_er-bs32-ema0.9-ep200-seed1``;
- a budget in steps (the studies): ``dino-nocenter_w0_b128_s1000_seed3``.

Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


def run_id(
    name: str,
    *,
    batch_size: int,
    seed: int,
    ema: Optional[float] = None,
    epochs: Optional[int] = None,
    steps: Optional[int] = None,
    weight: Optional[float] = None,
) -> str:
    """A file-name-safe identifier of one run.

    Args:
        name: The method (``"byol_er"``) or a study's arm (``"dino-nocenter"``).
        batch_size: The batch size.
        seed: The seed.
        ema: The teacher's EMA coefficient, part of an epoch-budget id (a step-budget
            id leaves it to the arm's name).
        epochs: The budget in epochs (give this or ``steps``).
        steps: The budget in optimizer steps.
        weight: The entropy weight of a step-budget run (None: the arm has none).

    Returns:
        ``<name>-bs<batch>[-ema<m>]-ep<epochs>-seed<seed>`` for an epoch budget,
        ``<name>[_w<weight>]_b<batch>_s<steps>_seed<seed>`` for a step budget.

    Raises:
        ValueError: If not exactly one of ``epochs`` and ``steps`` is given, or a
            weight is given with an epoch budget.

    Examples:
        >>> run_id("byol_er", batch_size=32, seed=1, ema=0.9, epochs=200)
        'byol_er-bs32-ema0.9-ep200-seed1'
        >>> run_id("dino-nocenter", batch_size=128, seed=3, steps=1000, weight=0.0)
        'dino-nocenter_w0_b128_s1000_seed3'
    """
    if (epochs is None) == (steps is None):
        raise ValueError(
            f"give exactly one budget, epochs or steps; got epochs={epochs!r}, "
            f"steps={steps!r}"
        )
    if steps is not None:
        w = "" if weight is None else f"_w{weight:g}"
        return f"{name}{w}_b{batch_size}_s{steps}_seed{seed}"
    if weight is not None:
        raise ValueError(
            f"an epoch-budget run id has no weight (got weight={weight!r}): the "
            "sweep's entropy weight is one of its result settings"
        )
    ema_part = "" if ema is None else f"-ema{ema:g}"
    return f"{name}-bs{batch_size}{ema_part}-ep{epochs}-seed{seed}"


@dataclass(frozen=True)
class RunSpec:
    """One run: a method at a batch size, EMA, seed and budget.

    Attributes:
        method: The method (``"byol"``, ``"byol_er"``), as the engine builds it.
        batch_size: The batch size (per device).
        ema: The teacher's EMA coefficient; None for a method without a teacher.
        seed: The seed.
        epochs: The budget in epochs (the sweeps), or None.
        steps: The budget in optimizer steps (the studies), or None.
        weight: A study's entropy weight, or None.
        name: The run's name where it is not the method's: a study's arm
            (``"byol-nopred"`` trains ``"byol"`` without its predictor).
    """

    method: str
    batch_size: int
    ema: Optional[float]
    seed: int
    epochs: Optional[int] = None
    steps: Optional[int] = None
    weight: Optional[float] = None
    name: Optional[str] = None

    @property
    def run_id(self) -> str:
        """The run's identifier (:func:`run_id`)."""
        return run_id(
            self.method if self.name is None else self.name,
            batch_size=self.batch_size,
            seed=self.seed,
            ema=None if self.steps is not None else self.ema,
            epochs=self.epochs,
            steps=self.steps,
            weight=self.weight,
        )


__all__ = ["RunSpec", "run_id"]
