"""Which modules EntropyMonitor watches, and the meter each gets: no Lightning here.

Private to :mod:`lightly_er.monitoring.callback`, which decides when to measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

import torch
from lightly.loss import DINOLoss
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightly_er.loss._kappa import entropy_settings
from lightly_er.monitoring.meter import SUPPORTS, DiscreteInputs, EntropyMeter, Support
from lightly_er.monitoring.rules import Role

CONVENTIONAL_HEADS: Tuple[str, ...] = (
    "projection_head",
    "prediction_head",
    "head",
    "student_head",
    "student_projection_head",
    "prototypes",
)
"""The names lightly's examples and benchmarks give the heads that are trained."""

CONVENTIONAL_BACKBONES: Tuple[str, ...] = ("backbone", "student_backbone")
"""The names lightly's examples give the backbone (its features feed kNN and probes)."""

PROTOTYPES = "prototypes"
"""The name lightly's examples give prototypes kept apart from the heads: SwAV's
layer, called after the projection head, and MSN's weights, which the loss reads."""

TEACHER_PREFIXES: Tuple[str, ...] = ("teacher_",)
TEACHER_SUFFIXES: Tuple[str, ...] = ("_momentum", "_teacher", "_ema")
"""How lightly's examples name the EMA copies: teacher_head, projection_head_momentum."""

SHORT_NAMES = {
    "projection_head": "proj",
    "prediction_head": "pred",
    "student_head": "student",
    "student_projection_head": "student",
    "teacher_head": "teacher",
    "teacher_projection_head": "teacher",
    "prototypes": "proto",
    "backbone": "backbone",
    "student_backbone": "backbone",
}
SHORT_METRICS = {
    "dimension_score": "dim",
    "normalized_mutual_information": "mi",
    "collapse_score": "score",
    "effective_rank": "rank",
}
ModuleSpec = Union[Support, EntropyMeter]


@dataclass
class Watch:
    """A watched module, its meter and the outputs captured in this step.

    A student is measured on its calls with gradient; a teacher (parameters, none
    trainable) on its first calls whatever the grad mode, read-only. ``partner``
    is the student a discrete teacher is compared with (KL), if any.
    """

    name: str
    module: nn.Module
    meter: EntropyMeter
    role: Role = "student"
    partner: Optional[str] = None
    pool: bool = False
    handle: Optional[RemovableHandle] = None
    outputs: List[Tensor] = field(default_factory=list)

    @property
    def backbone(self) -> bool:
        """Whether it is named like a backbone or a backbone's EMA copy (alarm rules
        on heads skip it)."""
        last = self.name.rsplit(".", 1)[-1]
        return (student_base(last) or last) in CONVENTIONAL_BACKBONES

    @property
    def short_name(self) -> str:
        """A short progress-bar name, e.g. ``pred.dim`` for the prediction head."""
        last = self.name.rsplit(".", 1)[-1]
        metric = SHORT_METRICS.get(
            "dimension_score"
            if self.meter.support == "sphere"
            else "normalized_mutual_information",
            "",
        )
        prefix = "t_" if self.role == "teacher" and "teacher" not in last else ""
        return f"{prefix}{SHORT_NAMES.get(last, last)}.{metric}"


@dataclass(frozen=True)
class MeterSettings:
    """The monitor's own settings, which win over a head's and the loss's."""

    kappa: Optional[float]
    temperature: Optional[float]
    estimator: Optional[str]
    gather_distributed: bool


def check_modules(modules: Any) -> None:
    """Raises unless modules is None or maps names to a support or an EntropyMeter."""
    if modules is None:
        return
    if not isinstance(modules, Mapping):
        raise TypeError(
            "modules must be a mapping from module names to 'sphere', "
            "'discrete' or an EntropyMeter, e.g. modules={'projection_head': "
            f"'sphere'}}, got {type(modules).__name__}"
        )
    for name, spec in modules.items():
        if not isinstance(name, str):
            raise TypeError(f"the keys of modules must be module names, got {name!r}")
        if not isinstance(spec, EntropyMeter) and spec not in SUPPORTS:
            error = ValueError if isinstance(spec, str) else TypeError
            raise error(
                f"modules[{name!r}] must be 'sphere', 'discrete' or an EntropyMeter, "
                f"got {spec!r}"
            )


def find_watches(
    root: nn.Module,
    modules: Optional[Mapping[str, ModuleSpec]],
    settings: MeterSettings,
    watch_teachers: bool = True,
) -> List[Watch]:
    """The named modules of root, or else its ER heads, heads, backbones and teachers.

    Without names: every module with an ``entropy_meter`` (an ER head), named like
    lightly's trained heads or backbones, or like their EMA copies
    (``teacher_head``, ``projection_head_momentum``, ...). A module whose
    parameters all are frozen is a teacher (observed read-only; dropped with
    ``watch_teachers=False``); one without any parameter is skipped.

    Raises:
        ValueError: If a named module does not exist, or its spec contradicts the
            support of the ER head it names.
    """
    criterion = getattr(root, "criterion", None)
    watches: List[Watch] = []
    has_prototypes = any(
        name.rsplit(".", 1)[-1] == PROTOTYPES
        for name in (
            *(n for n, _ in root.named_modules()),
            *(n for n, _ in root.named_parameters()),
        )
    )
    if modules is not None:
        for name, spec in modules.items():
            try:
                module = root.get_submodule(name)
            except AttributeError:
                children = ", ".join(n for n, _ in root.named_children())
                raise ValueError(
                    f"EntropyMonitor(modules=...): {type(root).__name__} has no "
                    f"submodule {name!r}; its top-level submodules are: "
                    f"{children or '(none)'}"
                ) from None
            own = getattr(module, "entropy_meter", None)
            if isinstance(own, EntropyMeter) and isinstance(spec, str):
                if spec != own.support:
                    raise ValueError(
                        f"EntropyMonitor(modules=...): module {name!r} is an ER head "
                        f"whose output lives on the {own.support!r} support; got "
                        f"modules[{name!r}] = {spec!r} (pass {own.support!r})"
                    )
            meter = (
                spec
                if isinstance(spec, EntropyMeter)
                else meter_for(module, spec, criterion, settings)
            )
            role = "teacher" if frozen(module) else "student"
            if role == "teacher" and not watch_teachers:
                continue
            watches.append(Watch(name, module, meter, role))
        return _paired(watches)
    for name, module in root.named_modules():
        # A head inside a watched head (a prototype layer in a projection head) is
        # measured through its parent's output, not twice.
        if not name or any(name.startswith(w.name + ".") for w in watches):
            continue
        own = getattr(module, "entropy_meter", None)
        last = name.rsplit(".", 1)[-1]
        if not isinstance(own, EntropyMeter) and not (
            last in CONVENTIONAL_HEADS + CONVENTIONAL_BACKBONES
            or student_base(last) is not None
        ):
            continue
        if not any(True for _ in module.parameters()):
            continue  # nothing trained or copied: an nn.Identity placeholder
        role = "teacher" if frozen(module) else "student"
        if role == "teacher" and not watch_teachers:
            continue
        base = student_base(last) or last
        pool = base in CONVENTIONAL_BACKBONES
        support = (
            own.support
            if isinstance(own, EntropyMeter)
            else support_of(base, criterion, has_prototypes)
        )
        meter = meter_for(module, support, criterion, settings)
        watches.append(Watch(name, module, meter, role, pool=pool))
    return _paired(watches)


def student_base(name: str) -> Optional[str]:
    """``head`` for ``teacher_head``, ``projection_head`` for
    ``projection_head_momentum``; None if name is not a teacher's name."""
    for prefix in TEACHER_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            base = name[len(prefix) :]
            return base if base in CONVENTIONAL_HEADS + CONVENTIONAL_BACKBONES else None
    for suffix in TEACHER_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            base = name[: -len(suffix)]
            return base if base in CONVENTIONAL_HEADS + CONVENTIONAL_BACKBONES else None
    return None


def _paired(watches: List[Watch]) -> List[Watch]:
    """Gives every discrete teacher the discrete student it is compared with."""
    students = {
        w.name: w
        for w in watches
        if w.role == "student" and w.meter.support == "discrete"
    }
    for watch in watches:
        if watch.role != "teacher" or watch.meter.support != "discrete":
            continue
        path, _, last = watch.name.rpartition(".")
        base = student_base(last) or last
        prefix = f"{path}." if path else ""
        student_path = ".".join(
            "student" if part == "teacher" else part for part in path.split(".")
        )
        student_prefix = f"{student_path}." if path else ""
        for candidate in (
            prefix + base,
            prefix + "student_" + base,
            student_prefix + base,
            student_prefix + last,
        ):
            if candidate in students and candidate != watch.name:
                watch.partner = candidate
                break
    return watches


def teacher_temperature(criterion: Any, epoch: int) -> Optional[float]:
    """The temperature the criterion gives its teacher at this epoch, if it has one.

    DINOLoss's rule (and ERDINOLoss's ``teacher_temperature``): the warmup schedule
    for ``epoch < warmup_teacher_temp_epochs``, ``teacher_temp`` after it.
    """
    if callable(getattr(criterion, "teacher_temperature", None)):
        return float(criterion.teacher_temperature(epoch=epoch))
    if isinstance(criterion, DINOLoss):
        if epoch < criterion.warmup_teacher_temp_epochs:
            return float(criterion.teacher_temp_schedule[epoch])
        return float(criterion.teacher_temp)
    return None


def teacher_center(criterion: Any) -> Optional[Tensor]:
    """A copy of the center DINOLoss subtracts from the teacher's output, if any.

    ERDINOLoss subtracts it only with ``centering=True``.
    """
    if isinstance(criterion, DINOLoss) and getattr(criterion, "centering", True):
        center: Tensor = criterion.center
        return center.detach().reshape(-1).to(torch.float32, copy=True)
    return None


def meter_for(
    module: nn.Module, support: Support, criterion: Any, settings: MeterSettings
) -> EntropyMeter:
    """A meter of the given support, its settings by the one rule.

    The monitor's arguments first, then the head's own meter's, then the
    criterion's (:func:`lightly_er.monitoring.entropy_settings`).
    """
    own = getattr(module, "entropy_meter", None)
    kappa, temperature = settings.kappa, settings.temperature
    inputs: DiscreteInputs = "auto"
    if isinstance(own, EntropyMeter):
        kappa = kappa if kappa is not None else own.kappa
        temperature = temperature if temperature is not None else own.temperature
        inputs = own.inputs
    resolved = entropy_settings(
        criterion,
        support=support,
        kappa=kappa,
        temperature=temperature,
        estimator=settings.estimator,
    )
    assert resolved is not None  # the support is given
    return EntropyMeter(
        **resolved, inputs=inputs, gather_distributed=settings.gather_distributed
    )


def support_of(name: str, criterion: Any, has_prototypes: bool) -> Support:
    """The support of a conventionally named module's outputs, as the loss states it.

    The loss answers (:func:`lightly_er.monitoring.entropy_settings`): a loss on
    embeddings (NT-Xent, negative cosine similarity, ...) makes every head an
    embedding; a loss on prototype scores (DINO, SwAV, MSN) makes the module that
    outputs them discrete. Where the model keeps its prototypes apart from the
    heads, under the name ``prototypes`` (SwAV's layer, MSN's weights), the heads
    embed and only a ``prototypes`` module is discrete; otherwise (DINO, whose heads
    end in the prototypes) the heads are. Backbones always embed, and without a
    criterion every module is measured as an embedding (name its support in
    EntropyMonitor's ``modules=`` to choose).

    Args:
        name: The module's last name, its student's for a teacher (``head`` for
            ``teacher_head``).
        criterion: The LightningModule's ``criterion``, or None.
        has_prototypes: Whether the model has a module or parameter named
            ``prototypes``.
    """
    settings = entropy_settings(criterion)
    if settings is None or settings["support"] != "discrete":
        return "sphere"
    if name in CONVENTIONAL_BACKBONES:
        return "sphere"
    if has_prototypes:
        return "discrete" if name == PROTOTYPES else "sphere"
    return "discrete"


def trainable(module: nn.Module) -> bool:
    """Whether any parameter of module trains (an EMA teacher's do not)."""
    return any(p.requires_grad for p in module.parameters())


def frozen(module: nn.Module) -> bool:
    """Whether module has parameters and none of them trains: an EMA teacher."""
    parameters = list(module.parameters())
    return bool(parameters) and not any(p.requires_grad for p in parameters)


def first_tensor(output: Any) -> Optional[Tensor]:
    """The output if it is a tensor, else the first tensor of a (nested) tuple/list."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def capture_hook(
    watch: Watch, capturing: Callable[[], bool]
) -> Callable[[nn.Module, Any, Any], None]:
    """A forward hook that keeps the first two outputs of watch while capturing()."""

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if not capturing() or len(watch.outputs) >= 2:
            return
        # Students are measured on their trained calls; teachers are observed
        # whatever the grad mode (they usually run under no_grad).
        if watch.role == "student" and (
            not torch.is_grad_enabled() or not trainable(module)
        ):
            return
        tensor = first_tensor(output)
        if tensor is not None and tensor.is_floating_point():
            tensor = tensor.detach()
            if watch.pool and tensor.ndim == 4:
                tensor = tensor.mean(dim=(2, 3))
            # A copy: a later in-place operation must not change what is measured.
            watch.outputs.append(tensor.to(torch.float32, copy=True))

    return hook


def remove_hooks(watches: List[Watch]) -> None:
    """Removes the forward hooks of watches and forgets their captured outputs."""
    for watch in watches:
        if watch.handle is not None:
            watch.handle.remove()
            watch.handle = None
        watch.outputs.clear()


def no_watch_message(root: nn.Module) -> str:
    """Why nothing is watched in root, and the argument that fixes it."""
    names = ", ".join(CONVENTIONAL_HEADS + CONVENTIONAL_BACKBONES)
    children = [
        name
        for name, child in root.named_children()
        if any(True for _ in child.parameters())
    ][:2] or ["projector"]
    example = ", ".join(f"{name!r}: 'sphere'" for name in children)
    return (
        "EntropyMonitor watches no module: none was named, no submodule of "
        f"{type(root).__name__} owns an entropy_meter, and none is named like a "
        f"lightly head or backbone ({names}) or their EMA copies. Name the modules "
        f"to watch and the support of their outputs: EntropyMonitor(modules={{"
        f"{example}}}) ('discrete' for prototype scores)"
    )
