"""DINO-ER: the ER objective on the discrete support of DINO's prototypes."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from lightly.loss import DINOLoss
from lightly.models.modules.center import CENTER_MODE_TO_FUNCTION
from torch import Tensor

from lightly_er.loss._base import (
    ERComponents,
    ERLossMixin,
    check_er_arguments,
    check_int,
    check_positive,
    check_real,
    cross_view_reconstruction,
    log_softmax_float32,
    marginal_entropy,
)


class ERDINOLoss(ERLossMixin, DINOLoss):  # type: ignore[misc]
    """DINO loss with an explicit entropy term instead of centering: DINO-ER [0].

    DINO [1] trains a student to predict an EMA teacher's distribution over K
    prototypes and avoids collapse with centering and sharpening of the teacher. The
    ER bound [0] on the mutual information between the teacher's and the student's
    assignments, I(Z1; Z2) >= H(Z2) + E[log q(Z2 | Z1)], replaces the centering by an
    entropy term. This loss returns, in nats,

        loss = -(entropy_weight * entropy + reconstruction)

    with

    - reconstruction = the mean over the view pairs (teacher view t, student view s)
      with t != s, the same pairs as :class:`lightly.loss.DINOLoss`, of
      E_b[sum_k p_t[b, k] log q_s[b, k]]
      (:func:`lightly_er.functional.discrete_reconstruction`), where
      p_t = softmax(teacher_t / teacher_temp) (teacher_t - center with ``centering``)
      is computed without gradient, as the teacher is an EMA copy of the student, and
      log q_s = log_softmax(student_s / student_temp). With ``centering=True`` and
      ``entropy_weight=0`` the loss equals :class:`lightly.loss.DINOLoss`.
    - entropy = H(mean_b q_s[b]) (:func:`lightly_er.functional.discrete_entropy`),
      the entropy of the student's mean prediction over the global crops, that is the
      student views s < len(teacher_out), which by the DINO convention are the views
      the teacher also sees. It is maximal (log K) when the prototypes are used
      uniformly and 0 when every sample predicts the same prototype, so it penalises
      the collapse that centering prevents in DINO.

    Choices where the paper leaves room:

    - The entropy is taken on the student, which carries the gradient; the teacher
      follows it through the EMA. It is estimated on the global crops only: they have
      the input distribution of the teacher's targets, whose marginal is H(Z2) in the
      bound, whereas pooling the smaller local crops would estimate the entropy of a
      mixture of two input distributions. The local crops still cannot collapse, as
      they must predict the teacher's (diverse) targets. It also costs a quarter of
      the all-crop estimate with 2 global and 6 local crops.
    - Centering is off by default (``centering=False``): the entropy term takes its
      place. The teacher is still sharpened by ``teacher_temp``, with the parent's
      warmup schedule. The center buffer is updated only when ``centering=True``, so
      no work (and no all-reduce) is spent on a state that is not used.
    - With ``gather_distributed=True`` every process averages its predictions into
      one row of K numbers and the rows of all processes are gathered (with
      gradient); with equal batch sizes their mean is the mean over the global batch.
      The reconstruction is a per-sample mean and needs no gathering.
    - The softmaxes and terms are computed in at least float32, also under autocast,
      so bfloat16 logits with 65536 prototypes stay finite.

    The reconstruction is computed exactly but without forming every pair: as it is
    linear in the target, the pairs of student view s are summed into one target,
    the mean of the teacher distributions p_t over t != s, weighted by their number,
    so discrete_reconstruction runs once per student view instead of once per pair.
    The entropy reuses the same log_softmax (q = exp(log q)) and passes
    discrete_entropy the per-process mean row, whose mean is the batch mean.

    - [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in
      Multi-View Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] DINO, 2021, https://arxiv.org/abs/2104.14294

    Attributes:
        output_dim:
            Number of prototypes K, the dimension of the model output.
        teacher_temp:
            Temperature of the teacher softmax after the warmup.
        student_temp:
            Temperature of the student softmax.
        center:
            Moving average of the teacher output, subtracted when ``centering``.
        center_momentum:
            Momentum of the center update.
        warmup_teacher_temp_epochs:
            Number of epochs of the linear warmup of the teacher temperature.
        teacher_temp_schedule:
            The teacher temperature of each warmup epoch.
        entropy_weight:
            Weight of the entropy term in the loss.
        centering:
            Whether the teacher output is centered as in DINO.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        last_components:
            The detached :class:`lightly_er.loss._base.ERComponents` of the last call.

    Raises:
        ValueError: If a temperature, output_dim or center_momentum is out of range,
            center_mode is unknown, or entropy_weight is negative.

    Examples:
        >>> import torch
        >>> from lightly_er.loss.dino_er_loss import ERDINOLoss
        >>> loss_fn = ERDINOLoss(output_dim=128)
        >>>
        >>> # outputs of the student and teacher heads for 2 global and 4 local crops
        >>> teacher_out = [torch.randn(8, 128) for _ in range(2)]
        >>> student_out = [torch.randn(8, 128, requires_grad=True) for _ in range(6)]
        >>> loss = loss_fn(teacher_out, student_out, epoch=0)
        >>> loss.backward()
        >>> entropy = loss_fn.last_components.entropy  # in nats, at most log(128)
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
        centering: bool = False,
        gather_distributed: bool = False,
    ) -> None:
        """Initialises the loss; see the class docstring and DINOLoss for arguments."""
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
        if not isinstance(centering, bool):
            raise TypeError(f"centering must be a bool, got {type(centering).__name__}")
        check_er_arguments(None, entropy_weight, "joe", gather_distributed)
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
        self.entropy_weight = float(entropy_weight)
        self.centering = centering
        self.gather_distributed = gather_distributed

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
                return float(self.teacher_temp_schedule[epoch])
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
        check_view_pair(teacher_out, "teacher_out", self.output_dim)
        check_view_pair(student_out, "student_out", self.output_dim)
        _check_same_batch(teacher_out, student_out)
        temperature = self.teacher_temperature(teacher_temp, epoch)

        with torch.no_grad():
            teacher_stacked = torch.stack(teacher_out)
            teacher_logits = teacher_stacked
            if self.centering:
                teacher_logits = teacher_logits - self.center
            p_teacher = log_softmax_float32(teacher_logits, temperature).exp_()
        log_q = [log_softmax_float32(view, self.student_temp) for view in student_out]

        reconstruction = cross_view_reconstruction(list(p_teacher.unbind(0)), log_q)
        num_global = min(len(teacher_out), len(student_out))
        entropy = marginal_entropy(log_q[:num_global], self.gather_distributed)
        if self.centering:
            self.update_center(teacher_stacked)
        return self._record(entropy, reconstruction, self.entropy_weight)


def check_view_pair(views: Sequence[Tensor], name: str, output_dim: int) -> None:
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
