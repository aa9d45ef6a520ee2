"""BYOL-ER and SimSiam-ER: the ER objective in place of NegativeCosineSimilarity."""

from __future__ import annotations

from typing import Tuple, cast

from lightly.loss import NegativeCosineSimilarity
from torch import Tensor

from lightly_er.functional import SphereEstimator, vmf_reconstruction
from lightly_er.loss._base import (
    ERComponents,
    ERLossMixin,
    check_er_arguments,
    check_view_pair,
    gathered_sphere_entropy,
    normalize_rows,
)


class ERNegativeCosineSimilarity(ERLossMixin, NegativeCosineSimilarity):  # type: ignore[misc]
    """ER version of the negative cosine similarity of BYOL [1] and SimSiam [2].

    BYOL and SimSiam align a prediction p (online branch, with gradient) with a
    target z (the momentum encoder, or the stop-gradient branch). Their negative
    cosine similarity is, up to the factor kappa and a constant, the reconstruction
    term of the ER bound [0] with a von Mises-Fisher density. ER adds the entropy term
    that makes the objective a bound on the mutual information and penalises collapse
    explicitly; the loss is ``-(entropy_weight * entropy + reconstruction)`` in nats:

    - reconstruction = log C_d(kappa) + kappa * mean_i p_i^T z_i on the L2-normalised
      inputs (:func:`lightly_er.functional.vmf_reconstruction`);
    - entropy = the vMF kernel-density estimate of H(p) over the (gathered) batch of
      normalised predictions (:func:`lightly_er.functional.sphere_entropy`).

    Which input is the prediction is decided at run time, because lightly's BYOL
    calls ``criterion(p0, z1)`` (prediction first) and its SimSiam
    ``criterion(z0, p1)`` (target first): the prediction is the input that requires
    grad. If both do, the entropy is the average of both entropies; if neither does
    (evaluation under ``torch.no_grad``), it is that of x0.

    Why the entropy of the prediction and not of the target: the vMF density is
    symmetric, log q(z | p) = log q(p | z), so I(P; Z) >= H(P) + E[log q(P | Z)] is
    the ER bound with the reconstruction above. The target carries no gradient, so
    its entropy could not prevent collapse; the prediction is a function of the
    online projection, so a prediction of high entropy rules out a collapsed
    projection. With both branches trained, each entropy gives a valid bound and so
    does their average. Choices where the paper leaves room: this choice of branch,
    a fixed kappa shared by both terms (with entropy_weight 1 the constant log C_d
    cancels), and no extra stop-gradient: the target is used as given. The training
    code detaches it (BYOL's momentum branch, SimSiam's ``z.detach()``); detaching it
    again here would change nothing in those cases but would silently cut the
    gradient of a target that is meant to carry one (SimSiam without stop-gradient,
    symmetric set-ups), which the parent propagates. Only inputs of shape (N, D) with
    ``dim=1`` are supported.

    - [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in
      Multi-View Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733
    - [2] SimSiam, 2020, https://arxiv.org/abs/2011.10566

    Attributes:
        dim:
            The parent's cosine-similarity dimension; must be 1 (or -1).
        eps:
            Smallest norm in the L2 normalisation, as in the parent.
        kappa:
            Concentration of the vMF kernel and of the reconstruction density.
        entropy_weight:
            Weight of the entropy term in the loss.
        estimator:
            Entropy estimator, ``"joe"`` or ``"plugin"``.
        leave_one_out:
            Whether a sample is left out of its own density estimate.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        last_components:
            The detached :class:`ERComponents` of the last call.

    Raises:
        ValueError: If dim is not 1, kappa is not positive, entropy_weight is
            negative, or the estimator is unknown.

    Examples:
        >>> import torch
        >>> from lightly_er.loss.negative_cosine_similarity_er import (
        ...     ERNegativeCosineSimilarity,
        ... )
        >>> criterion = ERNegativeCosineSimilarity(kappa=10.0)
        >>> p0 = torch.randn(32, 128, requires_grad=True)  # online predictions
        >>> z1 = torch.randn(32, 128)  # targets, without gradient
        >>> loss = criterion(p0, z1)  # BYOL order
        >>> loss_simsiam_order = criterion(z1, p0)  # same value, same entropy
        >>> bool(torch.isclose(loss, loss_simsiam_order))
        True
    """

    def __init__(
        self,
        dim: int = 1,
        eps: float = 1e-8,
        *,
        kappa: float = 10.0,
        entropy_weight: float = 1.0,
        estimator: str = "joe",
        leave_one_out: bool = False,
        gather_distributed: bool = False,
    ) -> None:
        """Initialises the loss; see the class docstring for the arguments."""
        super().__init__(dim=dim, eps=eps)
        if isinstance(dim, bool) or dim not in (1, -1):
            raise ValueError(
                "dim must be 1 (inputs of shape (batch_size, dim)) for the ER terms, "
                f"got {dim}"
            )
        if kappa is None:
            raise TypeError("kappa must be a float, got None")
        check_er_arguments(kappa, entropy_weight, estimator, gather_distributed)
        self.kappa = float(kappa)
        self.entropy_weight = float(entropy_weight)
        self.estimator = cast(SphereEstimator, estimator)
        self.leave_one_out = leave_one_out
        self.gather_distributed = gather_distributed

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Returns the ER loss -(entropy_weight * entropy + reconstruction).

        Args:
            x0:
                Predictions (BYOL order) or targets (SimSiam order), shape (N, D).
            x1:
                Targets (BYOL order) or predictions (SimSiam order), shape (N, D).

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(x0, x1).loss

    def forward_components(self, x0: Tensor, x1: Tensor) -> ERComponents:
        """Returns the loss and its entropy and reconstruction terms.

        Args:
            x0:
                Predictions (BYOL order) or targets (SimSiam order), shape (N, D).
            x1:
                Targets (BYOL order) or predictions (SimSiam order), shape (N, D).

        Returns:
            :class:`ERComponents` (loss, entropy, reconstruction), with gradients.
        """
        check_view_pair(x0, "x0", x1, "x1")
        z0 = normalize_rows(x0, eps=self.eps)
        z1 = normalize_rows(x1, eps=self.eps)
        prediction, target, entropy = self._split(
            z0, x0.requires_grad, z1, x1.requires_grad
        )
        reconstruction = vmf_reconstruction(
            target, prediction, self.kappa, validate=False
        )
        return self._record(entropy, reconstruction, self.entropy_weight)

    def _split(
        self, z0: Tensor, grad0: bool, z1: Tensor, grad1: bool
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns (prediction, target, entropy) from which inputs require grad."""
        if grad0 and grad1:
            entropy = 0.5 * (self._entropy(z0) + self._entropy(z1))
            return z0, z1, entropy
        if grad1:
            return z1, z0, self._entropy(z1)
        return z0, z1, self._entropy(z0)

    def _entropy(self, z: Tensor) -> Tensor:
        return gathered_sphere_entropy(
            z, self.kappa, self.estimator, self.leave_one_out, self.gather_distributed
        )


__all__ = ["ERNegativeCosineSimilarity"]
