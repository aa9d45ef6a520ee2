"""BYOL-ER and SimSiam-ER: the ER objective in place of NegativeCosineSimilarity."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union, cast

import torch
from lightly.loss import NegativeCosineSimilarity
from torch import Tensor

from lightly_er.functional import SphereEstimator
from lightly_er.functional._sphere import relative_vmf_reconstruction
from lightly_er.loss._base import (
    ERComponents,
    ERLossMixin,
    check_er_arguments,
    check_gather_distributed,
    check_view_pair,
    normalize_rows,
)
from lightly_er.loss._kappa import DEFAULT_ESTIMATOR, DEFAULT_KAPPA, resolve_kappa
from lightly_er.utils.dist import gather_rows


class ERNegativeCosineSimilarity(ERLossMixin, NegativeCosineSimilarity):  # type: ignore[misc]
    """ER version of the negative cosine similarity of BYOL [1] and SimSiam [2].

    Maximizes the ER bound [0] between the prediction p (the input that requires
    grad) and the target z on the unit sphere, and returns

        loss = -(entropy_weight * H(p) + E[log q(z | p)]) / kappa

    where the reconstruction is the vMF log-likelihood log C_d(kappa) + kappa *
    mean_i cos(p_i, z_i) and H(p) the vMF kernel-density entropy of the (gathered)
    batch of predictions. Dividing by kappa reports the bound in units of 1 / kappa
    nats: with ``entropy_weight=0`` the gradient is exactly that of
    NegativeCosineSimilarity, so the same optimizer and learning rate are a fair
    comparison. lightly's BYOL calls ``criterion(p, z)``, its SimSiam
    ``criterion(z, p)``; both orders work. Like the parent it accepts a batch of 1
    (its entropy is the constant H_min; this warns once) and dimension 1.
    docs/objectives.md explains the choices.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733
    - [2] SimSiam, 2020, https://arxiv.org/abs/2011.10566

    Attributes:
        dim:
            The parent's cosine-similarity dimension; must be 1.
        eps:
            Smallest norm in the L2 normalization, as in the parent.
        kappa:
            Concentration of the vMF reconstruction density and, unless
            ``density_kappa`` is given, of the kernel (10, the authors' default).
            Its current value when learned.
        density_kappa:
            The kernel density's own concentration, or None (= kappa).
        learned_kappa, learned_density_kappa:
            With ``learn_kappa=True``, the
            :class:`~lightly_er.loss._learnable_kappa.LearnableKappa` modules
            (parameters), else None. A shared kappa is trained by the ER objective;
            a separate kernel kappa by the leave-one-out likelihood of the batch.
        entropy_weight:
            Weight of the entropy term.
        estimator:
            Entropy estimator: ``"plugin"`` (default), ``"joe"``, ``"renyi2"``,
            ``"knn"`` or ``"logdet"`` (:func:`lightly_er.functional.sphere_entropy`).
        leave_one_out:
            Whether a sample is left out of its own density estimate.
        entropy_memory:
            With ``entropy_memory_size`` > 0, the memory of earlier predictions
            (extra centers of the entropy estimate), else None.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        validate:
            When the loss is checked for NaN/Inf: ``"first"``, ``"always"``, ``"never"``.
        last_components:
            The detached :class:`ERComponents` (entropy and reconstruction in nats).

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERNegativeCosineSimilarity
        >>> criterion = ERNegativeCosineSimilarity()
        >>> p0 = torch.randn(32, 128, requires_grad=True)  # online predictions
        >>> z1 = torch.randn(32, 128)  # targets, without gradient
        >>> loss = criterion(p0, z1)  # BYOL order; criterion(z1, p0) is SimSiam's
        >>> entropy = criterion.last_components.entropy  # in nats
    """

    def __init__(
        self,
        dim: int = 1,
        eps: float = 1e-8,
        *,
        kappa: float = DEFAULT_KAPPA,
        entropy_weight: float = 1.0,
        estimator: str = DEFAULT_ESTIMATOR,
        leave_one_out: bool = False,
        gather_distributed: bool = False,
        validate: str = "first",
        density_kappa: Optional[float] = None,
        learn_kappa: bool = False,
        kappa_bounds: Optional[Sequence[float]] = None,
        entropy_memory_size: Union[int, Sequence[int]] = 0,
    ) -> None:
        """Initializes the loss; see the class docstring for the arguments."""
        super().__init__(dim=dim, eps=eps)
        # The ER terms need one row per sample; the parent also accepts feature maps.
        if isinstance(dim, bool) or dim not in (1, -1):
            raise ValueError(
                "dim must be 1 (inputs of shape (batch_size, dim)) for the ER terms, "
                f"got {dim}"
            )
        if kappa is None:
            raise TypeError("kappa must be a float, got None")
        check_er_arguments(kappa, entropy_weight, estimator)
        check_gather_distributed(gather_distributed)
        initial = resolve_kappa(kappa)
        # In units of 1 / kappa nats: at entropy_weight 0 the gradient is the parent's.
        # A learned kappa keeps its initial value here (a constant scale).
        self.loss_scale = initial
        self.entropy_weight = float(entropy_weight)
        self.estimator = cast(SphereEstimator, estimator)
        self.leave_one_out = leave_one_out
        self.gather_distributed = gather_distributed
        self._set_validate(validate)
        self._init_sphere(
            initial, density_kappa, learn_kappa, kappa_bounds, entropy_memory_size
        )

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Returns the ER loss -(entropy_weight * entropy + reconstruction) / kappa.

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
        """Returns the loss and its entropy and reconstruction terms (in nats).

        The prediction is the input that requires grad; if both or neither do
        (symmetric use, evaluation), the entropy is the mean of both entropies, so
        ``loss(x0, x1) == loss(x1, x0)`` as for the parent.
        """
        check_view_pair(x0, "x0", x1, "x1")
        # The parent's eps: a zero row gives cosine 0, as in cosine_similarity.
        z0 = normalize_rows(x0, eps=self.eps)
        z1 = normalize_rows(x1, eps=self.eps)
        prediction, target, entropy, rows = self._split(
            z0, x0.requires_grad, z1, x1.requires_grad
        )
        # Rows join the entropy memory after the backward (not within this step).
        self._remember(rows, entropy)
        # The vMF reconstruction is symmetric in its arguments (kappa * cosine).
        reconstruction = relative_vmf_reconstruction(
            target, prediction, self._kappas()[1], validate=False
        )
        return self._sphere_record(entropy, reconstruction, z0.shape[1], rows)

    def _split(
        self, z0: Tensor, grad0: bool, z1: Tensor, grad1: bool
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(prediction, target, entropy, its gathered rows) from which inputs train."""
        if grad0 == grad1:
            rows0 = gather_rows(z0, self.gather_distributed)
            rows1 = gather_rows(z1, self.gather_distributed)
            entropy = 0.5 * (self._sphere_entropy(rows0) + self._sphere_entropy(rows1))
            return z0, z1, entropy, torch.cat([rows0, rows1])
        # Only the branch that trains can resist collapse: its entropy is the term.
        prediction, target = (z1, z0) if grad1 else (z0, z1)
        rows = gather_rows(prediction, self.gather_distributed)
        return prediction, target, self._sphere_entropy(rows), rows


__all__ = ["ERNegativeCosineSimilarity"]
