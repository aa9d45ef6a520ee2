"""The ER losses under torch.compile(fullgraph=True), and their graph breaks.

aot_eager traces the whole forward and backward as torch.compile does, without
generating code (inductor would take minutes on this CPU): what is tested is that
the loss compiles as one graph and that the compiled loss has the eager value and
gradients.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import pytest
import torch
import torch._dynamo as dynamo
from lightly.loss import NTXentLoss
from torch import Tensor, nn

from lightly_er.experimental import EntropyEstimator
from lightly_er.loss import (
    ERDINOLoss,
    ERKoLeoLoss,
    ERLoss,
    ERMSNLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERPMSNLoss,
    ERSwaVLoss,
)

Case = Tuple[Callable[[], nn.Module], Callable[[], Tuple[List[Any], Dict[str, Any]]]]


def _two(n: int = 16, d: int = 32) -> Tuple[List[Any], Dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)], {}


def _dino() -> Tuple[List[Any], Dict[str, Any]]:
    g = torch.Generator().manual_seed(1)
    teacher = [torch.randn(8, 64, generator=g) for _ in range(2)]
    student = [torch.randn(8, 64, generator=g) for _ in range(4)]
    return [teacher, student], {"epoch": 3}


def _swav() -> Tuple[List[Any], Dict[str, Any]]:
    g = torch.Generator().manual_seed(2)
    return [[torch.randn(8, 64, generator=g) for _ in range(2)], []], {}


def _msn() -> Tuple[List[Any], Dict[str, Any]]:
    g = torch.Generator().manual_seed(3)
    anchors = torch.randn(16, 32, generator=g)
    return [
        anchors,
        torch.randn(8, 32, generator=g),
        torch.randn(12, 32, generator=g),
    ], {}


def _one(n: int = 16, d: int = 32) -> Tuple[List[Any], Dict[str, Any]]:
    return [torch.randn(n, d, generator=torch.Generator().manual_seed(4))], {}


CASES: Dict[str, Case] = {
    "ERNTXentLoss": (lambda: ERNTXentLoss(0.2), _two),
    "ERNegativeCosineSimilarity": (ERNegativeCosineSimilarity, _two),
    "ERLoss-sphere": (ERLoss, _two),
    "ERLoss-discrete": (lambda: ERLoss(support="discrete"), _two),
    "ERDINOLoss": (lambda: ERDINOLoss(output_dim=64, centering=False), _dino),
    "ERSwaVLoss": (ERSwaVLoss, _swav),
    "ERMSNLoss": (ERMSNLoss, _msn),
    "ERPMSNLoss": (ERPMSNLoss, _msn),
    "ERKoLeoLoss": (ERKoLeoLoss, _one),
    "ERNegativeCosineSimilarity-knn": (
        lambda: ERNegativeCosineSimilarity(estimator=EntropyEstimator(name="knn")),
        _two,
    ),
    "ERNegativeCosineSimilarity-renyi2": (
        lambda: ERNegativeCosineSimilarity(estimator=EntropyEstimator(name="renyi2")),
        _two,
    ),
    "ERLoss-logdet": (lambda: ERLoss(estimator=EntropyEstimator(name="logdet")), _two),
    "ERLoss-learned-kappa": (
        lambda: ERLoss(estimator=EntropyEstimator(learn_kappa=True)),
        _two,
    ),
}


NO_GRADIENT: Dict[str, Tuple[int, ...]] = {"ERMSNLoss": (1,), "ERPMSNLoss": (1,)}
"""Leaves (by position) that the loss takes without gradient."""


def _with_grad(args: List[Any]) -> Tuple[List[Any], List[Tensor]]:
    copied: List[Any] = []
    leaves: List[Tensor] = []
    for i, arg in enumerate(args):
        if isinstance(arg, Tensor):
            leaf = arg.clone().requires_grad_(True)
            copied.append(leaf)
            leaves.append(leaf)
        else:
            # A list of views: the teacher's (the first of two lists in DINO) has no
            # gradient; every other view does.
            teacher = i == 0 and len(args) == 2 and len(arg) == 2 and len(args[1]) > 2
            views = [v.clone().requires_grad_(not teacher) for v in arg]
            copied.append(views)
            if not teacher:
                leaves.extend(views)
    return copied, leaves


@pytest.mark.parametrize("name", sorted(CASES))
def test_fullgraph_compile_matches_eager(name: str) -> None:
    make_loss, make_inputs = CASES[name]
    args, kwargs = make_inputs()
    eager_args, eager_leaves = _with_grad(args)
    eager_loss = make_loss()
    eager = eager_loss(*eager_args, **kwargs)
    eager.backward()
    dynamo.reset()
    compiled_loss = make_loss()
    compiled = torch.compile(compiled_loss, fullgraph=True, backend="aot_eager")
    compiled_args, compiled_leaves = _with_grad(args)
    value = compiled(*compiled_args, **kwargs)
    value.backward()
    torch.testing.assert_close(value, eager, rtol=1e-6, atol=1e-6)
    assert eager_leaves and len(eager_leaves) == len(compiled_leaves)
    # MSN's targets, like DINO's teacher, get no gradient: eager and compiled alike.
    no_grad = NO_GRADIENT.get(name, ())
    for i, (expected, got) in enumerate(
        zip(eager_leaves, compiled_leaves, strict=True)
    ):
        if i in no_grad:
            assert expected.grad is None and got.grad is None
            continue
        assert expected.grad is not None and got.grad is not None
        torch.testing.assert_close(got.grad, expected.grad, rtol=1e-5, atol=1e-7)
    # The recorded terms are filled in by the compiled call too.
    assert compiled_loss.last_components is not None


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_graph_break(name: str) -> None:
    make_loss, make_inputs = CASES[name]
    args, kwargs = make_inputs()
    dynamo.reset()
    explanation = dynamo.explain(make_loss())(*_with_grad(args)[0], **kwargs)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_moco_breaks_only_where_lightlys_memory_bank_does() -> None:
    # lightly's MemoryBankModule reads its pointer with .item(): the parent breaks
    # the graph there as well; the ER loss adds no break of its own.
    (out0, out1), _ = _two(16, 32)
    counts = []
    for loss in (
        NTXentLoss(0.2, memory_bank_size=(64, 32)),
        ERNTXentLoss(0.2, memory_bank_size=(64, 32)),
    ):
        dynamo.reset()
        explanation = dynamo.explain(loss)(out0.clone().requires_grad_(True), out1)
        counts.append(explanation.graph_break_count)
        assert all(
            "memory_bank" in str(reason.user_stack[-1])
            or "ntx_ent_loss" in str(reason.user_stack[-1])
            for reason in explanation.break_reasons
        )
    parent, ours = counts
    assert ours == parent  # measured: 3 and 3
