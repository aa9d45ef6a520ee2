import copy
from typing import List, Tuple

import pytest
import torch
from torch import Tensor

from lightly.loss import DINOLoss, ERDINOLoss
from tests.ddp_helpers import NUM_PROCESSES, USE_PYTEST_POOL

Step = Tuple[List[Tensor], List[Tensor]]


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


def _run_steps(
    criterion: ERDINOLoss, steps: List[Step], rank: int, world_size: int
) -> Tuple[List[float], List[Tensor]]:
    """The losses of the steps and the gradients of the last step's student rows."""
    losses, grads = [], []
    for teacher, student in steps:
        n = len(teacher[0])
        rows = slice(rank * n // world_size, (rank + 1) * n // world_size)
        local = [view[rows].clone().requires_grad_(True) for view in student]
        loss = criterion([view[rows] for view in teacher], local)
        loss.backward()
        losses.append(loss.item())
        grads = [view.grad for view in local if view.grad is not None]
    return losses, grads


def _gather_worker(
    criterion: ERDINOLoss, steps: List[Step]
) -> Tuple[int, List[float], List[Tensor], Tensor, Tensor]:
    """This rank's losses, last gradients, center and bound, holding a slice."""
    rank = torch.distributed.get_rank()
    world_size = torch.distributed.get_world_size()
    losses, grads = _run_steps(criterion, steps, rank, world_size)
    assert criterion.last_bound is not None
    return rank, losses, grads, criterion.center, criterion.last_bound


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

    @pytest.mark.DDP
    @pytest.mark.skipif(not USE_PYTEST_POOL, reason="DDP pool is not available")
    @pytest.mark.parametrize("centering", [True, False])
    def test__gather_distributed_matches_one_process_with_the_whole_batch(
        self, centering: bool
    ) -> None:
        # The entropy of the student's marginal is over the gathered batch, the
        # reconstruction over the rank's rows. The center is the whole batch's for
        # another reason: DINOLoss.update_center all-reduces the batch center
        # whenever torch.distributed is initialized, with or without
        # gather_distributed. So over two steps (the second one centered by the
        # first's update) the ranks' mean loss, their gradients divided by the world
        # size, the center and the mean bound are those of one process holding
        # the whole batch.
        steps = []
        for seed in (6, 7):
            teacher, student = _outputs(2, 2, output_dim=16, seed=seed)
            steps.append(([t.double() for t in teacher], [s.double() for s in student]))
        criterion = ERDINOLoss(
            output_dim=16, centering=centering, gather_distributed=True
        )
        results = sorted(
            pytest.pool.starmap(  # type: ignore[attr-defined]
                _gather_worker, [(criterion, steps)] * NUM_PROCESSES
            ),
            key=lambda result: result[0],
        )
        whole = copy.deepcopy(criterion)
        losses, grads = _run_steps(whole, steps, rank=0, world_size=1)
        for step, loss in enumerate(losses):
            mean_loss = sum(result[1][step] for result in results) / NUM_PROCESSES
            assert mean_loss == pytest.approx(loss, rel=1e-7)
        for view, grad in enumerate(grads):
            rank_grads = torch.cat([result[2][view] for result in results])
            torch.testing.assert_close(
                rank_grads / NUM_PROCESSES, grad, rtol=1e-6, atol=1e-12
            )
        for result in results:
            torch.testing.assert_close(result[3], whole.center)
        # The bound, like the loss, is the gathered entropy plus the rank's
        # reconstruction: their mean is the whole batch's.
        mean_bound = sum(result[4] for result in results) / NUM_PROCESSES
        torch.testing.assert_close(mean_bound, whole.last_bound)
        if centering:
            assert whole.center.abs().sum() > 0  # the center moved
