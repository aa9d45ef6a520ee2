"""KoLeo as an ER entropy term: DINOv2's regularizer in nats, with any estimator."""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightly.loss import KoLeoLoss
from torch import Tensor

from lightly_er.experimental._mixins import SphereEstimatorMixin
from lightly_er.experimental.estimator import EntropyEstimator, resolve_estimator
from lightly_er.loss._base import (
    ERComponents,
    log_norm_of,
)
from lightly_er.loss._kappa import DEFAULT_KAPPA, resolve_kappa
from lightly_er.loss._terms import (
    check_er_arguments,
    check_gather_distributed,
    normalize_rows,
)
from lightly_er.utils.checks import check_matrix, check_positive, check_real
from lightly_er.utils.dist import gather_rows


class ERKoLeoLoss(SphereEstimatorMixin, KoLeoLoss):
    """DINOv2's KoLeo regularizer as the entropy term of ER [0, 1, 2].

    KoLeo [1] is -mean_i log r_i, with r_i the distance from an L2-normalized
    feature to its nearest neighbor in the batch. It is, up to the factor d - 1
    and a constant, the Kozachenko-Leonenko estimate of the entropy on S^{d-1}
    (:func:`lightly_er.functional.sphere_entropy` with ``estimator="knn"``). This
    loss returns

        loss = -entropy_weight * H / (d - 1)

    with H in nats, so that with the default knn estimate its gradient is
    KoLeo's (the parent's ``eps`` aside): lightly's DINOv2 recipe keeps its weight
    0.1. Any other sphere estimator can take its place (through ``estimator``:
    the kernel estimators at concentration ``kappa``), the batch can be gathered over
    processes (lightly's KoLeo is per process), and an entropy memory can add the
    features of earlier batches as reference points. DINOv2-ER uses it beside
    :class:`lightly_er.loss.ERDINOLoss` (benchmarks/imagenet/vitb16/dinov2.py).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] Sablayrolles et al., Spreading vectors for similarity search, ICLR 2019
    - [2] DINOv2, 2023, https://arxiv.org/abs/2304.07193

    Args:
        p, eps:
            As :class:`lightly.loss.KoLeoLoss` (p must be 2: the estimator's balls
            are Euclidean).
        kappa:
            Concentration of the kernel estimators (10); not used by knn.
        entropy_weight:
            Weight of the entropy term, >= 0.
        estimator:
            An :class:`lightly_er.experimental.EntropyEstimator`, or None for the
            knn estimate (KoLeo's).
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.

    Attributes:
        last_components:
            The detached :class:`lightly_er.loss.ERComponents` of the last call
            (entropy in nats; the reconstruction is 0: KoLeo has none).

    Raises:
        ValueError: If p is not 2, eps or kappa is not positive, or
            entropy_weight is negative.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERKoLeoLoss
        >>> loss_fn = ERKoLeoLoss()
        >>> features = torch.randn(32, 64, requires_grad=True)
        >>> loss = 0.1 * loss_fn(features)  # DINOv2's weight
        >>> loss.backward()
        >>> entropy = loss_fn.last_components.entropy  # nats
    """

    def __init__(
        self,
        p: float = 2,
        eps: float = 1e-8,
        *,
        kappa: float = DEFAULT_KAPPA,
        entropy_weight: float = 1.0,
        estimator: Optional[EntropyEstimator] = None,
        gather_distributed: bool = False,
        **deprecated: Any,
    ) -> None:
        check_real(p, "p")
        if p != 2:
            raise ValueError(f"p must be 2 (Euclidean balls on the sphere), got {p}")
        check_positive(eps, "eps")
        check_er_arguments(kappa, entropy_weight)
        check_gather_distributed(gather_distributed)
        resolved = resolve_estimator(
            estimator, deprecated, "ERKoLeoLoss", default_name="knn"
        )
        super().__init__(p=p, eps=eps)
        self.entropy_weight = float(entropy_weight)
        self.gather_distributed = gather_distributed
        self._init_sphere(resolve_kappa(kappa))
        self._init_estimator(resolved)

    def forward(self, x: Tensor) -> Tensor:
        """Returns -entropy_weight * H(x) / (d - 1).

        Args:
            x: Features, shape (batch_size, embedding_size), L2-normalized here.

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(x).loss

    def forward_components(self, x: Tensor) -> ERComponents:
        """Returns the loss, the entropy (nats) and a reconstruction of 0."""
        check_matrix(x, "x", min_rows=1, min_dim=1, check_values=False)
        z = normalize_rows(x, eps=self.eps)
        rows = gather_rows(z, self.gather_distributed)
        entropy = self._sphere_entropy(rows)
        self._remember(rows, entropy)
        # In units of KoLeo: the knn estimate is (d - 1) times minus KoLeo.
        self.loss_scale = float(max(z.shape[1] - 1, 1))
        zero = torch.zeros((), dtype=entropy.dtype, device=entropy.device)
        # No reconstruction term, so no constant on its side.
        log_norm = log_norm_of(z.shape[1], self._kappas()[0])
        return self._record(entropy, zero, self.entropy_weight, log_norm, 0.0)


__all__ = ["ERKoLeoLoss"]
