"""Tests of the ER heads in lightly_er.models.modules.heads against lightly's heads."""

from __future__ import annotations

import copy
import inspect
import pickle
from pathlib import Path
from typing import Any, List, Tuple, Type, Union

import pytest
import torch
from lightly.loss import NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules.heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    SimCLRProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
)
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor, nn
from torch.nn.functional import normalize
from torch.utils.data import DataLoader, TensorDataset

import lightly_er.models as er_models
from lightly_er.functional import discrete_entropy
from lightly_er.models.modules import (
    ERBYOLPredictionHead,
    ERBYOLProjectionHead,
    ERDINOProjectionHead,
    ERSimCLRProjectionHead,
    ERSwaVProjectionHead,
    ERSwaVPrototypes,
)
from lightly_er.monitoring import EntropyMeter, EntropyMonitor

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*weight_norm.*is deprecated.*",
    "ignore:.*does not have many workers.*",
    "ignore:.*number of training batches.*",
)

# (ER class, lightly parent, constructor arguments, support); inputs have 16 features.
CASES: List[Tuple[Type[nn.Module], Type[nn.Module], Tuple[Any, ...], str]] = [
    (ERSimCLRProjectionHead, SimCLRProjectionHead, (16, 32, 8), "sphere"),
    (ERSimCLRProjectionHead, SimCLRProjectionHead, (16, 32, 8, 3, False), "sphere"),
    (ERBYOLProjectionHead, BYOLProjectionHead, (16, 32, 8), "sphere"),
    (ERBYOLPredictionHead, BYOLPredictionHead, (16, 32, 16), "sphere"),
    (ERDINOProjectionHead, DINOProjectionHead, (16, 32, 8, 64), "discrete"),
    (
        ERDINOProjectionHead,
        DINOProjectionHead,
        (16, 32, 8, 64, True, 1, False),
        "discrete",
    ),
    (ERSwaVProjectionHead, SwaVProjectionHead, (16, 32, 8), "sphere"),
    (ERSwaVPrototypes, SwaVPrototypes, (16, 32), "discrete"),
    (ERSwaVPrototypes, SwaVPrototypes, (16, [32, 8]), "discrete"),
]
IDS = [f"{case[0].__name__}-{i}" for i, case in enumerate(CASES)]
PAIRS = list(dict.fromkeys((er, parent, support) for er, parent, _, support in CASES))


def _first(out: Union[Tensor, List[Tensor]]) -> Tensor:
    return out if isinstance(out, Tensor) else out[0]


def _pair(
    er_cls: Type[nn.Module], parent_cls: Type[nn.Module], args: Tuple[Any, ...]
) -> Tuple[nn.Module, nn.Module]:
    """A lightly head and an ER head with the same weights."""
    torch.manual_seed(0)
    parent = parent_cls(*args)
    head = er_cls(*args, meter_every_n=1)
    head.load_state_dict(parent.state_dict())  # strict: the same parameters
    return parent, head


@pytest.mark.parametrize("er_cls, parent_cls, support", PAIRS)
def test_subclass_keeps_the_parent_signature(
    er_cls: Type[nn.Module], parent_cls: Type[nn.Module], support: str
) -> None:
    assert issubclass(er_cls, parent_cls)
    er_params = list(inspect.signature(er_cls.__init__).parameters.values())
    parent_params = list(inspect.signature(parent_cls.__init__).parameters.values())
    n = len(parent_params)
    assert [(p.name, p.default, p.kind) for p in er_params[:n]] == [
        (p.name, p.default, p.kind) for p in parent_params
    ]
    extra = {p.name: p.default for p in er_params[n:]}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in er_params[n:])
    knob = "kappa" if support == "sphere" else "temperature"
    assert extra == {knob: 10.0 if support == "sphere" else 0.1, "meter_every_n": 50}
    assert list(inspect.signature(er_cls.forward).parameters) == list(
        inspect.signature(parent_cls.forward).parameters
    )


@pytest.mark.parametrize("er_cls, parent_cls, args, support", CASES, ids=IDS)
@pytest.mark.parametrize("training", [True, False])
def test_same_output_as_parent(
    er_cls: Type[nn.Module],
    parent_cls: Type[nn.Module],
    args: Tuple[Any, ...],
    support: str,
    training: bool,
) -> None:
    parent, head = _pair(er_cls, parent_cls, args)
    assert isinstance(head, parent_cls)
    assert head.state_dict().keys() == parent.state_dict().keys()
    parent.train(training)
    head.train(training)
    x = torch.randn(12, 16)
    expected, out = parent(x), head(x)
    if isinstance(expected, list):
        assert isinstance(out, list) and len(out) == len(expected)
    else:
        expected, out = [expected], [out]
    for e, o in zip(expected, out, strict=True):
        if support == "sphere":
            torch.testing.assert_close(o, normalize(e, dim=1), rtol=0, atol=1e-6)
            torch.testing.assert_close(o.norm(dim=1), torch.ones(12))
        else:
            assert torch.equal(o, e)


@pytest.mark.parametrize("er_cls, parent_cls, args, support", CASES, ids=IDS)
def test_gradients_match_parent(
    er_cls: Type[nn.Module],
    parent_cls: Type[nn.Module],
    args: Tuple[Any, ...],
    support: str,
) -> None:
    parent, head = _pair(er_cls, parent_cls, args)
    x = torch.randn(12, 16)
    target = torch.randn(12, _first(parent(x)).shape[1])

    def loss(module: nn.Module, normalise: bool) -> Tensor:
        module.zero_grad()
        out = _first(module(x))
        out = normalize(out, dim=1) if normalise else out
        value = (out * target).sum()
        value.backward()
        return value.detach()

    reference = loss(parent, normalise=support == "sphere")
    value = loss(head, normalise=False)
    assert head.entropy_meter.num_updates == 1  # the meter ran
    torch.testing.assert_close(value, reference)
    for p_parent, p_head in zip(parent.parameters(), head.parameters(), strict=True):
        if p_parent.grad is None:
            assert p_head.grad is None
        else:
            torch.testing.assert_close(p_head.grad, p_parent.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("er_cls, parent_cls, args, support", CASES, ids=IDS)
def test_meter_runs_in_training_on_every_nth_call(
    er_cls: Type[nn.Module],
    parent_cls: Type[nn.Module],
    args: Tuple[Any, ...],
    support: str,
) -> None:
    torch.manual_seed(0)
    head = er_cls(*args, meter_every_n=3)
    meter = head.entropy_meter
    assert isinstance(meter, EntropyMeter) and meter.support == support
    assert meter.every_n == 3
    head.eval()
    for _ in range(4):
        head(torch.randn(10, 16))
    assert (meter.num_calls, meter.num_updates) == (0, 0)
    head.train()
    outputs = [_first(head(torch.randn(10, 16))) for _ in range(7)]
    assert (meter.num_calls, meter.num_updates) == (7, 3)
    reference = EntropyMeter(support).compute(outputs[6])
    assert reference is not None
    assert meter.latest == pytest.approx(reference, rel=1e-6)


def test_discrete_meter_measures_the_softmax_at_its_temperature() -> None:
    torch.manual_seed(0)
    head = ERDINOProjectionHead(16, 32, 8, 64, temperature=0.2, meter_every_n=1)
    scores = head(torch.randn(20, 16))
    p = torch.softmax(scores.detach() / 0.2, dim=1)
    assert head.entropy_meter.latest["entropy"] == pytest.approx(
        discrete_entropy(p).item(), rel=1e-6
    )
    prototypes = ERSwaVPrototypes(16, [32, 8], meter_every_n=1)
    first, _ = prototypes(torch.randn(20, 16))
    p = torch.softmax(first.detach() / 0.1, dim=1)
    assert prototypes.entropy_meter.latest["entropy"] == pytest.approx(
        discrete_entropy(p).item(), rel=1e-6
    )


def test_sphere_meter_uses_kappa() -> None:
    head = ERBYOLProjectionHead(16, 32, 8, kappa=3.0, meter_every_n=1)
    assert head.entropy_meter.kappa == 3.0
    z = head(torch.randn(20, 16))
    reference = EntropyMeter("sphere", kappa=3.0).compute(z)
    assert head.entropy_meter.latest == reference
    assert EntropyMeter("sphere", kappa=10.0).compute(z) != reference


def test_bad_meter_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="every_n"):
        ERSimCLRProjectionHead(16, 32, 8, meter_every_n=0)
    with pytest.raises(ValueError, match="kappa"):
        ERBYOLPredictionHead(16, 32, 8, kappa=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        ERSwaVPrototypes(16, 32, temperature=0.0)


def test_swav_prototypes_keep_the_step_argument() -> None:
    prototypes = ERSwaVPrototypes(16, 32, n_steps_frozen_prototypes=5)
    x = torch.randn(4, 16)
    with pytest.raises(ValueError, match="step"):
        prototypes(x)
    prototypes(x, step=2)
    assert not any(p.requires_grad for p in prototypes.parameters())
    prototypes(x, 6)
    assert all(p.requires_grad for p in prototypes.parameters())


def test_lightly_losses_see_no_difference() -> None:
    parent, head = _pair(ERSimCLRProjectionHead, SimCLRProjectionHead, (16, 32, 8))
    x0, x1 = torch.randn(12, 16), torch.randn(12, 16)
    criterion = NTXentLoss(temperature=0.5)
    torch.testing.assert_close(
        criterion(head(x0), head(x1)), criterion(parent(x0), parent(x1))
    )
    predictor = BYOLPredictionHead(16, 32, 8)
    er_predictor = ERBYOLPredictionHead(16, 32, 8)
    er_predictor.load_state_dict(predictor.state_dict())
    target = torch.randn(12, 8)
    cosine = NegativeCosineSimilarity()
    torch.testing.assert_close(
        cosine(er_predictor(x0), target), cosine(predictor(x0), target)
    )


def test_copies_have_their_own_meter() -> None:
    head = ERBYOLProjectionHead(16, 32, 8, meter_every_n=1)
    momentum = copy.deepcopy(head)  # as BYOL builds its momentum branch
    momentum(torch.randn(6, 16))
    assert (momentum.entropy_meter.num_updates, head.entropy_meter.num_updates) == (
        1,
        0,
    )
    restored = pickle.loads(pickle.dumps(momentum))
    assert restored.entropy_meter.latest == momentum.entropy_meter.latest


def test_exported_from_the_models_package() -> None:
    for name in er_models.modules.__all__:
        assert getattr(er_models, name) is getattr(er_models.modules, name)
    assert set(er_models.modules.__all__) == {
        "ERBYOLPredictionHead",
        "ERBYOLProjectionHead",
        "ERDINOProjectionHead",
        "ERSimCLRProjectionHead",
        "ERSwaVProjectionHead",
        "ERSwaVPrototypes",
    }


class _BYOLER(LightningModule):
    """A module with two ER heads (and a momentum copy) and a plain linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(16, 16)
        self.projection_head = ERBYOLProjectionHead(16, 32, 8, meter_every_n=2)
        self.prediction_head = ERBYOLPredictionHead(8, 32, 8, meter_every_n=2)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        self.criterion = NegativeCosineSimilarity()

    def training_step(self, batch: List[Tensor], batch_idx: int) -> Tensor:
        x0, x1 = batch
        p0 = self.prediction_head(self.projection_head(self.backbone(x0)))
        with torch.no_grad():
            z1 = self.projection_head_momentum(self.backbone(x1))
        loss: Tensor = self.criterion(p0, z1)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_monitor_picks_up_er_heads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _BYOLER()
    x = torch.randn(64, 16)
    loader = DataLoader(TensorDataset(x, x + 0.1 * torch.randn(64, 16)), batch_size=16)
    monitor = EntropyMonitor()  # modules=None
    Trainer(
        accelerator="cpu",
        max_steps=4,
        logger=False,
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    ).fit(model, loader)
    assert sorted(monitor.meters) == [
        "prediction_head",
        "projection_head",
        "projection_head_momentum",
    ]
    # One call per head and step, a measurement every second call: steps 0 and 2.
    for name in monitor.meters:
        steps = sorted({s for s, m, _, _ in monitor.history if m == name})
        assert steps == [0, 2]
        last = {k: v for s, m, k, v in monitor.history if m == name and s == 2}
        assert last == getattr(model, name).entropy_meter.latest
    # With no logger the files go to the trainer's root directory.
    assert monitor.csv_path == tmp_path / EntropyMonitor.CSV_NAME
    assert monitor.csv_path.stat().st_size > 0
