"""MSN-ER: the ER objective of MSN, whose ME-MAX regularizer is the entropy term."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from lightly.loss import MSNLoss
from lightly.loss.msn_loss import sharpen, sinkhorn
from torch import Tensor
from torch.nn import functional as F

from lightly_er.experimental._mixins import (
    DiscreteEstimatorMixin,
    marginal_distribution,
)
from lightly_er.experimental.estimator import EntropyEstimator, resolve_estimator
from lightly_er.functional import discrete_entropy
from lightly_er.functional._discrete import discrete_reconstruction
from lightly_er.loss._base import ERComponents
from lightly_er.loss._terms import (
    check_gather_distributed,
    log_softmax_float32,
    softmax_float32,
)
from lightly_er.utils.checks import check_matrix, check_positive, check_real


class MSNTerms(DiscreteEstimatorMixin):
    """The terms of MSN-ER and PMSN-ER, shared: the forward of both losses.

    A subclass sets ``temperature``, ``sinkhorn_iterations``,
    ``regularization_weight`` and ``gather_distributed`` (its lightly parent's) and
    may add a prior through :meth:`prior_log_probabilities`.
    """

    temperature: float
    sinkhorn_iterations: int
    regularization_weight: float
    gather_distributed: bool

    def _init_er(
        self, estimator: Optional[EntropyEstimator], deprecated: Dict[str, Any]
    ) -> None:
        # The parent checks neither; a negative weight would reward collapse.
        check_real(self.regularization_weight, "regularization_weight")
        if self.regularization_weight < 0:
            raise ValueError(
                "regularization_weight must be finite and >= 0, got "
                f"{self.regularization_weight}"
            )
        check_gather_distributed(self.gather_distributed)
        name = type(self).__name__
        self._init_discrete()
        self._init_estimator(
            resolve_estimator(estimator, deprecated, name, discrete=True)
        )

    def _temperature(self) -> float:
        return float(self.temperature)

    # A read-only view of the parent's weight, where the mixin declares an attribute.
    @property
    def entropy_weight(self) -> float:  # type: ignore[override]
        """The weight of the entropy term: the parent's ``regularization_weight``."""
        return float(self.regularization_weight)

    def prior_log_probabilities(
        self, num_prototypes: int, like: Tensor
    ) -> Optional[Tensor]:
        """log pi of a prior over the prototypes, or None for the uniform (MSN)."""
        return None

    def forward(
        self,
        anchors: Tensor,
        targets: Tensor,
        prototypes: Tensor,
        target_sharpen_temperature: float = 0.25,
    ) -> Tensor:
        """Returns the loss -(regularization_weight * entropy + reconstruction).

        Args:
            anchors:
                Outputs of the masked anchor views, shape (batch_size * views, dim).
            targets:
                Outputs of the target views, shape (batch_size, dim).
            prototypes:
                The prototypes, shape (num_prototypes, dim).
            target_sharpen_temperature:
                Temperature that sharpens the target probabilities.

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(
            anchors, targets, prototypes, target_sharpen_temperature
        ).loss

    def forward_components(
        self,
        anchors: Tensor,
        targets: Tensor,
        prototypes: Tensor,
        target_sharpen_temperature: float = 0.25,
    ) -> ERComponents:
        """Returns the loss, entropy and reconstruction; arguments as in forward."""
        _check_msn_inputs(anchors, targets, prototypes)
        check_positive(target_sharpen_temperature, "target_sharpen_temperature")
        num_views = anchors.shape[0] // targets.shape[0]
        anchors = F.normalize(anchors, dim=1)
        prototypes = F.normalize(prototypes, dim=1)
        # log_softmax, where the parent takes the log of a softmax.
        log_p = log_softmax_float32(anchors @ prototypes.T, self.temperature)
        with torch.no_grad():
            targets = F.normalize(targets, dim=1)
            target_probs = softmax_float32(targets @ prototypes.T, self.temperature)
            target_probs = sharpen(target_probs, temperature=target_sharpen_temperature)
            if self.sinkhorn_iterations > 0:
                target_probs = sinkhorn(
                    probabilities=target_probs,
                    iterations=self.sinkhorn_iterations,
                    gather_distributed=self.gather_distributed,
                )
            target_probs = target_probs.repeat((num_views, 1))
        reconstruction = discrete_reconstruction(
            target_probs, log_p, log_input=True, validate=False
        )
        # ME-MAX: the entropy of the mean prediction over all anchor views, over the
        # global batch with gather_distributed (MSN's reference code all-reduces it).
        marginal, staged = marginal_distribution(
            [log_p], self.gather_distributed, memory=self.entropy_memory
        )
        entropy = discrete_entropy(marginal.unsqueeze(0), validate=False)
        log_prior = self.prior_log_probabilities(marginal.shape[0], marginal)
        if log_prior is not None:
            # The entropy relative to the prior pi: H(m) + sum_k m_k log pi_k
            # = -KL(m || pi), at most 0, reached at m = pi.
            entropy = entropy + (marginal * log_prior).sum()
        if self.entropy_memory is not None:
            self.entropy_memory.stage(*staged, entropy)
        return self._record(entropy, reconstruction, self.entropy_weight)


class ERMSNLoss(MSNTerms, MSNLoss):
    """MSN loss as an ER objective: ME-MAX is its entropy term [0, 1].

    MSN [1] predicts, from masked anchor views, the sharpened (and Sinkhorn-balanced)
    prototype assignment of a target view, and adds ME-MAX, log K - H(mean anchor
    prediction), against collapse. That is already an ER bound: its cross-entropy is
    minus the reconstruction E[sum_k t_k log p_k] and ME-MAX is minus the entropy of
    the marginal, up to the constant log K. MSN-ER returns, in nats,

        loss = -(regularization_weight * H(mean_b p[b]) + reconstruction)

    so ``loss + regularization_weight * log K`` equals MSNLoss at every setting (the
    same gradient), with three differences, each off or equal to the parent by
    default except the first: the prediction's log-probabilities come from
    log_softmax (the parent takes log(softmax), which is -inf for a sharp
    prediction); with ``gather_distributed`` the marginal is taken over the global
    batch (as in MSN's reference code; lightly averages it per process); and an
    optional ``EntropyEstimator(memory_size=...)`` adds the prediction rows of earlier batches to
    the marginal. ``sinkhorn_iterations=0`` leaves the entropy term as the only
    anti-collapse device. docs/objectives.md discusses the choices.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] MSN, 2022, https://arxiv.org/abs/2204.07141

    Args:
        temperature, sinkhorn_iterations, regularization_weight, gather_distributed:
            As :class:`lightly.loss.MSNLoss`; ``regularization_weight`` is the
            entropy weight (``entropy_weight`` reads it).
        estimator:
            An :class:`lightly_er.experimental.EntropyEstimator` for the options
            that apply to a discrete entropy (``memory_size``, ``validate``), or
            None.

    Attributes:
        last_components:
            The detached :class:`lightly_er.loss.ERComponents` of the last call.

    Raises:
        ValueError: If regularization_weight is negative or an estimator option
            does not apply.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERMSNLoss
        >>> loss_fn = ERMSNLoss()
        >>> anchors = torch.randn(8 * 3, 16, requires_grad=True)  # 3 anchor views
        >>> targets = torch.randn(8, 16)
        >>> prototypes = torch.randn(32, 16, requires_grad=True)
        >>> loss = loss_fn(anchors, targets, prototypes)
        >>> loss.backward()
        >>> entropy = loss_fn.last_components.entropy  # nats, at most log(32)
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        regularization_weight: float = 1.0,
        gather_distributed: bool = False,
        *,
        estimator: Optional[EntropyEstimator] = None,
        **deprecated: Any,
    ) -> None:
        super().__init__(
            temperature=temperature,
            sinkhorn_iterations=sinkhorn_iterations,
            regularization_weight=regularization_weight,
            gather_distributed=gather_distributed,
        )
        self._init_er(estimator, deprecated)


def _check_msn_inputs(anchors: Tensor, targets: Tensor, prototypes: Tensor) -> None:
    for x, name in (
        (anchors, "anchors"),
        (targets, "targets"),
        (prototypes, "prototypes"),
    ):
        check_matrix(x, name, min_rows=1, min_dim=1, check_values=False)
    if not anchors.shape[1] == targets.shape[1] == prototypes.shape[1]:
        raise ValueError(
            "anchors, targets and prototypes must have the same dim, got shapes "
            f"{tuple(anchors.shape)}, {tuple(targets.shape)} and "
            f"{tuple(prototypes.shape)}"
        )
    if anchors.shape[0] % targets.shape[0] != 0:
        raise ValueError(
            "anchors must hold a whole number of views of the targets' batch, got "
            f"{anchors.shape[0]} anchor rows for {targets.shape[0]} targets"
        )


__all__ = ["ERMSNLoss"]
