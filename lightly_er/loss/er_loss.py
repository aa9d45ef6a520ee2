"""The generic two-view ER objective, on the sphere or on a discrete support."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Optional, Tuple, cast

import torch
from torch import Tensor, nn

from lightly_er.experimental._memory import DiscreteMemory
from lightly_er.experimental._mixins import (
    SphereEstimatorMixin,
    discrete_memory,
    marginal_distribution,
)
from lightly_er.experimental.estimator import EntropyEstimator, resolve_estimator
from lightly_er.functional import discrete_entropy, discrete_reconstruction
from lightly_er.functional._vmf import relative_vmf_reconstruction
from lightly_er.loss._base import ERComponents, Support
from lightly_er.loss._kappa import DEFAULT_KAPPA, resolve_kappa
from lightly_er.loss._terms import (
    check_er_arguments,
    check_gather_distributed,
    check_view_pair,
    log_softmax_float32,
    normalize_rows,
)
from lightly_er.utils.checks import check_choice, check_positive
from lightly_er.utils.dist import gather_rows

_SUPPORTS: Tuple[str, ...] = ("sphere", "discrete")


class ERLoss(SphereEstimatorMixin, nn.Module):
    """Entropy and reconstruction (ER) loss between two views of the same inputs.

    Maximizes the ER lower bound [0] on the mutual information between the
    embeddings of two views, I(Z0; Z1) >= H(Z1) + E[log q(Z1 | Z0)], and returns
    ``loss = -(entropy_weight * entropy + reconstruction)`` in nats. Both views
    carry gradient, so the entropy is the mean of both views' entropies.

    - ``support="sphere"``: the outputs are L2-normalized; the entropy is the vMF
      kernel-density estimate over the (gathered) batch and the reconstruction
      log C_d(kappa) + kappa * mean_i cos(z0_i, z1_i).
    - ``support="discrete"``: the outputs are logits over K classes,
      p = softmax(out / temperature); the entropy is that of the batch marginal
      mean_i p_i and the reconstruction the negative cross-entropy, averaged over
      both directions.

    docs/objectives.md explains the choices where the paper leaves room, and the
    edges: a batch of 1 (its sphere entropy is the constant H_min; this warns once)
    and dimension 1 are accepted.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        support:
            ``"sphere"`` or ``"discrete"``.
        kappa:
            Concentration of the vMF kernel and reconstruction density (sphere; 10,
            the authors' default).
        entropy_weight:
            Weight of the entropy term, >= 0.
        estimator:
            The :class:`lightly_er.experimental.EntropyEstimator` with research
            options, or None for the authors' plug-in estimate (the discrete
            support accepts only its ``memory_size`` and ``validate``).
        temperature:
            Softmax temperature of the logits (discrete).
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.

    Attributes:
        last_components:
            The detached :class:`ERComponents` of the last call.
        entropy_memory:
            With ``EntropyEstimator(memory_size=...)``, the memory of earlier rows of
            both views (sphere: extra kernel centers; discrete: extra rows of the
            marginal), else None.

    Raises:
        ValueError: If support is unknown, kappa or temperature is not positive,
            entropy_weight is negative, or an estimator option does not apply.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERLoss
        >>> loss_fn = ERLoss(support="sphere", kappa=10.0)
        >>> loss = loss_fn(torch.randn(32, 128), torch.randn(32, 128))
        >>> entropy = loss_fn.last_components.entropy
        >>> # prototype logits, e.g. from a DINO or SwAV head
        >>> loss_fn = ERLoss(support="discrete", temperature=0.1)
        >>> loss = loss_fn(torch.randn(32, 256), torch.randn(32, 256))
    """

    def __init__(
        self,
        support: Support = "sphere",
        kappa: float = DEFAULT_KAPPA,
        entropy_weight: float = 1.0,
        estimator: Optional[EntropyEstimator] = None,
        temperature: float = 0.1,
        gather_distributed: bool = False,
        **deprecated: Any,
    ) -> None:
        super().__init__()
        check_choice(support, "support", _SUPPORTS)
        if kappa is None:
            raise TypeError("kappa must be a float, got None")
        check_er_arguments(kappa, entropy_weight)
        check_gather_distributed(gather_distributed)
        check_positive(temperature, "temperature")
        resolved = resolve_estimator(
            estimator, deprecated, "ERLoss", discrete=support == "discrete"
        )
        self.support = support
        self.entropy_weight = float(entropy_weight)
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed
        discrete = support == "discrete"
        # The discrete support's memory holds probability rows (below), not vectors.
        sphere = replace(resolved, memory_size=0) if discrete else resolved
        self._init_sphere(resolve_kappa(kappa))
        self._init_estimator(sphere)
        self.estimator = resolved
        if discrete:
            # The same attribute as on the sphere, so checkpoints keep their keys;
            # it holds probability rows here.
            self.entropy_memory = discrete_memory(resolved.memory_rows)  # type: ignore[assignment]

    def entropy_settings(self) -> Dict[str, Any]:
        """How this loss's entropy is measured, as EntropyMeter's keyword arguments.

        Returns:
            ``{"support": "sphere", "kappa": ..., "estimator": ...}``, or
            ``{"support": "discrete", "temperature": ...}`` for the discrete support.
        """
        if self.support == "discrete":
            return {"support": "discrete", "temperature": self.temperature}
        return super().entropy_settings()

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
        if self.support == "discrete":
            entropy, reconstruction = self._discrete_terms(out0, out1)
            return self._record(entropy, reconstruction, self.entropy_weight)
        z0 = normalize_rows(out0)
        z1 = normalize_rows(out1)
        rows0 = gather_rows(z0, self.gather_distributed)
        rows1 = gather_rows(z1, self.gather_distributed)
        # Both views train, so both views' entropies count.
        entropy = 0.5 * (self._sphere_entropy(rows0) + self._sphere_entropy(rows1))
        rows = torch.cat([rows0, rows1])
        self._remember(rows, entropy)
        reconstruction = relative_vmf_reconstruction(
            z1, z0, self._kappas()[1], validate=False
        )
        return self._sphere_record(entropy, reconstruction, z0.shape[1], rows)

    def _discrete_terms(self, out0: Tensor, out1: Tensor) -> Tuple[Tensor, Tensor]:
        # Both views train: each predicts the other, as in the authors' reference.
        log_p0 = log_softmax_float32(out0, self.temperature)
        log_p1 = log_softmax_float32(out1, self.temperature)
        p0, p1 = log_p0.exp(), log_p1.exp()
        memory = cast("Optional[DiscreteMemory]", self.entropy_memory)
        if memory is not None:
            # Both views' rows make one marginal with the memory's.
            marginal, staged = marginal_distribution(
                [log_p0, log_p1], self.gather_distributed, memory=memory
            )
            entropy = discrete_entropy(marginal.unsqueeze(0), validate=False)
            memory.stage(*staged, entropy)
            reconstruction = 0.5 * (
                discrete_reconstruction(p1, log_p0, log_input=True, validate=False)
                + discrete_reconstruction(p0, log_p1, log_input=True, validate=False)
            )
            return entropy, reconstruction
        entropy0 = discrete_entropy(self._marginal_rows(p0), validate=False)
        entropy1 = discrete_entropy(self._marginal_rows(p1), validate=False)
        reconstruction = 0.5 * (
            discrete_reconstruction(p1, log_p0, log_input=True, validate=False)
            + discrete_reconstruction(p0, log_p1, log_input=True, validate=False)
        )
        return 0.5 * (entropy0 + entropy1), reconstruction

    def _marginal_rows(self, p: Tensor) -> Tensor:
        # One mean row per process: their mean is the global batch marginal.
        return gather_rows(p.mean(dim=0, keepdim=True), self.gather_distributed)


__all__ = ["ERLoss"]
