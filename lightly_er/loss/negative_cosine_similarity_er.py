"""BYOL-ER and SimSiam-ER: the ER objective in place of NegativeCosineSimilarity."""

from __future__ import annotations

from typing import Any, Optional

from lightly_er.experimental._mixins import SphereEstimatorMixin
from lightly_er.experimental.estimator import EntropyEstimator, resolve_estimator
from lightly_er.loss._core import negative_cosine_similarity_er as _core
from lightly_er.loss._terms import DEFAULT_KAPPA

Prediction = _core.Prediction


class ERNegativeCosineSimilarity(
    SphereEstimatorMixin, _core.ERNegativeCosineSimilarity
):
    """ER version of the negative cosine similarity of BYOL and SimSiam.

    The loss of :mod:`lightly_er.loss._core.negative_cosine_similarity_er` (what
    goes to lightly) with one more argument, ``estimator``, for the research
    options. docs/objectives.md explains the choices.

    Args:
        dim:
            The dimension of the embeddings, as in the parent. Inputs of more than
            two dimensions (feature maps) are read as one sample per position.
        eps:
            Smallest norm in the L2 normalization, as in the parent.
        kappa:
            Concentration of the vMF reconstruction density and kernel (10, the
            authors' default). A learned kappa keeps this value as the loss scale.
        entropy_weight:
            Weight of the entropy term, >= 0.
        estimator:
            The :class:`lightly_er.experimental.EntropyEstimator` with research
            options, or None for the authors' plug-in estimate.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.
        prediction:
            Which input is the prediction whose entropy is the term: ``"x0"``,
            ``"x1"``, or ``"both"`` (the mean of both entropies).

    Raises:
        ValueError: If kappa is not positive, entropy_weight is negative, or
            prediction is unknown.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.experimental import EntropyEstimator
        >>> from lightly_er.loss import ERNegativeCosineSimilarity
        >>> criterion = ERNegativeCosineSimilarity(
        ...     prediction="x0", estimator=EntropyEstimator(memory_size=256)
        ... )
        >>> loss = criterion(torch.randn(32, 128, requires_grad=True), torch.randn(32, 128))
    """

    def __init__(
        self,
        dim: int = 1,
        eps: float = 1e-8,
        *,
        kappa: float = DEFAULT_KAPPA,
        entropy_weight: float = 1.0,
        estimator: Optional[EntropyEstimator] = None,
        gather_distributed: bool = False,
        prediction: Prediction = "both",
        **deprecated: Any,
    ) -> None:
        super().__init__(
            dim=dim,
            eps=eps,
            kappa=kappa,
            entropy_weight=entropy_weight,
            gather_distributed=gather_distributed,
            prediction=prediction,
        )
        self._init_estimator(
            resolve_estimator(estimator, deprecated, "ERNegativeCosineSimilarity")
        )


__all__ = ["ERNegativeCosineSimilarity"]
