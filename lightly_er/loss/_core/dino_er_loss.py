"""DINO-ER: the ER objective on the discrete support of DINO's prototypes."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from lightly.loss.dino_loss import DINOLoss
from lightly.models.modules.center import CENTER_MODE_TO_FUNCTION
from torch import Tensor

from lightly_er.functional._discrete import cross_view_reconstruction
from lightly_er.loss._base import (
    DiscreteERLossMixin,
    ERComponents,
)
from lightly_er.loss._terms import (
    check_er_arguments,
    check_gather_distributed,
    log_softmax_float32,
    softmax_float32,
    target_entropy,
)
from lightly_er.utils._checks import check_bool, check_int, check_positive, check_real


class ERDINOLoss(DiscreteERLossMixin, DINOLoss):
    """DINO loss with an explicit entropy term: DINO-ER [0].

    DINO [1] trains a student to predict an EMA teacher's distribution over K
    prototypes and avoids collapse by centering and sharpening the teacher. DINO-ER
    adds the anti-collapse term explicitly (in place of centering with
    ``centering=False``, the paper's variant) and returns, in nats,

        loss = -(entropy_weight * H(mean_b q_s[b]) + reconstruction)

    - reconstruction: the mean over DINOLoss's view pairs (teacher view t, student
      view s, t != s) of E_b[sum_k p_t[b, k] log q_s[b, k]], with
      p_t = softmax(teacher_t / teacher_temp) (without gradient; centered first, as
      in DINOLoss, unless ``centering=False``) and log q_s = log_softmax(student_s / student_temp);
    - entropy: of the student's mean prediction over the global crops (the views the
      teacher also sees), gathered over processes with ``gather_distributed``.

    At ``entropy_weight=0`` (and the default ``centering=True``) the loss equals
    DINOLoss. The teacher temperature follows the parent's warmup schedule.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] DINO, 2021, https://arxiv.org/abs/2104.14294

    Args:
        output_dim, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs,
        student_temp, center_momentum, center_mode:
            As :class:`lightly.loss.DINOLoss`.
        entropy_weight:
            Weight of the entropy term, >= 0.
        centering:
            Whether the teacher output is centered, as in DINO (the default: the
            swap keeps DINO's anti-collapse device and adds the term). The paper's
            DINO-ER is ``centering=False``, the entropy term in its place.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.

    Attributes:
        last_components:
            The detached :class:`ERComponents` of the last call; entropy +
            reconstruction is the paper's surrogate, not a bound.
        last_bound:
            A lower bound on the mutual information, detached: the teacher's
            marginal entropy plus the same reconstruction.

    Raises:
        ValueError: If a temperature is not positive, center_momentum is outside
            [0, 1], center_mode is unknown, or entropy_weight is negative.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERDINOLoss
        >>> loss_fn = ERDINOLoss(output_dim=128)
        >>> # student and teacher head outputs for 2 global and 4 local crops
        >>> teacher_out = [torch.randn(8, 128) for _ in range(2)]
        >>> student_out = [torch.randn(8, 128, requires_grad=True) for _ in range(6)]
        >>> loss = loss_fn(teacher_out, student_out, epoch=0)
        >>> loss.backward()
        >>> entropy = loss_fn.last_components.entropy  # nats, at most log(128)
    """

    output_dim: int
    entropy_weight: float
    centering: bool
    gather_distributed: bool

    def __init__(
        self,
        output_dim: int = 65536,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        center_mode: str = "mean",
        *,
        entropy_weight: float = 1.0,
        centering: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        # The parent checks none of these; a bad value would surface as NaN later.
        check_int(output_dim, "output_dim", 1)
        check_positive(warmup_teacher_temp, "warmup_teacher_temp")
        check_positive(teacher_temp, "teacher_temp")
        check_positive(student_temp, "student_temp")
        check_int(warmup_teacher_temp_epochs, "warmup_teacher_temp_epochs", 0)
        check_real(center_momentum, "center_momentum")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(
                f"center_momentum must be in [0, 1], got {center_momentum}"
            )
        if center_mode not in CENTER_MODE_TO_FUNCTION:
            raise ValueError(
                f"center_mode must be one of {sorted(CENTER_MODE_TO_FUNCTION)}, "
                f"got {center_mode!r}"
            )
        check_bool(centering, "centering")
        check_er_arguments(None, entropy_weight)
        check_gather_distributed(gather_distributed)
        super().__init__(
            output_dim=output_dim,
            warmup_teacher_temp=warmup_teacher_temp,
            teacher_temp=teacher_temp,
            warmup_teacher_temp_epochs=warmup_teacher_temp_epochs,
            student_temp=student_temp,
            center_momentum=center_momentum,
            center_mode=center_mode,
        )
        self.output_dim = int(output_dim)
        # The warmup schedule as Python floats: read without a host sync, and
        # without a graph break under torch.compile.
        self._warmup_temperatures = [float(t) for t in self.teacher_temp_schedule]
        self.entropy_weight = float(entropy_weight)
        self.centering = centering
        self.gather_distributed = gather_distributed
        self._init_discrete()

    def _temperature(self) -> float:
        return float(self.student_temp)

    def teacher_temperature(
        self, teacher_temp: Optional[float] = None, epoch: Optional[int] = None
    ) -> float:
        """Returns the teacher temperature with the schedule of DINOLoss.forward.

        An explicit ``teacher_temp`` wins; otherwise the warmup schedule is used for
        ``epoch < warmup_teacher_temp_epochs`` and ``self.teacher_temp`` after it or
        when no epoch is given.

        Raises:
            ValueError: If teacher_temp is not positive or epoch is negative.
        """
        if teacher_temp is not None:
            check_positive(teacher_temp, "teacher_temp")
            return float(teacher_temp)
        if epoch is not None:
            if epoch < 0:
                raise ValueError(f"epoch must be >= 0, got {epoch}")
            if epoch < self.warmup_teacher_temp_epochs:
                return self._warmup_temperatures[epoch]
        return float(self.teacher_temp)

    def forward(
        self,
        teacher_out: list[Tensor],
        student_out: list[Tensor],
        teacher_temp: float | None = None,
        epoch: int | None = None,
    ) -> Tensor:
        """Returns the DINO-ER loss -(entropy_weight * entropy + reconstruction).

        Args:
            teacher_out:
                One tensor of shape (batch_size, output_dim) per teacher view (the
                global crops), outputs of the teacher head.
            student_out:
                One tensor of shape (batch_size, output_dim) per student view, the
                global crops first, in the order of teacher_out, then the local crops.
            teacher_temp:
                Temperature of the teacher output; if None, the schedule of __init__.
            epoch:
                The current epoch, for the teacher temperature warmup.

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(
            teacher_out, student_out, teacher_temp, epoch
        ).loss

    def forward_components(
        self,
        teacher_out: list[Tensor],
        student_out: list[Tensor],
        teacher_temp: float | None = None,
        epoch: int | None = None,
    ) -> ERComponents:
        """Returns the loss, entropy and reconstruction; arguments as in forward."""
        _check_views(teacher_out, "teacher_out", self.output_dim)
        _check_views(student_out, "student_out", self.output_dim)
        _check_same_batch(teacher_out, student_out)
        temperature = self.teacher_temperature(teacher_temp, epoch)

        # The teacher is a target: no gradient, as in DINOLoss.
        with torch.no_grad():
            teacher_stacked = torch.stack(teacher_out)
            teacher_logits = teacher_stacked
            if self.centering:
                teacher_logits = teacher_logits - self.center
            p_teacher = softmax_float32(teacher_logits, temperature)
        # log_softmax, not log(softmax): sharp student distributions keep finite logs.
        log_q = [log_softmax_float32(view, self.student_temp) for view in student_out]

        reconstruction = cross_view_reconstruction(list(p_teacher.unbind(0)), log_q)
        # The entropy term replaces centering, which acts on the global crops only:
        # the student's global crops are the first len(teacher_out) views.
        num_global = min(len(teacher_out), len(student_out))
        entropy = self._marginal_entropy(log_q[:num_global])
        if self.centering:
            # After the teacher's probabilities, as DINOLoss updates it.
            self.update_center(teacher_stacked)
        components = self._record(entropy, reconstruction, self.entropy_weight)
        # The student's entropy trains (the teacher gets no gradient) but does not
        # make a bound; the teacher's does: I(T; X') >= H(T) + E[log q_s(T | X')].
        bound = target_entropy(p_teacher.unbind(0), self.gather_distributed)
        bound = bound + reconstruction
        self.last_bound = bound.detach()
        return components


def _check_views(views: Sequence[Tensor], name: str, output_dim: int) -> None:
    if not isinstance(views, (list, tuple)) or len(views) == 0:
        raise ValueError(f"{name} must be a non-empty list of tensors")
    shape = views[0].shape
    for view in views:
        if view.ndim != 2 or view.shape != shape or view.shape[1] != output_dim:
            raise ValueError(
                f"{name} must hold tensors of one shape (batch_size, {output_dim}), "
                f"got shapes {[tuple(v.shape) for v in views]}"
            )


def _check_same_batch(
    teacher_out: Sequence[Tensor], student_out: Sequence[Tensor]
) -> None:
    if teacher_out[0].shape != student_out[0].shape:
        raise ValueError(
            "teacher_out and student_out must hold tensors of the same shape, got "
            f"{tuple(teacher_out[0].shape)} and {tuple(student_out[0].shape)}"
        )
