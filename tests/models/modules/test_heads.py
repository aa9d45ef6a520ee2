"""Tests of the ER heads: lightly's heads, bit for bit, plus an entropy meter."""

from __future__ import annotations

import copy
import inspect
import math
import pickle
from typing import Any, Dict, List, Tuple, Type, Union

import pytest
import torch
from lightly.models.modules.heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    SimCLRProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
)
from torch import Tensor, nn

import lightly_er
import lightly_er.models as er_models
from lightly_er.functional import discrete_entropy, sphere_entropy
from lightly_er.models.modules import (
    ERBYOLPredictionHead,
    ERBYOLProjectionHead,
    ERDINOProjectionHead,
    ERSimCLRProjectionHead,
    ERSwaVProjectionHead,
    ERSwaVPrototypes,
)
from lightly_er.monitoring import EntropyMeter

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated.*")

Output = Union[Tensor, List[Tensor]]

# (ER class, lightly parent, positional arguments, support); inputs have 16 features.
CASES: List[Tuple[Type[nn.Module], Type[nn.Module], Tuple[Any, ...], str]] = [
    (ERSimCLRProjectionHead, SimCLRProjectionHead, (16, 32, 8), "sphere"),
    (ERSimCLRProjectionHead, SimCLRProjectionHead, (16, 32, 8, 3, False), "sphere"),
    (ERSimCLRProjectionHead, SimCLRProjectionHead, (16, 32, 8, 1), "sphere"),
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
CLASSES = list(dict.fromkeys((er, parent, support) for er, parent, _, support in CASES))
CLASS_IDS = [er.__name__ for er, _, _ in CLASSES]


def _knob(support: str) -> str:
    return "kappa" if support == "sphere" else "temperature"


def _built(
    er_cls: Type[nn.Module], parent_cls: Type[nn.Module], args: Tuple[Any, ...]
) -> Tuple[nn.Module, nn.Module]:
    """The parent and the ER head, each built right after seeding with 0."""
    torch.manual_seed(0)
    parent = parent_cls(*args)
    torch.manual_seed(0)
    head = er_cls(*args)
    return parent, head


def _as_list(out: Output) -> List[Tensor]:
    return list(out) if isinstance(out, list) else [out]


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert state_a[key].dtype == state_b[key].dtype, key
        assert torch.equal(state_a[key], state_b[key]), key


@pytest.mark.parametrize("er_cls, parent_cls, support", CLASSES, ids=CLASS_IDS)
def test_signature_is_the_parents_plus_one_keyword(
    er_cls: Type[nn.Module], parent_cls: Type[nn.Module], support: str
) -> None:
    assert issubclass(er_cls, parent_cls)
    ours = list(inspect.signature(er_cls.__init__).parameters.values())
    theirs = list(inspect.signature(parent_cls.__init__).parameters.values())
    assert [(p.name, p.default, p.kind) for p in ours[:-1]] == [
        (p.name, p.default, p.kind) for p in theirs
    ]
    extra = ours[-1]
    assert (extra.name, extra.default, extra.kind) == (
        _knob(support),
        None,
        inspect.Parameter.KEYWORD_ONLY,
    )


@pytest.mark.parametrize("er_cls, parent_cls, support", CLASSES, ids=CLASS_IDS)
def test_forward_is_inherited(
    er_cls: Type[nn.Module], parent_cls: Type[nn.Module], support: str
) -> None:
    assert "forward" not in vars(er_cls)
    assert er_cls.forward is parent_cls.forward


@pytest.mark.parametrize("er_cls, parent_cls, args, support", CASES, ids=IDS)
def test_same_seed_gives_the_same_state(
    er_cls: Type[nn.Module],
    parent_cls: Type[nn.Module],
    args: Tuple[Any, ...],
    support: str,
) -> None:
    parent, head = _built(er_cls, parent_cls, args)
    _assert_same_state(parent, head)
    # The meter is a plain attribute: no parameters, buffers or submodules.
    assert [name for name, _ in head.named_modules()] == [
        name for name, _ in parent.named_modules()
    ]
    assert sum(p.numel() for p in head.parameters()) == sum(
        p.numel() for p in parent.parameters()
    )
    # Weights move between the two classes in both directions, strictly.
    parent.load_state_dict(head.state_dict())
    head.load_state_dict(parent.state_dict())


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("er_cls, parent_cls, args, support", CASES, ids=IDS)
def test_output_is_bitwise_the_parents(
    er_cls: Type[nn.Module],
    parent_cls: Type[nn.Module],
    args: Tuple[Any, ...],
    support: str,
    training: bool,
) -> None:
    parent, head = _built(er_cls, parent_cls, args)
    parent.train(training)
    head.train(training)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # batch-norm running statistics move identically
        x = 3.0 * torch.randn(12, 16, generator=g) + 1.0
        expected, got = parent(x), head(x)
        assert type(got) is type(expected)
        expected_list, got_list = _as_list(expected), _as_list(got)
        assert len(got_list) == len(expected_list)
        for e, o in zip(expected_list, got_list, strict=True):
            assert o.dtype == e.dtype and o.shape == e.shape
            assert torch.equal(o, e)
        if support == "sphere":
            # Not L2-normalized: the raw output of the parent.
            norms = got_list[0].norm(dim=1)
            assert not torch.allclose(norms, torch.ones_like(norms))
    _assert_same_state(parent, head)


@pytest.mark.parametrize("er_cls, parent_cls, args, support", CASES, ids=IDS)
def test_gradients_are_bitwise_the_parents(
    er_cls: Type[nn.Module],
    parent_cls: Type[nn.Module],
    args: Tuple[Any, ...],
    support: str,
) -> None:
    parent, head = _built(er_cls, parent_cls, args)
    x = torch.randn(12, 16, generator=torch.Generator().manual_seed(2))
    for module in (parent, head):
        out = _as_list(module(x))
        sum((o * torch.linspace(-1.0, 1.0, o.shape[1])).sum() for o in out).backward()  # type: ignore[union-attr]
    for (name, a), (_, b) in zip(
        parent.named_parameters(), head.named_parameters(), strict=True
    ):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad), name  # type: ignore[arg-type]


@pytest.mark.parametrize("er_cls, parent_cls, args, support", CASES, ids=IDS)
def test_entropy_meter_defaults(
    er_cls: Type[nn.Module],
    parent_cls: Type[nn.Module],
    args: Tuple[Any, ...],
    support: str,
) -> None:
    head = er_cls(*args)
    meter = head.entropy_meter
    assert isinstance(meter, EntropyMeter)
    assert meter.support == support
    assert (meter.kappa, meter.temperature) == (None, None)
    assert meter.effective_kappa == 10.0 and meter.effective_temperature == 0.1
    assert meter.estimator == "plugin" and meter.inputs == "auto"
    assert meter.num_updates == 0
    assert "entropy_meter" not in dict(head.named_children())


@pytest.mark.parametrize("er_cls, parent_cls, support", CLASSES, ids=CLASS_IDS)
def test_entropy_meter_takes_the_keyword(
    er_cls: Type[nn.Module], parent_cls: Type[nn.Module], support: str
) -> None:
    args = (16, 32) if er_cls is ERSwaVPrototypes else (16, 32, 8)
    value = 3.0 if support == "sphere" else 0.25
    head = er_cls(*args, **{_knob(support): value})
    meter = head.entropy_meter
    assert isinstance(meter, EntropyMeter)
    assert getattr(meter, _knob(support)) == value
    if support == "sphere":
        assert meter.effective_kappa == 3.0 and meter.temperature is None
    else:
        assert meter.effective_temperature == 0.25 and meter.kappa is None
    # The other knob is not accepted.
    other = "temperature" if support == "sphere" else "kappa"
    with pytest.raises(TypeError, match=other):
        er_cls(*args, **{other: 1.0})
    with pytest.raises(ValueError, match=_knob(support)):
        er_cls(*args, **{_knob(support): 0.0})
    with pytest.raises(TypeError, match="meter_every_n"):
        er_cls(*args, meter_every_n=1)


def test_the_forward_pass_does_not_touch_the_meter() -> None:
    head = ERSimCLRProjectionHead(16, 32, 8)
    head.train()
    head(torch.randn(12, 16))
    assert head.entropy_meter.num_updates == 0 and head.entropy_meter.latest == {}


def test_sphere_meter_measures_the_output_at_kappa() -> None:
    torch.manual_seed(0)
    head = ERBYOLProjectionHead(16, 32, 8, kappa=3.0)
    z = head(torch.randn(20, 16)).detach()
    metrics = head.entropy_meter.update(z)
    assert metrics is not None
    unit = torch.nn.functional.normalize(z.double(), dim=1)
    expected = sphere_entropy(unit, 3.0).item()
    assert metrics["entropy"] == pytest.approx(expected, rel=1e-5)
    at_ten = sphere_entropy(unit, 10.0).item()
    assert abs(metrics["entropy"] - at_ten) > 0.5


def test_discrete_meters_measure_the_softmax_at_their_temperature() -> None:
    torch.manual_seed(0)
    head = ERDINOProjectionHead(16, 32, 8, 64, temperature=0.2)
    scores = head(torch.randn(20, 16)).detach()
    metrics = head.entropy_meter.update(scores)
    assert metrics is not None
    p = torch.softmax(scores.double() / 0.2, dim=1)
    assert metrics["entropy"] == pytest.approx(discrete_entropy(p).item(), rel=1e-5)
    assert metrics["normalized_entropy"] == pytest.approx(
        discrete_entropy(p).item() / math.log(64), rel=1e-5
    )
    prototypes = ERSwaVPrototypes(16, [32, 8])
    first, _ = prototypes(torch.randn(20, 16))
    metrics = prototypes.entropy_meter.update(first.detach())
    p = torch.softmax(first.detach().double() / 0.1, dim=1)
    assert metrics is not None
    assert metrics["entropy"] == pytest.approx(discrete_entropy(p).item(), rel=1e-5)


def test_swav_prototypes_keep_the_step_argument() -> None:
    torch.manual_seed(0)
    parent = SwaVPrototypes(16, 32, n_steps_frozen_prototypes=5)
    torch.manual_seed(0)
    prototypes = ERSwaVPrototypes(16, 32, n_steps_frozen_prototypes=5)
    x = torch.randn(4, 16)
    with pytest.raises(ValueError, match="step"):
        prototypes(x)
    assert torch.equal(prototypes(x, step=2), parent(x, step=2))
    assert not any(p.requires_grad for p in prototypes.parameters())
    prototypes(x, 6)
    assert all(p.requires_grad for p in prototypes.parameters())


def test_copies_have_their_own_meter() -> None:
    head = ERBYOLProjectionHead(16, 32, 8, kappa=4.0)
    momentum = copy.deepcopy(head)  # as BYOL builds its momentum branch
    assert momentum.entropy_meter is not head.entropy_meter
    momentum.entropy_meter.update(momentum(torch.randn(6, 16)).detach())
    assert (momentum.entropy_meter.num_updates, head.entropy_meter.num_updates) == (
        1,
        0,
    )
    restored = pickle.loads(pickle.dumps(momentum))
    assert restored.entropy_meter.latest == momentum.entropy_meter.latest
    assert restored.entropy_meter.kappa == 4.0
    _assert_same_state(restored, momentum)


def test_exported_from_the_packages() -> None:
    names = {
        "ERBYOLPredictionHead",
        "ERBYOLProjectionHead",
        "ERDINOProjectionHead",
        "ERSimCLRProjectionHead",
        "ERSwaVProjectionHead",
        "ERSwaVPrototypes",
    }
    assert set(er_models.modules.__all__) == names
    for name in names:
        assert getattr(er_models, name) is getattr(er_models.modules, name)
        assert getattr(lightly_er, name) is getattr(er_models.modules, name)


def test_every_er_head_is_tested() -> None:
    tested: Dict[str, int] = {}
    for er_cls, _, _, _ in CASES:
        tested[er_cls.__name__] = tested.get(er_cls.__name__, 0) + 1
    assert set(tested) == set(er_models.modules.__all__)
