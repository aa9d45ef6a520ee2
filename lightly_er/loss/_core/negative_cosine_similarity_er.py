"""BYOL-ER and SimSiam-ER: the ER objective in place of NegativeCosineSimilarity."""

from __future__ import annotations

from typing import Tuple

import torch
from lightly.loss.negative_cosine_similarity import NegativeCosineSimilarity
from torch import Tensor
from typing_extensions import Literal

from lightly_er.functional._vmf import relative_vmf_reconstruction
from lightly_er.loss._base import (
    ERComponents,
    SphereERLossMixin,
)
from lightly_er.loss._terms import (
    DEFAULT_KAPPA,
    check_er_arguments,
    check_gather_distributed,
    check_view_pair,
    normalize_rows,
    resolve_kappa,
)
from lightly_er.utils._checks import check_choice, check_int
from lightly_er.utils.dist import gather_rows

Prediction = Literal["x0", "x1", "both"]


class ERNegativeCosineSimilarity(SphereERLossMixin, NegativeCosineSimilarity):
    """ER version of the negative cosine similarity of BYOL [1] and SimSiam [2].

    Maximizes the ER bound [0] between the prediction p and the target z on the
    unit sphere, and returns

        loss = -(entropy_weight * H(p) + E[log q(z | p)]) / kappa

    where the reconstruction is the vMF log-likelihood log C_d(kappa) + kappa *
    mean_i cos(p_i, z_i) and H(p) the vMF kernel-density entropy of the (gathered)
    batch of predictions. Dividing by kappa reports the bound in units of 1 / kappa
    nats: with ``entropy_weight=0`` the value and gradient are those of
    NegativeCosineSimilarity up to a constant, so the same optimizer and learning
    rate are a fair comparison. lightly's BYOL calls ``criterion(p, z)``
    (``prediction="x0"``), its SimSiam ``criterion(z, p)`` (``prediction="x1"``);
    the default ``"both"`` averages the entropies of both inputs, which works for
    either order with half the weight on the prediction. The value never depends
    on which input requires grad, so a validation step computes what training
    does.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733
    - [2] SimSiam, 2020, https://arxiv.org/abs/2011.10566

    Args:
        dim:
            The dimension of the embeddings, as in the parent. Inputs of more than
            two dimensions (feature maps) are read as one sample per position.
        eps:
            Smallest norm in the L2 normalization, as in the parent.
        kappa:
            Concentration of the vMF reconstruction density and kernel (10, the
            authors' default).
        entropy_weight:
            Weight of the entropy term, >= 0.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        prediction:
            Which input is the prediction whose entropy is the term: ``"x0"``,
            ``"x1"``, or ``"both"`` (the mean of both entropies).

    Attributes:
        last_components:
            The detached :class:`ERComponents` (entropy and reconstruction in nats).

    Raises:
        ValueError: If kappa is not positive, entropy_weight is negative, or
            prediction is unknown.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERNegativeCosineSimilarity
        >>> criterion = ERNegativeCosineSimilarity(prediction="x0")  # BYOL order
        >>> p0 = torch.randn(32, 128, requires_grad=True)  # online predictions
        >>> z1 = torch.randn(32, 128)  # targets, without gradient
        >>> loss = criterion(p0, z1)
        >>> entropy = criterion.last_components.entropy  # in nats
    """

    def __init__(
        self,
        dim: int = 1,
        eps: float = 1e-8,
        *,
        kappa: float = DEFAULT_KAPPA,
        entropy_weight: float = 1.0,
        gather_distributed: bool = False,
        prediction: Prediction = "both",
    ) -> None:
        super().__init__(dim=dim, eps=eps)
        check_int(dim, "dim", -(2**31))
        if kappa is None:
            raise TypeError("kappa must be a float, got None")
        check_er_arguments(kappa, entropy_weight)
        check_gather_distributed(gather_distributed)
        check_choice(prediction, "prediction", ("x0", "x1", "both"))
        initial = resolve_kappa(kappa)
        # In units of 1 / kappa nats: at entropy_weight 0 the gradient is the parent's.
        self.loss_scale = initial
        self.entropy_weight = float(entropy_weight)
        self.gather_distributed = gather_distributed
        self.prediction: Prediction = prediction
        self._init_sphere(initial)

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Returns the ER loss -(entropy_weight * entropy + reconstruction) / kappa.

        Args:
            x0:
                Predictions (BYOL order) or targets (SimSiam order), shape (N, D)
                (D along ``dim``).
            x1:
                Targets (BYOL order) or predictions (SimSiam order), same shape.

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(x0, x1).loss

    def forward_components(self, x0: Tensor, x1: Tensor) -> ERComponents:
        """Returns the loss and its entropy and reconstruction terms (in nats).

        Args:
            x0:
                Predictions (BYOL order) or targets (SimSiam order).
            x1:
                Targets (BYOL order) or predictions (SimSiam order).

        Returns:
            :class:`ERComponents` (loss, entropy, reconstruction), with gradients.
        """
        x0, x1 = self._as_rows(x0, "x0"), self._as_rows(x1, "x1")
        check_view_pair(x0, "x0", x1, "x1")
        # The parent's eps: a zero row gives cosine 0, as in cosine_similarity.
        z0 = normalize_rows(x0, eps=self.eps)
        z1 = normalize_rows(x1, eps=self.eps)
        entropy, rows = self._entropy(z0, z1)
        self._remember(rows, entropy)
        # The vMF reconstruction is symmetric in its arguments (kappa * cosine).
        reconstruction = relative_vmf_reconstruction(
            z1, z0, self._kappas()[1], validate=False
        )
        return self._sphere_record(entropy, reconstruction, z0.shape[1], rows)

    def _as_rows(self, x: Tensor, name: str) -> Tensor:
        """(N, D) rows: the embedding dimension last, every other one a sample."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 2:
            raise ValueError(
                f"{name} must have shape (batch_size, dim, ...), got {tuple(x.shape)}"
            )
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(
                f"dim={self.dim} is out of range for {name} of shape {tuple(x.shape)}"
            )
        if x.ndim == 2 and self.dim in (1, -1):
            return x
        return x.movedim(self.dim, -1).reshape(-1, x.shape[self.dim])

    def _entropy(self, z0: Tensor, z1: Tensor) -> Tuple[Tensor, Tensor]:
        """The entropy term and its gathered rows, by ``prediction``."""
        if self.prediction == "both":
            rows0 = gather_rows(z0, self.gather_distributed)
            rows1 = gather_rows(z1, self.gather_distributed)
            entropy = 0.5 * (self._sphere_entropy(rows0) + self._sphere_entropy(rows1))
            return entropy, torch.cat([rows0, rows1])
        # Only the branch that trains can resist collapse: its entropy is the term.
        prediction = z0 if self.prediction == "x0" else z1
        rows = gather_rows(prediction, self.gather_distributed)
        return self._sphere_entropy(rows), rows


__all__ = ["ERNegativeCosineSimilarity"]
