"""PMSN-ER: MSN-ER with the entropy measured relative to PMSN's power-law prior."""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightly.loss import PMSNLoss
from torch import Tensor

from lightly_er.experimental.estimator import EntropyEstimator
from lightly_er.loss.msn_er_loss import MSNTerms
from lightly_er.utils.checks import check_real


class ERPMSNLoss(MSNTerms, PMSNLoss):
    """PMSN loss as an ER objective: the entropy relative to a power-law prior [0, 1].

    PMSN [1] replaces MSN's ME-MAX by KL(pi || m) between a power-law prior
    pi_k proportional to k^-power_law_exponent and the mean anchor prediction m. That
    divergence is not an entropy of m; its ER counterpart is the entropy of m
    relative to pi,

        H_pi(m) = H(m) + sum_k m_k log pi_k = -KL(m || pi) <= 0,

    maximal (0) exactly where PMSN's term is minimal, at m = pi. PMSN-ER returns, in
    nats, ``loss = -(regularization_weight * H_pi(m) + reconstruction)``, with MSN's
    reconstruction (see :class:`lightly_er.loss.ERMSNLoss`). As sum_k m_k log pi_k
    <= 0, this is still a lower bound on the mutual information. It equals lightly's
    PMSNLoss at ``regularization_weight=0`` and, with ``power_law_exponent=0`` (a
    uniform prior), lightly's MSNLoss exactly; at other settings the two differ by
    the direction of the divergence (documented in docs/objectives.md).
    ``last_components.entropy`` is H_pi(m).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] PMSN, 2022, https://arxiv.org/abs/2210.07277

    Args:
        temperature, sinkhorn_iterations, regularization_weight,
        power_law_exponent, gather_distributed:
            As :class:`lightly.loss.PMSNLoss`.
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
        TypeError: If power_law_exponent is not a real number.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERPMSNLoss
        >>> loss_fn = ERPMSNLoss(power_law_exponent=0.25)
        >>> anchors = torch.randn(8 * 3, 16, requires_grad=True)
        >>> loss = loss_fn(anchors, torch.randn(8, 16), torch.randn(32, 16))
        >>> loss.backward()
        >>> relative_entropy = loss_fn.last_components.entropy  # <= 0 nats
    """

    power_law_exponent: float

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        regularization_weight: float = 1,
        power_law_exponent: float = 0.25,
        gather_distributed: bool = False,
        *,
        estimator: Optional[EntropyEstimator] = None,
        **deprecated: Any,
    ) -> None:
        check_real(power_law_exponent, "power_law_exponent")
        super().__init__(
            temperature=temperature,
            sinkhorn_iterations=sinkhorn_iterations,
            regularization_weight=regularization_weight,
            power_law_exponent=power_law_exponent,
            gather_distributed=gather_distributed,
        )
        self._init_er(estimator, deprecated)

    def prior_log_probabilities(
        self, num_prototypes: int, like: Tensor
    ) -> Optional[Tensor]:
        """log pi_k = -s log k - log sum_j j^-s for k = 1..K (s the exponent)."""
        k = torch.arange(1, num_prototypes + 1, device=like.device, dtype=like.dtype)
        log_weights = -float(self.power_law_exponent) * torch.log(k)
        # The normalizer in log-sum-exp form: exact for any exponent and K.
        return log_weights - torch.logsumexp(log_weights, dim=0)


__all__ = ["ERPMSNLoss"]
