"""The drop-in contract, one suite for every ER loss that subclasses a lightly loss.

Each ER loss takes its parent's constructor arguments (same names, order, kinds and
defaults) and ``forward`` signature, adds at most three ER keyword arguments
(``kappa``, ``entropy_weight``, ``estimator``) besides device switches, keeps the
parent's anti-collapse device by default, and relates to its parent at entropy
weight 0 as its docstring says. The old research keywords still work for one
release, with one DeprecationWarning, and give the value of the new object.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple, Type

import pytest
import torch
from lightly.loss import (
    DINOLoss,
    KoLeoLoss,
    MSNLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    PMSNLoss,
    SwaVLoss,
)
from torch import Tensor, nn

from lightly_er.experimental import EntropyEstimator
from lightly_er.loss import (
    ERDINOLoss,
    ERKoLeoLoss,
    ERMSNLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERPMSNLoss,
    ERSwaVLoss,
)
from lightly_er.monitoring import entropy_settings

ER_KEYWORDS = {"kappa", "entropy_weight", "estimator"}
DEVICE_SWITCHES = {"centering", "use_sinkhorn", "gather_distributed", "prediction"}

Inputs = Callable[[int], Tuple[List[Any], Dict[str, Any]]]


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(seed: int) -> Tuple[List[Any], Dict[str, Any]]:
    g = _g(seed)
    return [torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)], {}


def _dino(seed: int) -> Tuple[List[Any], Dict[str, Any]]:
    g = _g(seed)
    teacher = [torch.randn(4, 16, generator=g) for _ in range(2)]
    student = [torch.randn(4, 16, generator=g) for _ in range(3)]
    return [teacher, student], {"epoch": 0}


def _swav(seed: int) -> Tuple[List[Any], Dict[str, Any]]:
    g = _g(seed)
    high = [torch.randn(8, 12, generator=g) for _ in range(2)]
    low = [torch.randn(8, 12, generator=g) for _ in range(2)]
    return [high, low], {}


def _msn(seed: int) -> Tuple[List[Any], Dict[str, Any]]:
    g = _g(seed)
    anchors = torch.randn(8 * 2, 6, generator=g)
    targets = torch.randn(8, 6, generator=g)
    prototypes = torch.randn(10, 6, generator=g)
    return [anchors, targets, prototypes], {}


def _single(seed: int) -> Tuple[List[Any], Dict[str, Any]]:
    return [torch.randn(16, 6, generator=_g(seed))], {}


@dataclass
class Case:
    er: Type[nn.Module]
    parent: Type[nn.Module]
    inputs: Inputs
    # Keyword arguments for the check at entropy weight 0 (the ER weight's name,
    # and what else the comparison needs).
    zero_weight: Dict[str, Any]
    # "value": equal to the parent's; "gradient": the parent's gradient.
    relation: str
    parent_kwargs: Dict[str, Any]


CASES = {
    "ERNTXentLoss": Case(
        ERNTXentLoss, NTXentLoss, _pair, {"entropy_weight": 0.0}, "positive", {}
    ),
    "ERNegativeCosineSimilarity": Case(
        ERNegativeCosineSimilarity,
        NegativeCosineSimilarity,
        _pair,
        {"entropy_weight": 0.0},
        "gradient",
        {},
    ),
    "ERDINOLoss": Case(
        ERDINOLoss,
        DINOLoss,
        _dino,
        {"entropy_weight": 0.0},
        "value",
        {"output_dim": 16},
    ),
    "ERSwaVLoss": Case(
        ERSwaVLoss, SwaVLoss, _swav, {"entropy_weight": 0.0}, "value", {}
    ),
    "ERMSNLoss": Case(
        ERMSNLoss, MSNLoss, _msn, {"regularization_weight": 0.0}, "value", {}
    ),
    "ERPMSNLoss": Case(
        ERPMSNLoss, PMSNLoss, _msn, {"regularization_weight": 0.0}, "value", {}
    ),
    "ERKoLeoLoss": Case(
        ERKoLeoLoss, KoLeoLoss, _single, {"entropy_weight": 1.0}, "gradient", {}
    ),
}
NAMES = sorted(CASES)


# lightly < 1.6's MSNLoss still has the deprecated me_max_weight (an alias of
# regularization_weight, removed in lightly 1.6); ERMSNLoss follows 1.6.
_REMOVED_IN_LIGHTLY_1_6 = {"me_max_weight"}


def _parameters(fn: Callable[..., Any]) -> List[inspect.Parameter]:
    # Annotations aside: ours are strings (postponed evaluation), lightly's types.
    return [
        p.replace(annotation=inspect.Parameter.empty)
        for p in inspect.signature(fn).parameters.values()
        if p.name != "self" and p.name not in _REMOVED_IN_LIGHTLY_1_6
    ]


@pytest.mark.parametrize("name", NAMES)
def test_constructor_is_the_parents_plus_at_most_three_er_keywords(name: str) -> None:
    case = CASES[name]
    parent = _parameters(case.parent.__init__)
    ours = _parameters(case.er.__init__)
    assert ours[: len(parent)] == parent
    added = ours[len(parent) :]
    # The old research keywords arrive through **deprecated for one release.
    assert added[-1].kind == inspect.Parameter.VAR_KEYWORD
    named = added[:-1]
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in named)
    names = {p.name for p in named}
    assert names <= ER_KEYWORDS | DEVICE_SWITCHES, names
    assert len(names & ER_KEYWORDS) <= 3
    assert "estimator" in names
    assert inspect.signature(case.er.__init__).parameters["estimator"].default is None


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_the_parents(name: str) -> None:
    case = CASES[name]
    assert _parameters(case.er.forward) == _parameters(case.parent.forward)


@pytest.mark.parametrize("name", NAMES)
def test_the_parents_arguments_work_positionally(name: str) -> None:
    case = CASES[name]
    parent = _parameters(case.parent.__init__)
    values = [
        case.parent_kwargs.get(p.name, p.default)
        for p in parent
        if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    positional = case.er(*values)
    keyword = case.er(**dict(zip([p.name for p in parent], values, strict=False)))
    args, kwargs = case.inputs(0)
    torch.testing.assert_close(positional(*args, **kwargs), keyword(*args, **kwargs))


def _value(loss_fn: nn.Module, seed: int) -> Tensor:
    args, kwargs = CASES_BY_TYPE[type(loss_fn)].inputs(seed)
    return torch.as_tensor(loss_fn(*args, **kwargs)).reshape(())


CASES_BY_TYPE = {case.er: case for case in CASES.values()}
CASES_BY_TYPE.update({case.parent: case for case in CASES.values()})


def _gradients(loss_fn: nn.Module, seed: int) -> List[Tensor]:
    case = CASES_BY_TYPE[type(loss_fn)]
    args, kwargs = case.inputs(seed)
    leaves = [a.requires_grad_() for a in args if isinstance(a, Tensor)]
    torch.as_tensor(loss_fn(*args, **kwargs)).sum().backward()
    return [leaf.grad for leaf in leaves]  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_at_weight_zero_the_defaults_relate_to_the_parent(name: str) -> None:
    # The default keeps the parent's anti-collapse device (DINO's centering,
    # SwAV's Sinkhorn), so at entropy weight 0 the loss is the parent's.
    case = CASES[name]
    torch.manual_seed(0)
    ours = case.er(**case.parent_kwargs, **case.zero_weight)
    theirs = case.parent(**case.parent_kwargs, **_parent_weight(case))
    if case.relation == "value":
        for seed in (0, 1):  # twice: DINO's center moves alike
            torch.testing.assert_close(
                _value(ours, seed), _value(theirs, seed), rtol=1e-5, atol=1e-5
            )
    elif case.relation == "gradient":
        for a, b in zip(_gradients(ours, 0), _gradients(theirs, 0), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    else:  # NT-Xent's positive term: -mean_i cos(z0_i, z1_i) / temperature
        args, _ = case.inputs(0)
        x0, x1 = (a.clone().requires_grad_() for a in args)
        ours(x0, x1).backward()
        y0, y1 = (a.clone().requires_grad_() for a in args)
        temperature = theirs.temperature
        positive = -torch.cosine_similarity(y0, y1).mean() / temperature
        positive.backward()
        torch.testing.assert_close(x0.grad, y0.grad)
        torch.testing.assert_close(x1.grad, y1.grad)


def _parent_weight(case: Case) -> Dict[str, Any]:
    # MSN and PMSN carry the weight as the parent's own argument.
    return {k: v for k, v in case.zero_weight.items() if k == "regularization_weight"}


def test_the_paper_variants_are_one_argument() -> None:
    assert ERDINOLoss().centering is True
    assert ERDINOLoss(centering=False).centering is False
    assert ERSwaVLoss().use_sinkhorn is True
    assert ERSwaVLoss(use_sinkhorn=False).use_sinkhorn is False
    # the variant differs from the default where the device acts
    args, _ = _swav(3)
    default = ERSwaVLoss(entropy_weight=0.0)(*args)
    variant = ERSwaVLoss(entropy_weight=0.0, use_sinkhorn=False)(*args)
    assert abs(default.item() - variant.item()) > 1e-3


BAD = [
    ({"entropy_weight": -1.0}, ValueError, "entropy_weight"),
    ({"entropy_weight": "1"}, TypeError, "entropy_weight"),
    ({"estimator": "plugin-ish"}, ValueError, "estimator"),
    ({"estimator": 3}, TypeError, "estimator"),
    ({"not_an_argument": 1}, TypeError, "not_an_argument"),
    ({"gather_distributed": "yes"}, TypeError, "gather_distributed"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("kwargs", "error", "word"), BAD)
def test_bad_er_arguments_raise_naming_them(
    name: str, kwargs: Dict[str, Any], error: Type[Exception], word: str
) -> None:
    case = CASES[name]
    if "entropy_weight" in kwargs and "regularization_weight" in case.zero_weight:
        kwargs = {"regularization_weight": kwargs["entropy_weight"]}
        word = "regularization_weight"
    if name == "ERNTXentLoss" and "gather_distributed" in kwargs:
        word = "gather_distributed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(error, match=word):
            case.er(**case.parent_kwargs, **kwargs)


@pytest.mark.parametrize(
    "name", [n for n in NAMES if "kappa" in inspect.signature(CASES[n].er).parameters]
)
def test_a_bad_kappa_raises_naming_it(name: str) -> None:
    case = CASES[name]
    with pytest.raises(ValueError, match="kappa"):
        case.er(**case.parent_kwargs, kappa=0.0)
    with pytest.raises(TypeError, match="kappa"):
        case.er(**case.parent_kwargs, kappa="10")


@pytest.mark.parametrize("name", NAMES)
def test_each_loss_states_its_own_entropy_settings(name: str) -> None:
    case = CASES[name]
    ours = case.er(**case.parent_kwargs)
    settings = ours.entropy_settings()
    assert settings["support"] == ours.support
    assert settings["support"] in ("sphere", "discrete")
    # lightly's original is measured as its ER twin measures itself
    twin = entropy_settings(case.parent(**case.parent_kwargs))
    assert twin == entropy_settings(ours) == settings


DEPRECATED = {
    "ERNTXentLoss": {"estimator": "joe", "leave_one_out": True},
    "ERNegativeCosineSimilarity": {"estimator": "joe", "entropy_memory_size": 16},
    "ERKoLeoLoss": {"estimator": "plugin", "validate": "always"},
    "ERDINOLoss": {"entropy_memory_size": 8},
    "ERSwaVLoss": {"entropy_memory_size": 8},
    "ERMSNLoss": {"validate": "never"},
    "ERPMSNLoss": {"entropy_memory_size": 4},
}
_FIELDS = {"estimator": "name", "entropy_memory_size": "memory_size"}


@pytest.mark.parametrize("name", NAMES)
def test_old_keywords_warn_once_and_give_the_estimators_value(name: str) -> None:
    case = CASES[name]
    old = DEPRECATED[name]
    new = EntropyEstimator(**{_FIELDS.get(k, k): v for k, v in old.items()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy = case.er(**case.parent_kwargs, **old)
    deprecations = [w for w in caught if w.category is DeprecationWarning]
    assert len(deprecations) == 1
    for key in old:
        assert key in str(deprecations[0].message)
    assert legacy.estimator == new
    current = case.er(**case.parent_kwargs, estimator=new)
    torch.manual_seed(0)
    a = _value(legacy, 5)
    torch.manual_seed(0)
    b = _value(current, 5)
    torch.testing.assert_close(a, b)
    assert math.isfinite(a.item())


def test_the_discrete_losses_refuse_sphere_options() -> None:
    with pytest.raises(ValueError, match="leave_one_out"):
        ERDINOLoss(estimator=EntropyEstimator(leave_one_out=True))
    with pytest.raises(ValueError, match="name"):
        ERSwaVLoss(estimator=EntropyEstimator(name="knn"))
    with pytest.raises(ValueError, match="memory_size"):
        ERMSNLoss(estimator=EntropyEstimator(memory_size=(4, 2)))


def test_the_validate_modes_are_the_literals() -> None:
    from typing import get_args

    from lightly_er.experimental.estimator import VALIDATE_MODES, ValidateMode

    assert get_args(ValidateMode) == VALIDATE_MODES
