"""Which modules EntropyMonitor watches, and the meter each gets: no Lightning here.

Private to :mod:`lightly_er.monitoring.callback`, which decides when to measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Tuple, Union

from lightly.models.modules.heads import DINOProjectionHead, SwaVPrototypes
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightly_er.loss import entropy_settings
from lightly_er.monitoring.meter import DiscreteInputs, EntropyMeter, Support

CONVENTIONAL_HEADS: Tuple[str, ...] = (
    "projection_head",
    "prediction_head",
    "head",
    "student_head",
    "student_projection_head",
    "prototypes",
)
"""The names lightly's examples and benchmarks give the heads that are trained."""

ModuleSpec = Union[Support, EntropyMeter]


@dataclass
class Watch:
    """A watched module, its meter and the outputs captured in this step."""

    name: str
    module: nn.Module
    meter: EntropyMeter
    handle: Optional[RemovableHandle] = None
    outputs: List[Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class MeterSettings:
    """The monitor's own settings, which win over a head's and the loss's."""

    kappa: Optional[float]
    temperature: Optional[float]
    estimator: Optional[str]
    gather_distributed: bool


def find_watches(
    root: nn.Module,
    modules: Optional[Mapping[str, ModuleSpec]],
    settings: MeterSettings,
) -> List[Watch]:
    """The named modules of root, or else its ER heads and conventionally named heads.

    Raises:
        ValueError: If a named module does not exist, or its spec contradicts the
            support of the ER head it names.
    """
    criterion = getattr(root, "criterion", None)
    watches: List[Watch] = []
    if modules is not None:
        for name, spec in modules.items():
            try:
                module = root.get_submodule(name)
            except AttributeError:
                children = ", ".join(n for n, _ in root.named_children())
                raise ValueError(
                    f"EntropyMonitor: {type(root).__name__} has no submodule "
                    f"{name!r}; its top-level submodules are: "
                    f"{children or '(none)'}"
                ) from None
            own = getattr(module, "entropy_meter", None)
            if isinstance(own, EntropyMeter) and isinstance(spec, str):
                if spec != own.support:
                    raise ValueError(
                        f"EntropyMonitor: module {name!r} is an ER head whose output "
                        f"lives on the {own.support!r} support; got {spec!r} for it"
                    )
            meter = (
                spec
                if isinstance(spec, EntropyMeter)
                else meter_for(module, spec, criterion, settings)
            )
            watches.append(Watch(name, module, meter))
        return watches
    for name, module in root.named_modules():
        # A head inside a watched head (a prototype layer in a projection head) is
        # measured through its parent's output, not twice.
        if not name or any(name.startswith(w.name + ".") for w in watches):
            continue
        own = getattr(module, "entropy_meter", None)
        if isinstance(own, EntropyMeter):
            support = own.support
        elif name.rsplit(".", 1)[-1] in CONVENTIONAL_HEADS:
            support = support_of(module)
        else:
            continue
        watches.append(
            Watch(name, module, meter_for(module, support, criterion, settings))
        )
    return watches


def meter_for(
    module: nn.Module, support: Support, criterion: Any, settings: MeterSettings
) -> EntropyMeter:
    """A meter of the given support, its settings by the one rule.

    The monitor's arguments first, then the head's own meter's, then the
    criterion's (:func:`lightly_er.loss.entropy_settings`).
    """
    own = getattr(module, "entropy_meter", None)
    kappa, temperature = settings.kappa, settings.temperature
    inputs: DiscreteInputs = "logits"
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


def support_of(module: nn.Module) -> Support:
    """Prototype layers give scores of a discrete distribution; other heads embed."""
    if isinstance(module, (DINOProjectionHead, SwaVPrototypes)):
        return "discrete"
    return "sphere"


def trainable(module: nn.Module) -> bool:
    """Whether any parameter of module trains (an EMA teacher's do not)."""
    return any(p.requires_grad for p in module.parameters())


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
