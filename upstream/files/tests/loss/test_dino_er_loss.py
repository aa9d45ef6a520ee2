from typing import List, Tuple

import pytest
import torch
from torch import Tensor

from lightly.loss import DINOLoss, ERDINOLoss


def _reference_loss(
    teacher_out: List[Tensor],
    student_out: List[Tensor],
    teacher_temp: float,
    student_temp: float,
    entropy_weight: float,
) -> Tensor:
    """DINO-ER without centering, one view pair at a time, in float64."""
    p_teacher = [torch.softmax(t.double() / teacher_temp, dim=1) for t in teacher_out]
    log_q = [torch.log_softmax(s.double() / student_temp, dim=1) for s in student_out]
    terms = [
        (p * log_q[s]).sum(dim=1).mean()
        for t, p in enumerate(p_teacher)
        for s in range(len(log_q))
        if s != t
    ]
    reconstruction = torch.stack(terms).mean()
    # The entropy of the student's mean prediction over the global crops.
    mean = torch.cat([q.exp() for q in log_q[: len(teacher_out)]]).mean(dim=0)
    entropy = -(mean * mean.log()).sum()
    return -(entropy_weight * entropy + reconstruction)


def _outputs(
    n_global: int, n_local: int, output_dim: int, seed: int
) -> Tuple[List[Tensor], List[Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(4, output_dim, generator=generator) for _ in range(n_global)]
    student = [
        torch.randn(4, output_dim, generator=generator)
        for _ in range(n_global + n_local)
    ]
    return teacher, student


class TestERDINOLoss:
    def test_is_a_dino_loss(self) -> None:
        assert isinstance(ERDINOLoss(output_dim=8, centering=False), DINOLoss)

    @pytest.mark.parametrize("n_local", [0, 2])
    @pytest.mark.parametrize("entropy_weight", [0.0, 1.0])
    def test_equal_to_reference(self, n_local: int, entropy_weight: float) -> None:
        teacher, student = _outputs(2, n_local, output_dim=16, seed=n_local)
        criterion = ERDINOLoss(
            output_dim=16, entropy_weight=entropy_weight, centering=False
        )
        loss = criterion(teacher, student, epoch=0)
        expected = _reference_loss(teacher, student, 0.04, 0.1, entropy_weight)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    @pytest.mark.parametrize("warmup_teacher_temp_epochs", [0, 3])
    def test_centering_without_entropy_equals_dino_loss(
        self, warmup_teacher_temp_epochs: int
    ) -> None:
        kwargs = dict(
            output_dim=16,
            warmup_teacher_temp=0.07,
            warmup_teacher_temp_epochs=warmup_teacher_temp_epochs,
        )
        criterion = DINOLoss(**kwargs)  # type: ignore[arg-type]
        criterion_er = ERDINOLoss(**kwargs, centering=True, entropy_weight=0.0)  # type: ignore[arg-type]
        for epoch in range(4):
            teacher, student = _outputs(2, 3, output_dim=16, seed=epoch)
            loss = criterion(teacher, student, epoch=epoch)
            loss_er = criterion_er(teacher, student, epoch=epoch)
            assert loss_er.item() == pytest.approx(loss.item(), rel=1e-5)
        torch.testing.assert_close(criterion_er.center, criterion.center)

    def test_teacher_gets_no_gradient(self) -> None:
        teacher, student = _outputs(2, 2, output_dim=8, seed=0)
        teacher = [t.requires_grad_(True) for t in teacher]
        student = [s.requires_grad_(True) for s in student]
        ERDINOLoss(output_dim=8, centering=False)(teacher, student).backward()
        assert all(t.grad is None for t in teacher)
        assert all(s.grad is not None for s in student)

    def test_single_view_raises(self) -> None:
        with pytest.raises(ValueError, match="at least two views"):
            ERDINOLoss(output_dim=8, centering=False)(
                [torch.randn(4, 8)], [torch.randn(4, 8)]
            )
