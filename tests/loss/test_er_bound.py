"""DINO-ER and SwAV-ER report a lower bound on I(target; other view) beside the surrogate.

Their entropy + reconstruction (the student's marginal entropy with the teacher ->
student cross-entropy) is the paper's training objective, not a bound: the
counter-example of issue 19 scores +1/2 log 256 with zero mutual information.
``last_bound`` = H(teacher marginal) + the same reconstruction is the Barber-Agakov
bound I(T; X') >= H(T) + E[log q(T | X')]; with a teacher that ignores its input it
is <= 0 for any student (Gibbs: the cross-entropy is at least the entropy).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from lightly_er.loss import (
    ERDINOLoss,
    ERLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)

K = N = 256
BIG = 1e4
TOLERANCE = 1e-5
"""nats: float32 rounding of sums of 256 terms of size log 256."""


def _counter_example() -> tuple[Tensor, Tensor]:
    """Teacher: prototype 0 for every input; student: 1/2 on 0, 1/2 on its own."""
    teacher = torch.full((N, K), -BIG)
    teacher[:, 0] = BIG
    student = torch.full((N, K), -BIG)
    student[:, 0] = 0.0
    own = torch.arange(N)
    own[0] = 1  # sample 0's own prototype cannot be the shared one
    student[torch.arange(N), own] = 0.0
    return teacher, student


def test_dino_er_counter_example_bound_is_not_positive() -> None:
    teacher, student = _counter_example()
    loss = ERDINOLoss(
        output_dim=K,
        warmup_teacher_temp=1.0,
        teacher_temp=1.0,
        student_temp=1.0,
        centering=False,
    )
    components = loss.forward_components([teacher, teacher], [student, student])
    # The surrogate: H(student marginal) - log 2, almost 1/2 log 256 (sample 0
    # shares its own prototype with sample 1).
    surrogate = (components.entropy + components.reconstruction).item()
    assert surrogate == pytest.approx(0.5 * math.log(256), abs=0.01)
    assert loss.last_bound is not None
    # I(T; X') = 0 for a constant teacher: H(T) = 0, reconstruction log 1/2.
    assert loss.last_bound.item() <= TOLERANCE
    assert loss.last_bound.item() == pytest.approx(-math.log(2), abs=TOLERANCE)
    assert not loss.last_bound.requires_grad


@pytest.mark.parametrize("seed", range(5))
def test_a_teacher_that_ignores_its_input_bounds_at_most_zero(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    row = torch.randn(1, 64, generator=g)
    teacher = [row.expand(32, 64).clone() for _ in range(2)]  # one distribution
    student = [3 * torch.randn(32, 64, generator=g) for _ in range(4)]
    dino = ERDINOLoss(output_dim=64, centering=False)
    dino.forward_components(teacher, student)
    assert dino.last_bound is not None and dino.last_bound.item() <= TOLERANCE
    # SwAV: codes of high-resolution crops that ignore the input.
    swav = ERSwaVLoss(use_sinkhorn=False)
    swav.forward_components(teacher, student)
    assert swav.last_bound is not None and swav.last_bound.item() <= TOLERANCE


def test_the_bound_sees_information_when_there_is_some() -> None:
    # A teacher sure of a different prototype for each input and a student that
    # reproduces it: I = log N, the bound approaches it.
    teacher = BIG * torch.eye(K)[:64]
    student = BIG * torch.eye(K)[:64]
    loss = ERDINOLoss(output_dim=K, teacher_temp=1.0, student_temp=1.0, centering=False)
    loss.forward_components([teacher, teacher], [student, student])
    assert loss.last_bound is not None
    assert loss.last_bound.item() == pytest.approx(math.log(64), abs=1e-4)


def test_centering_and_the_bound_use_the_targets_of_the_loss() -> None:
    # With centering the targets are softmax((t - c) / tau): the bound reads them.
    g = torch.Generator().manual_seed(7)
    teacher = [torch.randn(16, 32, generator=g) for _ in range(2)]
    student = [torch.randn(16, 32, generator=g) for _ in range(2)]
    loss = ERDINOLoss(output_dim=32, centering=True)
    loss.center.copy_(torch.randn(1, 1, 32, generator=g))
    center = loss.center.clone()
    components = loss.forward_components(teacher, student)
    p = torch.softmax((torch.stack(teacher) - center) / 0.04, dim=-1)
    mean = p.mean(dim=(0, 1))
    entropy = -(mean * mean.log()).sum()
    assert loss.last_bound is not None
    assert loss.last_bound.item() == pytest.approx(
        (entropy + components.reconstruction).item(), rel=1e-5, abs=1e-5
    )


@pytest.mark.parametrize("use_sinkhorn", [False, True])
def test_swav_bound_is_the_codes_entropy_plus_the_reconstruction(
    use_sinkhorn: bool,
) -> None:
    g = torch.Generator().manual_seed(8)
    high = [torch.randn(16, 24, generator=g) for _ in range(2)]
    low = [torch.randn(16, 24, generator=g) for _ in range(3)]
    loss = ERSwaVLoss(use_sinkhorn=use_sinkhorn)
    components = loss.forward_components(high, low)
    codes = torch.stack([loss._codes(out, None) for out in high])
    mean = codes.mean(dim=(0, 1))
    entropy = -(mean * mean.log()).sum()
    assert loss.last_bound is not None
    assert loss.last_bound.item() == pytest.approx(
        (entropy + components.reconstruction).item(), rel=1e-5, abs=1e-5
    )
    # Not the surrogate: the prediction's entropy differs from the codes'.
    assert abs(components.entropy.item() - entropy.item()) > 0.01


def test_components_still_unpack_into_three() -> None:
    teacher, student = _counter_example()
    loss = ERDINOLoss(output_dim=K, centering=False)
    value, entropy, reconstruction = loss.forward_components(
        [teacher, teacher], [student, student]
    )
    assert value.ndim == entropy.ndim == reconstruction.ndim == 0
    assert len(loss.last_components) == 3  # type: ignore[arg-type]


def test_losses_whose_er_is_not_a_surrogate_report_no_bound() -> None:
    x = torch.randn(8, 4)
    for loss in (ERNTXentLoss(), ERNegativeCosineSimilarity(), ERLoss("sphere")):
        loss(x, x + 0.1)
        assert loss.last_bound is None
    assert (
        ERDINOLoss(output_dim=4, centering=False).last_bound is None
    )  # before the first call
