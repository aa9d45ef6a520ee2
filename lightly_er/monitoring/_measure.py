"""What EntropyMonitor measures at a check, from the captured outputs: no Lightning.

Private to :mod:`lightly_er.monitoring.callback`, which decides when to measure.
"""

from __future__ import annotations

from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import torch
from torch import Tensor

from lightly_er import functional
from lightly_er.monitoring._watch import Watch
from lightly_er.monitoring.meter import EntropyMeter
from lightly_er.monitoring.rules import AlarmRule
from lightly_er.utils.dist import gather_rows_no_grad

Row = Tuple[str, str, float]
"""(module, metric, value) measured at one check."""

Measured = Tuple[Watch, Dict[str, float]]
"""A watched module and its metrics at one check."""


def measure_watches(
    watches: Sequence[Watch],
    teacher_temperature: Optional[float],
    teacher_center: Optional[Tensor],
    pair_views: bool,
) -> Tuple[List[Measured], Dict[str, Tensor]]:
    """Measures every watch's captured outputs (and empties them).

    A discrete teacher is measured as the loss forms its targets: after the center
    and at the teacher temperature, where the criterion has them (DINO).

    Returns:
        The metrics of every watch that was measured, and the first output each
        was measured on (the teacher's after centering), for the KL.
    """
    measured: List[Measured] = []
    first: Dict[str, Tensor] = {}
    for watch in watches:
        outputs, watch.outputs = watch.outputs, []
        if not outputs:
            continue
        x = outputs[0]
        if watch.role == "teacher" and watch.meter.support == "discrete":
            if teacher_center is not None and teacher_center.numel() == x[0].numel():
                x = x - teacher_center.to(x.device).reshape(x[0].shape)
            if teacher_temperature is not None:
                watch.meter.temperature = teacher_temperature
        first[watch.name] = x
        # The first two captured calls of a step are the two views of one batch in
        # lightly's training steps: the alignment pairs them if their shapes agree.
        x2 = None
        if (
            pair_views
            and watch.meter.support == "sphere"
            and len(outputs) > 1
            and outputs[1].shape == outputs[0].shape
        ):
            x2 = outputs[1]
        before = watch.meter.num_updates
        try:
            metrics = watch.meter.update(x, x2)
        except ValueError as error:
            # The user called EntropyMonitor, not the meter: name the module.
            raise ValueError(
                f"EntropyMonitor could not measure the output of module "
                f"{watch.name!r} with {watch.meter!r}: {error}"
            ) from error
        # A batch the meter could not measure (too few rows, NaN): nothing to log.
        if watch.meter.num_updates > before:
            measured.append((watch, metrics))
    return measured, first


def teacher_student_rows(
    measured: Sequence[Measured],
    first: Mapping[str, Tensor],
    meters: Mapping[str, EntropyMeter],
) -> List[Row]:
    """KL(teacher || student) of every discrete teacher measured with its student.

    On the first captured call of each, the same view in lightly's DINO steps
    (teacher and student both start with the first global crop); logged under the
    student's name as ``kl_teacher_student``.
    """
    rows: List[Row] = []
    for watch, _ in measured:
        if watch.partner is None or watch.partner not in first:
            continue
        teacher, student = first[watch.name], first[watch.partner]
        if teacher.shape != student.shape:
            continue
        if watch.meter.gather_distributed:
            teacher = gather_rows_no_grad(teacher)
            student = gather_rows_no_grad(student)
        kl = functional.mean_kl_divergence(
            watch.meter.log_probabilities(teacher),
            meters[watch.partner].log_probabilities(student),
        )
        rows.append((watch.partner, "kl_teacher_student", float(kl)))
    return rows


def criterion_rows(criterion: Any) -> List[Row]:
    """An ER criterion's terms of its last call, and its bound where it has one.

    ``entropy``, ``reconstruction``, their sum ``er`` (what the loss calls ER: a
    surrogate for DINO-ER and SwAV-ER) and ``bound`` (their ``last_bound``), under
    the module name ``criterion``; nothing for a loss without ``last_components``.
    """
    components = getattr(criterion, "last_components", None)
    if components is None:
        return []
    entropy, reconstruction = components.entropy, components.reconstruction
    values = [entropy, reconstruction, entropy + reconstruction]
    names = ["entropy", "reconstruction", "er"]
    bound = getattr(criterion, "last_bound", None)
    if bound is not None:
        values.append(bound)
        names.append("bound")
    # One host transfer.
    numbers = torch.stack([v.detach().float().reshape(()) for v in values]).tolist()
    return [
        ("criterion", name, float(value))
        for name, value in zip(names, numbers)  # noqa: B905
    ]


def mean_of_local_rows(
    rows: Sequence[Row], gathered: Collection[str], mean: Callable[[Tensor], Tensor]
) -> List[Row]:
    """rows with the values of modules not in gathered replaced by mean(values).

    mean averages a tensor over processes (a collective: every process calls it
    with as many values); the other values were measured on the gathered batch.
    """
    local = [i for i, (module, _, _) in enumerate(rows) if module not in gathered]
    out = list(rows)
    if not local:
        return out
    averaged = mean(torch.tensor([rows[i][2] for i in local])).tolist()
    for i, value in zip(local, averaged):  # noqa: B905
        out[i] = (rows[i][0], rows[i][1], float(value))
    return out


def progress_bar(
    measured: Sequence[Measured], rules: Sequence[AlarmRule]
) -> Dict[str, float]:
    """Every measured student's alarm metric, under its short name (``proj.dim``).

    The metric of the first rule that reads the module (the collapse score where
    none does).
    """
    values: Dict[str, float] = {}
    for watch, metrics in measured:
        if watch.role != "student":
            continue
        metric = next(
            (r.metric for r in rules if r.applies(watch.meter.support, watch.role)),
            "collapse_score",
        )
        if metric in metrics:
            values[watch.short_name] = metrics[metric]
    return values
