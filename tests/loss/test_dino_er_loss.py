"""Tests of ERDINOLoss (DINO-ER)."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, List, Optional, Tuple

import numpy as np
import pytest
import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import update_momentum
from torch import Tensor, nn

from lightly_er.loss._base import ERComponents
from lightly_er.loss.dino_er_loss import ERDINOLoss
from tests.loss.dist_harness import run_distributed_and_single

# lightly's DINOProjectionHead uses the deprecated torch.nn.utils.weight_norm
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


def _hand_dino(
    teacher: List[Tensor],
    student: List[Tensor],
    teacher_temp: float,
    student_temp: float,
    entropy_weight: float,
    center: Optional[np.ndarray] = None,
) -> Tuple[float, float, float]:
    """(loss, entropy, reconstruction) pair by pair, in numpy float64."""
    t_np = [t.detach().double().numpy() for t in teacher]
    s_np = [s.detach().double().numpy() for s in student]
    if center is not None:
        t_np = [t - center for t in t_np]
    p_teacher = [np.exp(_log_softmax(t / teacher_temp)) for t in t_np]
    log_q = [_log_softmax(s / student_temp) for s in s_np]
    pairs = [
        (p_teacher[t] * log_q[s]).sum(axis=1).mean()
        for t in range(len(t_np))
        for s in range(len(s_np))
        if t != s
    ]
    reconstruction = float(np.mean(pairs))
    # the student's global crops are the first len(teacher) student views
    q_global = np.concatenate([np.exp(lq) for lq in log_q[: len(t_np)]])
    mean = q_global.mean(axis=0)
    entropy = float(-(mean * np.log(mean)).sum())
    return -(entropy_weight * entropy + reconstruction), entropy, reconstruction


def _views(
    n_views: int, batch: int, dim: int, seed: int, dtype: torch.dtype = torch.float32
) -> List[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=g, dtype=dtype) for _ in range(n_views)]


def test_is_a_dino_loss() -> None:
    loss_fn = ERDINOLoss(8, centering=False)
    assert isinstance(loss_fn, DINOLoss)
    assert isinstance(loss_fn, nn.Module)


def _parameters(fn: Any) -> List[Tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()
    ]


@pytest.mark.parametrize("centering", [False, True])
def test_forward_matches_hand_computation(centering: bool) -> None:
    teacher, student = _views(2, 4, 5, seed=0), _views(4, 4, 5, seed=1)
    loss_fn = ERDINOLoss(
        5, teacher_temp=0.07, student_temp=0.2, entropy_weight=0.7, centering=centering
    )
    center = 0.5 * torch.randn(1, 1, 5, generator=torch.Generator().manual_seed(2))
    loss_fn.center.copy_(center)
    expected = _hand_dino(
        teacher, student, 0.07, 0.2, 0.7, center[0].numpy() if centering else None
    )
    components = loss_fn.forward_components(teacher, student)
    loss_fn.center.copy_(center)
    loss = loss_fn(teacher, student)
    assert isinstance(components, ERComponents)
    assert loss.shape == ()
    torch.testing.assert_close(loss, components.loss)
    actual = (loss.item(), components.entropy.item(), components.reconstruction.item())
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    # the terms have the documented signs and ranges
    assert 0 < components.entropy.item() <= math.log(5)
    assert components.reconstruction.item() < 0


def test_last_components_detached() -> None:
    teacher = _views(2, 4, 5, seed=0)
    student = [s.requires_grad_() for s in _views(3, 4, 5, seed=1)]
    loss_fn = ERDINOLoss(5, centering=False)
    assert loss_fn.last_components is None
    components = loss_fn.forward_components(teacher, student)
    last = loss_fn.last_components
    assert last is not None
    assert components.loss.requires_grad
    assert not any(t.requires_grad for t in last)
    for recorded, returned in zip(last, components, strict=True):
        torch.testing.assert_close(recorded, returned.detach())


def test_teacher_gets_no_gradient() -> None:
    teacher = [t.requires_grad_() for t in _views(2, 4, 5, seed=0)]
    student = [s.requires_grad_() for s in _views(2, 4, 5, seed=1)]
    ERDINOLoss(5, centering=True)(teacher, student).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)


def test_multi_crop_shapes() -> None:
    # as in DINOLoss's docstring: the teacher sees the 2 global crops, the student
    # all crops, 2 global and 6 local
    teacher = _views(2, 8, 32, seed=0)
    student = [s.requires_grad_() for s in _views(8, 8, 32, seed=1)]
    loss_fn = ERDINOLoss(32, entropy_weight=0.5, centering=False)
    loss = loss_fn(teacher, student, epoch=3)
    assert loss.shape == ()
    assert torch.isfinite(loss)
    loss.backward()
    expected = _hand_dino(
        teacher, student, float(loss_fn.teacher_temp_schedule[3]), 0.1, 0.5
    )
    np.testing.assert_allclose(loss.item(), expected[0], rtol=1e-5)
    # only the global crops enter the entropy: the local crops' gradient comes from
    # the reconstruction alone, so changing a local crop's mean prediction to the
    # uniform distribution leaves the entropy as it is
    assert loss_fn.last_components is not None
    entropy = loss_fn.last_components.entropy
    loss_fn(teacher, student[:2] + [torch.zeros(8, 32)] * 6)
    torch.testing.assert_close(loss_fn.last_components.entropy, entropy)
    # fewer student views than teacher views: the pairs t != s still exist
    one_student = ERDINOLoss(32, centering=False)(teacher, student[:1])
    np.testing.assert_allclose(
        one_student.item(), _hand_dino(teacher, student[:1], 0.04, 0.1, 1.0)[0], 1e-5
    )


def test_single_view_raises() -> None:
    with pytest.raises(ValueError, match="two views"):
        ERDINOLoss(5, centering=False)(_views(1, 4, 5, 0), _views(1, 4, 5, 1))


def _dino_model(k: int) -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), DINOProjectionHead(32, 64, 16, k))


def test_gradient_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    student, teacher = _dino_model(32), _dino_model(32)
    teacher.load_state_dict(student.state_dict())
    x = torch.randn(8, 16)
    views = [x + 0.1 * torch.randn_like(x) for _ in range(4)]
    with torch.no_grad():
        teacher_out = [teacher(v) for v in views[:2]]
    ERDINOLoss(32, centering=False)(teacher_out, [student(v) for v in views]).backward()
    trainable = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    assert len(trainable) >= 8
    for name, param in trainable:
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def _clusters(seed: int) -> Tuple[Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(8, 16, generator=g)
    points = centers.repeat_interleave(8, dim=0) + 0.3 * torch.randn(
        64, 16, generator=g
    )
    return points, g


def _normalised_entropy(logits: Tensor, temperature: float) -> float:
    mean = torch.softmax(logits / temperature, dim=1).mean(dim=0)
    return float(-(mean * mean.log()).sum() / math.log(logits.shape[1]))


def test_training_decreases_loss_and_keeps_entropy_high() -> None:
    # 64 points from 8 clusters in R^16, two noisy views per step, an EMA teacher.
    # Measured over seeds 0-4: the mean loss of the last 5 steps is 0.75-1.18 nats
    # below that of the first 5, and the normalized entropy of the student's
    # marginal on the clean points ends at 0.90-0.92. With entropy_weight=0 (no
    # centering, no entropy) it ends at 0.51-0.61, about log 8 / log 32 = 0.6, one
    # prototype per cluster. 0.8 (at least 32^0.8 = 16 prototypes in effective use)
    # separates the two.
    torch.manual_seed(0)
    points, g = _clusters(0)
    student, teacher = _dino_model(32), _dino_model(32)
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    loss_fn = ERDINOLoss(32, warmup_teacher_temp_epochs=0, centering=False)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(50):
        views = [points + 0.1 * torch.randn(64, 16, generator=g) for _ in range(2)]
        loss = loss_fn([teacher(v) for v in views], [student(v) for v in views])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        update_momentum(student, teacher, m=0.9)
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    with torch.no_grad():
        entropy = _normalised_entropy(student(points), loss_fn.student_temp)
    assert entropy > 0.8


def test_collapse_is_penalised() -> None:
    # 8 samples, 8 prototypes, teacher and student agree in both cases: either every
    # sample has its own prototype, or all samples share prototype 0.
    spread = [10.0 * torch.eye(8)] * 2
    collapsed = [10.0 * torch.eye(8)[[0] * 8]] * 2
    loss_fn = ERDINOLoss(8, centering=False)
    spread_loss = loss_fn.forward_components(spread, spread)
    collapsed_loss = loss_fn.forward_components(collapsed, collapsed)
    torch.testing.assert_close(
        spread_loss.reconstruction, collapsed_loss.reconstruction
    )
    np.testing.assert_allclose(spread_loss.entropy.item(), math.log(8), rtol=1e-4)
    assert collapsed_loss.entropy.item() < 1e-3
    assert collapsed_loss.loss.item() > spread_loss.loss.item() + 0.99 * math.log(8)


def test_centering_path_equals_parent() -> None:
    # with centering and without the entropy term, DINO-ER is DINO, center included
    parent = DINOLoss(5, warmup_teacher_temp_epochs=4, center_momentum=0.5)
    er = ERDINOLoss(
        5,
        warmup_teacher_temp_epochs=4,
        center_momentum=0.5,
        centering=True,
        entropy_weight=0.0,
    )
    for step in range(4):
        teacher = [3 * t for t in _views(2, 4, 5, seed=step)]
        student = _views(3, 4, 5, seed=10 + step)
        torch.testing.assert_close(
            er(teacher, student, epoch=step),
            parent(teacher, student, epoch=step).reshape(()),
        )
        torch.testing.assert_close(er.center, parent.center)
    assert er.center.abs().sum() > 0
    # without centering the center is not used, hence not updated
    no_centering = ERDINOLoss(5, centering=False)
    no_centering(_views(2, 4, 5, seed=0), _views(2, 4, 5, seed=1))
    assert no_centering.center.abs().sum() == 0


@pytest.mark.parametrize(
    "teacher_temp, epoch",
    [(None, None), (None, 0), (None, 5), (None, 9), (None, 10), (None, 50), (0.07, 3)],
)
def test_teacher_temperature_schedule_matches_parent(
    teacher_temp: Optional[float], epoch: Optional[int]
) -> None:
    args: Any = dict(warmup_teacher_temp=0.02, teacher_temp=0.06)
    args["warmup_teacher_temp_epochs"] = 10
    parent = DINOLoss(5, **args)
    er = ERDINOLoss(5, **args, centering=True, entropy_weight=0.0)
    teacher, student = _views(2, 4, 5, seed=0), _views(2, 4, 5, seed=1)
    expected = parent(teacher, student, teacher_temp=teacher_temp, epoch=epoch)
    torch.testing.assert_close(
        er(teacher, student, teacher_temp=teacher_temp, epoch=epoch),
        expected.reshape(()),
    )
    if teacher_temp is not None:
        temperature = teacher_temp
    elif epoch is not None and epoch < 10:
        temperature = 0.02 + (0.06 - 0.02) * epoch / 9
    else:
        temperature = 0.06
    assert er.teacher_temperature(teacher_temp, epoch) == pytest.approx(temperature)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(output_dim=0), ValueError, "output_dim"),
        (dict(output_dim=2.5), TypeError, "output_dim"),
        (dict(warmup_teacher_temp=0.0), ValueError, "warmup_teacher_temp"),
        (dict(teacher_temp=-0.04), ValueError, "teacher_temp"),
        (dict(student_temp=0.0), ValueError, "student_temp"),
        (dict(student_temp=float("nan")), ValueError, "student_temp"),
        (dict(warmup_teacher_temp_epochs=-1), ValueError, "warmup_teacher_temp_epochs"),
        (dict(center_momentum=1.5), ValueError, "center_momentum"),
        (dict(center_mode="median"), ValueError, "center_mode"),
        (dict(entropy_weight=-1.0), ValueError, "entropy_weight"),
        (dict(entropy_weight="1"), TypeError, "entropy_weight"),
        (dict(centering="yes"), TypeError, "centering"),
    ],
)
def test_bad_arguments_raise(kwargs: Any, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        ERDINOLoss(**{"output_dim": 8, **kwargs})


def test_bad_inputs_raise() -> None:
    loss_fn = ERDINOLoss(5, centering=False)
    with pytest.raises(ValueError, match="student_out"):
        loss_fn(_views(2, 4, 5, 0), _views(2, 4, 6, 1))
    with pytest.raises(ValueError, match="teacher_out"):
        loss_fn([], _views(2, 4, 5, 1))
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(_views(2, 4, 5, 0), _views(2, 3, 5, 1))
    with pytest.raises(ValueError, match="epoch"):
        loss_fn(_views(2, 4, 5, 0), _views(2, 4, 5, 1), epoch=-1)
    with pytest.raises(ValueError, match="teacher_temp"):
        loss_fn(_views(2, 4, 5, 0), _views(2, 4, 5, 1), teacher_temp=0.0)


class _ZeroTeacherGrad(nn.Module):
    """Adds 0 * teacher_out, so that the harness finds zero (not None) gradients."""

    def __init__(self, loss_fn: ERDINOLoss) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def forward(self, teacher_out: List[Tensor], student_out: List[Tensor]) -> Tensor:
        zero = sum(0.0 * t.sum() for t in teacher_out)
        loss: Tensor = self.loss_fn(teacher_out, student_out) + zero
        return loss


def _wrapped_dino(gather_distributed: bool, **kwargs: Any) -> nn.Module:
    return _ZeroTeacherGrad(
        ERDINOLoss(6, gather_distributed=gather_distributed, **kwargs)
    )


def test_distributed_matches_single_process() -> None:
    teacher = _views(2, 8, 6, seed=0, dtype=torch.float64)
    student = _views(4, 8, 6, seed=1, dtype=torch.float64)
    factory = functools.partial(_wrapped_dino, entropy_weight=2.0)
    d_loss, s_loss, d_grads, s_grads = run_distributed_and_single(
        factory, [teacher, student]
    )
    torch.testing.assert_close(d_loss, s_loss, atol=1e-5, rtol=1e-5)
    assert len(d_grads) == len(s_grads) == 6
    for d_grad, s_grad in zip(d_grads, s_grads, strict=True):
        torch.testing.assert_close(d_grad, s_grad, atol=1e-5, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in s_grads[2:])


def test_gather_distributed_without_process_group_is_single_process() -> None:
    teacher, student = _views(2, 4, 5, seed=0), _views(3, 4, 5, seed=1)
    torch.testing.assert_close(
        ERDINOLoss(5, gather_distributed=True, centering=False)(teacher, student),
        ERDINOLoss(5, centering=False)(teacher, student),
    )


@pytest.mark.parametrize("centering", [False, True])
def test_bfloat16_autocast_stays_finite(centering: bool) -> None:
    torch.manual_seed(0)
    k = 65536
    student, teacher = nn.Linear(8, k), nn.Linear(8, k)
    teacher.load_state_dict(student.state_dict())
    x = torch.randn(4, 8)
    views = [x + 0.1 * torch.randn_like(x) for _ in range(2)]
    loss_fn = ERDINOLoss(k, centering=centering)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        student_out = [student(v) for v in views]
        with torch.no_grad():
            teacher_out = [teacher(v) for v in views]
        assert student_out[0].dtype == torch.bfloat16
        loss = loss_fn(teacher_out, student_out)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert student.weight.grad is not None
    assert torch.isfinite(student.weight.grad).all()
    assert loss_fn.last_components is not None
    assert 0 < loss_fn.last_components.entropy.item() <= math.log(k) + 1e-4
    # close to the same loss from the float32 outputs of the rounded logits
    reference = ERDINOLoss(k, centering=centering)(
        [t.float() for t in teacher_out], [s.detach().float() for s in student_out]
    )
    torch.testing.assert_close(loss.detach(), reference, rtol=1e-5, atol=1e-5)


def test_zero_entropy_weight_has_the_parents_gradient() -> None:
    """At lightly's defaults with centering and weight 0, the student's gradient is DINO's."""
    parent = DINOLoss(5)
    er = ERDINOLoss(5, centering=True, entropy_weight=0.0)
    teacher = [3 * t for t in _views(2, 4, 5, seed=0)]
    grads = []
    for loss_fn in (parent, er):
        student = [s.requires_grad_() for s in _views(3, 4, 5, seed=1)]
        loss_fn(teacher, student, epoch=2).sum().backward()
        grads.append(torch.cat([s.grad for s in student if s.grad is not None]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
