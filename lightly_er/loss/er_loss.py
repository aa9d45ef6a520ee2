"""The generic two-view ER objective, on the sphere or on a discrete support."""

from __future__ import annotations

from typing import Literal, Tuple, cast

from torch import Tensor, nn

from lightly_er.functional import (
    SphereEstimator,
    discrete_entropy,
    discrete_reconstruction,
    vmf_reconstruction,
)
from lightly_er.loss._base import (
    ERComponents,
    ERLossMixin,
    check_er_arguments,
    check_positive,
    check_view_pair,
    gather_rows,
    gathered_sphere_entropy,
    log_softmax_float32,
    normalize_rows,
)

Support = Literal["sphere", "discrete"]
_SUPPORTS: Tuple[str, ...] = ("sphere", "discrete")


class ERLoss(ERLossMixin, nn.Module):
    """Entropy and reconstruction (ER) loss between two views of the same inputs.

    Maximises the ER lower bound on the mutual information between the embeddings
    of two views [0]:

        I(Z0; Z1) >= H(Z1) + E[log q(Z1 | Z0)]

    and returns ``loss = -(entropy_weight * entropy + reconstruction)`` in nats. The
    bound is symmetric in the two views here, so the entropy is the average of the
    entropies of both views. Both views carry gradient: there is no teacher, the
    network that embeds both views is trained, and each half of the average is a
    valid bound on the same mutual information, so the average is one too.

    ``support="sphere"`` (SimCLR-like embeddings): the outputs are L2-normalised and

    - entropy = (H(z0) + H(z1)) / 2, each a von Mises-Fisher kernel-density estimate
      (:func:`lightly_er.functional.sphere_entropy`) over the whole (gathered) batch;
    - reconstruction = log C_d(kappa) + kappa * mean_i z0_i^T z1_i, the expected vMF
      log-likelihood (:func:`lightly_er.functional.vmf_reconstruction`). It is the
      same whichever view is the prediction, as the vMF kernel is symmetric.

    ``support="discrete"`` (prototype or cluster assignments): the outputs are logits
    over K classes, turned into p = softmax(out / temperature) in float32 and

    - entropy = (H(mean_i p0_i) + H(mean_i p1_i)) / 2, the entropy of the batch
      marginal of the assignments (:func:`lightly_er.functional.discrete_entropy`).
      With ``gather_distributed`` only each process's mean row is gathered: all
      processes hold equal batches (all_gather requires it), so the mean of the
      per-process means is the global mean, at a cost of K numbers per process;
    - reconstruction = (E[sum_c p1 log p0] + E[sum_c p0 log p1]) / 2, the negative
      cross-entropy in both directions
      (:func:`lightly_er.functional.discrete_reconstruction`); unlike the vMF case the
      cross-entropy is not symmetric, so both directions are averaged.

    Choices where the paper leaves room: the symmetric averages above (the paper's
    bound names one view as the target); the kernel concentration ``kappa`` is a fixed
    hyperparameter, shared by the entropy estimate and the reconstruction density, so
    that the constant log C_d(kappa) cancels between the two terms when
    ``entropy_weight`` is 1. ``kappa``, ``estimator`` and ``leave_one_out`` apply to
    the sphere only, ``temperature`` to the discrete support only.

    - [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in
      Multi-View Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907

    Attributes:
        support:
            ``"sphere"`` or ``"discrete"``.
        kappa:
            Concentration of the vMF kernel (sphere).
        entropy_weight:
            Weight of the entropy term in the loss.
        estimator:
            Sphere entropy estimator, ``"joe"`` or ``"plugin"``.
        leave_one_out:
            Whether a sample is left out of its own density estimate (sphere).
        temperature:
            Softmax temperature of the logits (discrete).
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        last_components:
            The detached :class:`ERComponents` of the last call.

    Raises:
        ValueError: If support or estimator is unknown, kappa or temperature is not
            positive, or entropy_weight is negative.

    Examples:
        >>> import torch
        >>> from lightly_er.loss.er_loss import ERLoss
        >>> loss_fn = ERLoss(support="sphere", kappa=10.0)
        >>> out0, out1 = torch.randn(32, 128), torch.randn(32, 128)
        >>> loss = loss_fn(out0, out1)
        >>> entropy = loss_fn.last_components.entropy
        >>>
        >>> # prototype logits, e.g. from a DINO or SwAV head
        >>> loss_fn = ERLoss(support="discrete", temperature=0.1)
        >>> loss = loss_fn(torch.randn(32, 256), torch.randn(32, 256))
    """

    def __init__(
        self,
        support: Support = "sphere",
        kappa: float = 10.0,
        entropy_weight: float = 1.0,
        estimator: str = "joe",
        leave_one_out: bool = False,
        temperature: float = 0.1,
        gather_distributed: bool = False,
    ) -> None:
        """Initialises the loss; see the class docstring for the arguments."""
        super().__init__()
        if support not in _SUPPORTS:
            raise ValueError(
                f"support must be one of {', '.join(map(repr, _SUPPORTS))}, "
                f"got {support!r}"
            )
        if kappa is None:
            raise TypeError("kappa must be a float, got None")
        check_er_arguments(kappa, entropy_weight, estimator, gather_distributed)
        check_positive(temperature, "temperature")
        self.support = support
        self.kappa = float(kappa)
        self.entropy_weight = float(entropy_weight)
        self.estimator = cast(SphereEstimator, estimator)
        self.leave_one_out = leave_one_out
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Returns the ER loss -(entropy_weight * entropy + reconstruction).

        Args:
            out0:
                Outputs for the first views, shape (batch_size, dim).
            out1:
                Outputs for the second views, shape (batch_size, dim).

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(out0, out1).loss

    def forward_components(self, out0: Tensor, out1: Tensor) -> ERComponents:
        """Returns the loss and its entropy and reconstruction terms.

        Args:
            out0:
                Outputs for the first views, shape (batch_size, dim).
            out1:
                Outputs for the second views, shape (batch_size, dim).

        Returns:
            :class:`ERComponents` (loss, entropy, reconstruction), with gradients.
        """
        check_view_pair(out0, "out0", out1, "out1")
        if self.support == "sphere":
            entropy, reconstruction = self._sphere_terms(out0, out1)
        else:
            entropy, reconstruction = self._discrete_terms(out0, out1)
        return self._record(entropy, reconstruction, self.entropy_weight)

    def _sphere_terms(self, out0: Tensor, out1: Tensor) -> Tuple[Tensor, Tensor]:
        z0 = normalize_rows(out0)
        z1 = normalize_rows(out1)
        entropy0 = self._sphere_entropy(z0)
        entropy1 = self._sphere_entropy(z1)
        reconstruction = vmf_reconstruction(z1, z0, self.kappa, validate=False)
        return 0.5 * (entropy0 + entropy1), reconstruction

    def _sphere_entropy(self, z: Tensor) -> Tensor:
        return gathered_sphere_entropy(
            z, self.kappa, self.estimator, self.leave_one_out, self.gather_distributed
        )

    def _discrete_terms(self, out0: Tensor, out1: Tensor) -> Tuple[Tensor, Tensor]:
        log_p0 = log_softmax_float32(out0, self.temperature)
        log_p1 = log_softmax_float32(out1, self.temperature)
        p0, p1 = log_p0.exp(), log_p1.exp()
        entropy0 = discrete_entropy(self._marginal_rows(p0))
        entropy1 = discrete_entropy(self._marginal_rows(p1))
        reconstruction = 0.5 * (
            discrete_reconstruction(p1, log_p0, log_input=True, validate=False)
            + discrete_reconstruction(p0, log_p1, log_input=True, validate=False)
        )
        return 0.5 * (entropy0 + entropy1), reconstruction

    def _marginal_rows(self, p: Tensor) -> Tensor:
        # One mean row per process: their mean is the global batch marginal.
        return gather_rows(p.mean(dim=0, keepdim=True), self.gather_distributed)


__all__ = ["ERLoss"]
