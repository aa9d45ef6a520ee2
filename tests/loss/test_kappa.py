"""One kappa: the loss, entropy_settings, EntropyMeter and EntropyMonitor agree.

For every ER loss and every lightly parent, at several temperatures and kappas, the
concentration (or, on a discrete support, the softmax temperature) is resolved by
lightly_er.loss.resolve_kappa alone, so a run can never measure at a kappa its loss
does not use. A place that computed its own kappa fails here.
"""

from __future__ import annotations

import math
import types
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pytest
import pytorch_lightning as pl
from lightly.loss import (
    DINOLoss,
    KoLeoLoss,
    MSNLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    PMSNLoss,
    SwaVLoss,
)
from lightly.models.modules.heads import (
    DINOProjectionHead,
    SimCLRProjectionHead,
    SwaVPrototypes,
)
from torch import nn

from lightly_er.experimental import EntropyEstimator
from lightly_er.loss import (
    DEFAULT_KAPPA,
    ERDINOLoss,
    ERKoLeoLoss,
    ERLoss,
    ERMSNLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERPMSNLoss,
    ERSwaVLoss,
    default_kappa,
    entropy_settings,
    resolve_kappa,
)
from lightly_er.models.modules import (
    ERDINOProjectionHead,
    ERSimCLRProjectionHead,
    ERSwaVPrototypes,
)
from lightly_er.monitoring import EntropyMeter, EntropyMonitor

pytestmark = pytest.mark.filterwarnings(
    "ignore:kappa cannot be 1 / temperature:UserWarning",
    "ignore:.*weight_norm.*is deprecated.*",
)

TEMPERATURES = [0.07, 0.2, 0.5, 1.0, 3.0, -1.0, -0.5]


class _Model(pl.LightningModule):
    def __init__(self, criterion: nn.Module, head: nn.Module, name: str) -> None:
        super().__init__()
        self.criterion = criterion
        self.backbone = nn.Linear(4, 4)
        self.add_module(name, head)


def _monitor_meter(
    criterion: nn.Module, head: nn.Module, name: str, tmp_path: Path
) -> EntropyMeter:
    """The meter EntropyMonitor builds for head on a module with that criterion."""
    monitor = EntropyMonitor(log_dir=tmp_path)
    trainer = types.SimpleNamespace(loggers=[], log_dir=None)
    model = _Model(criterion, head, name)
    monitor.on_fit_start(trainer, model)  # type: ignore[arg-type]
    meters = monitor.meters
    monitor.teardown(trainer, model, "fit")  # type: ignore[arg-type]
    assert set(meters) == {name, "backbone"}  # the monitor watches backbones too
    return meters[name]


def _sphere_heads() -> List[Tuple[Callable[[], nn.Module], str]]:
    return [
        (lambda: ERSimCLRProjectionHead(4, 8, 4), "projection_head"),
        (lambda: SimCLRProjectionHead(4, 8, 4), "projection_head"),  # by its name
    ]


# (a loss, the ER loss whose kappa it must be measured at)
SPHERE_CASES: List[Tuple[str, Callable[[], nn.Module], Callable[[], nn.Module]]] = []
for t in TEMPERATURES:
    SPHERE_CASES.append(
        (f"ERNTXentLoss({t})", lambda t=t: ERNTXentLoss(t), lambda t=t: ERNTXentLoss(t))
    )
    SPHERE_CASES.append(
        (f"NTXentLoss({t})", lambda t=t: NTXentLoss(t), lambda t=t: ERNTXentLoss(t))
    )
    SPHERE_CASES.append(
        (
            f"ERNTXentLoss({t}, kappa=3)",
            lambda t=t: ERNTXentLoss(t, kappa=3.0),
            lambda t=t: ERNTXentLoss(t, kappa=3.0),
        )
    )
SPHERE_CASES += [
    (
        "MoCo-ER(0.2)",
        lambda: ERNTXentLoss(0.2, memory_bank_size=(16, 4)),
        lambda: ERNTXentLoss(0.2),
    ),
    (
        "NegativeCosineSimilarity",
        NegativeCosineSimilarity,
        ERNegativeCosineSimilarity,
    ),
    (
        "ERNegativeCosineSimilarity",
        ERNegativeCosineSimilarity,
        ERNegativeCosineSimilarity,
    ),
]
SPHERE_CASES += [
    ("KoLeoLoss", KoLeoLoss, ERKoLeoLoss),
    (
        "ERKoLeoLoss(kappa=3)",
        lambda: ERKoLeoLoss(kappa=3.0),
        lambda: ERKoLeoLoss(kappa=3.0),
    ),
    (
        "ERNegativeCosineSimilarity(learn_kappa)",
        lambda: ERNegativeCosineSimilarity(
            estimator=EntropyEstimator(learn_kappa=True)
        ),
        lambda: ERNegativeCosineSimilarity(
            estimator=EntropyEstimator(learn_kappa=True)
        ),
    ),
    (
        "ERLoss(kappa=4, density_kappa=2)",
        lambda: ERLoss(kappa=4.0, estimator=EntropyEstimator(density_kappa=2.0)),
        # The entropy is measured at the kernel's kappa.
        lambda: ERLoss(kappa=2.0),
    ),
]
for k in (0.5, 4.0, 25.0):
    SPHERE_CASES.append(
        (
            f"ERNegativeCosineSimilarity(kappa={k})",
            lambda k=k: ERNegativeCosineSimilarity(kappa=k),
            lambda k=k: ERNegativeCosineSimilarity(kappa=k),
        )
    )
    SPHERE_CASES.append(
        (f"ERLoss(kappa={k})", lambda k=k: ERLoss(kappa=k), lambda k=k: ERLoss(kappa=k))
    )


@pytest.mark.parametrize(
    "make, make_er", [c[1:] for c in SPHERE_CASES], ids=[c[0] for c in SPHERE_CASES]
)
def test_every_place_resolves_one_kappa(
    make: Callable[[], nn.Module], make_er: Callable[[], nn.Module], tmp_path: Path
) -> None:
    criterion, er_twin = make(), make_er()
    kappa = er_twin.kappa
    settings = entropy_settings(criterion)
    assert settings is not None and settings["support"] == "sphere"
    places = {
        # The kernel's kappa (a loss's own density_kappa where it has one).
        "loss": getattr(criterion, "density_kappa", getattr(criterion, "kappa", kappa)),
        "entropy_settings": settings["kappa"],
        "EntropyMeter.for_loss": EntropyMeter.for_loss(criterion).effective_kappa,
    }
    for make_head, name in _sphere_heads():
        meter = _monitor_meter(criterion, make_head(), name, tmp_path)
        places[f"EntropyMonitor[{type(meter).__name__}:{name}]"] = meter.effective_kappa
    assert places == dict.fromkeys(places, kappa)


DISCRETE_CASES: List[Tuple[str, Callable[[], nn.Module], float]] = []
for s in (0.05, 0.1, 0.3):
    DISCRETE_CASES += [
        (f"DINOLoss({s})", lambda s=s: DINOLoss(8, student_temp=s), s),
        (
            f"ERDINOLoss({s})",
            lambda s=s: ERDINOLoss(8, student_temp=s, centering=False),
            s,
        ),
        (f"SwaVLoss({s})", lambda s=s: SwaVLoss(temperature=s), s),
        (
            f"ERSwaVLoss({s})",
            lambda s=s: ERSwaVLoss(temperature=s, use_sinkhorn=False),
            s,
        ),
        (
            f"ERLoss(discrete, {s})",
            lambda s=s: ERLoss(support="discrete", temperature=s),
            s,
        ),
        (f"MSNLoss({s})", lambda s=s: MSNLoss(temperature=s), s),
        (f"ERMSNLoss({s})", lambda s=s: ERMSNLoss(temperature=s), s),
        (f"PMSNLoss({s})", lambda s=s: PMSNLoss(temperature=s), s),
        (f"ERPMSNLoss({s})", lambda s=s: ERPMSNLoss(temperature=s), s),
    ]


@pytest.mark.parametrize(
    "make, temperature",
    [c[1:] for c in DISCRETE_CASES],
    ids=[c[0] for c in DISCRETE_CASES],
)
def test_every_place_resolves_one_softmax_temperature(
    make: Callable[[], nn.Module], temperature: float, tmp_path: Path
) -> None:
    criterion = make()
    settings = entropy_settings(criterion)
    assert settings == {"support": "discrete", "temperature": temperature}
    places = {
        "EntropyMeter.for_loss": EntropyMeter.for_loss(criterion).effective_temperature
    }
    heads: List[Tuple[nn.Module, str]] = [
        (ERDINOProjectionHead(4, 8, 4, 8), "student_head"),
        (DINOProjectionHead(4, 8, 4, 8), "student_head"),
        (ERSwaVPrototypes(4, 8), "prototypes"),
        (SwaVPrototypes(4, 8), "prototypes"),
    ]
    for head, name in heads:
        meter = _monitor_meter(criterion, head, name, tmp_path)
        places[f"EntropyMonitor[{type(head).__name__}]"] = meter.effective_temperature
    assert places == dict.fromkeys(places, temperature)


@pytest.mark.parametrize("explicit", [None, 7.0])
def test_explicit_settings_win_everywhere(
    explicit: Optional[float], tmp_path: Path
) -> None:
    # The monitor's kappa, then the head's, then the loss's: the rule's order.
    criterion = NTXentLoss(0.25)
    head = ERSimCLRProjectionHead(4, 8, 4, kappa=2.0)
    monitor_kappa = EntropyMonitor(kappa=explicit, log_dir=tmp_path)
    trainer = types.SimpleNamespace(loggers=[], log_dir=None)
    monitor_kappa.on_fit_start(trainer, _Model(criterion, head, "projection_head"))  # type: ignore[arg-type]
    expected = 2.0 if explicit is None else explicit
    assert monitor_kappa.meters["projection_head"].effective_kappa == expected
    assert (
        EntropyMeter.for_loss(criterion, kappa=explicit).effective_kappa
        == resolve_kappa(explicit, temperature=0.25)
        == (4.0 if explicit is None else explicit)
    )


def test_the_rule() -> None:
    assert resolve_kappa() == DEFAULT_KAPPA == 10.0
    assert resolve_kappa(temperature=0.25) == 4.0 == default_kappa(0.25)
    assert resolve_kappa(kappa=3.0, temperature=0.25) == 3.0
    assert resolve_kappa(kappa=3) == 3.0 and isinstance(resolve_kappa(kappa=3), float)
    for temperature in (-1.0, 0.0, -1e-9):
        with pytest.warns(UserWarning, match=f"temperature={temperature}"):
            assert resolve_kappa(temperature=temperature) == DEFAULT_KAPPA
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_kappa(kappa=2.0, temperature=-1.0) == 2.0
    for bad, error in (
        ({"kappa": 0.0}, ValueError),
        ({"kappa": -1.0}, ValueError),
        ({"kappa": math.inf}, ValueError),
        ({"kappa": "10"}, TypeError),
        ({"temperature": math.nan}, ValueError),
        ({"temperature": True}, TypeError),
    ):
        with pytest.raises(error, match=next(iter(bad))):
            resolve_kappa(**bad)  # type: ignore[arg-type]


def test_unknown_criterion() -> None:
    class Mine(nn.Module):
        pass

    assert entropy_settings(Mine()) is None
    assert entropy_settings(None) is None
    assert entropy_settings(Mine(), support="sphere") == {
        "support": "sphere",
        "kappa": DEFAULT_KAPPA,
        "estimator": "plugin",
    }
    # The criterion's numbers count only on its own support.
    assert entropy_settings(NTXentLoss(0.5), support="discrete") == {
        "support": "discrete",
        "temperature": 0.1,
    }
    with pytest.raises(ValueError, match="no entropy settings"):
        EntropyMeter.for_loss(Mine())
    assert EntropyMeter.for_loss(Mine(), support="sphere", kappa=3.0).kappa == 3.0
