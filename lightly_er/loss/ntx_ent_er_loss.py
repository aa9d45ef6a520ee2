"""SimCLR-ER and MoCo-ER: the ER objective in place of lightly's NTXentLoss."""

from __future__ import annotations

from typing import Optional, Sequence, Union, cast

from lightly.loss import NTXentLoss
from torch import Tensor
from torch.nn import functional as F

from lightly_er.functional import SphereEstimator, sphere_entropy, vmf_reconstruction
from lightly_er.loss._base import (
    ERComponents,
    ERLossMixin,
    check_er_arguments,
    check_view_pair,
    gather_batch,
    normalize_rows,
)


class ERNTXentLoss(ERLossMixin, NTXentLoss):  # type: ignore[misc]
    """ER version of the contrastive NT-Xent loss: SimCLR-ER, and MoCo-ER with a bank.

    Replaces the InfoNCE objective of SimCLR [1] and MoCo [2] by the ER bound on the
    mutual information between the two views [0],

        I(Z0; Z1) >= H(Z1) + E[log q(Z1 | Z0)],

    and returns ``loss = -(entropy_weight * entropy + reconstruction)`` in nats, where
    z0, z1 are the L2-normalised outputs and

    - reconstruction = log C_d(kappa) + kappa * mean_i z0_i^T z1_i, the expected
      log-likelihood of one view under a von Mises-Fisher density of concentration
      kappa centred on the other (:func:`lightly_er.functional.vmf_reconstruction`);
    - entropy: a vMF kernel-density estimate
      (:func:`lightly_er.functional.sphere_entropy`), see below.

    Why this is the ER counterpart of InfoNCE: per sample, the NT-Xent loss is
    -cos(z0_i, z1_i) / temperature + log sum_j exp(cos(z0_i, c_j) / temperature). The
    first part is -(reconstruction - log C_d) with kappa = 1 / temperature. The second,
    the contrastive denominator, is log p(z0_i) - log C_d + log M for the vMF kernel
    density p with the M centres c_j: the batch (and its other view) for SimCLR, the
    positive key and the memory bank for MoCo. Its mean is minus the resubstitution
    entropy estimate of ER, up to constants: InfoNCE is an ER loss with a particular
    set of centres. So
    ``kappa`` defaults to ``1 / temperature``, which puts the reconstruction on the
    parent's logit scale. ER keeps the two terms apart: the alignment term is an exact
    expected log-likelihood, the entropy an estimate that can be weighted, and the
    positive pair is no longer one of the kernel centres that spread the batch.

    Without a memory bank (SimCLR-ER) the entropy is (H(z0) + H(z1)) / 2 over the
    whole (gathered) batch, each view on its own, and gradient flows through both
    views. With ``memory_bank_size > 0`` (MoCo-ER) out0 are the queries, with
    gradient, and out1 the keys of the momentum encoder. The parent's memory bank is
    used and updated exactly as by NTXentLoss: the keys of this batch are enqueued
    (when out0 requires grad) after the bank has been read. The entropy is that of the
    queries, with the bank's keys as M extra kernel centres of the density estimate:
    log p(z0_i) = log C_d + log(sum_{j <= N} exp(kappa z0_i^T z0_j) + sum_{m <= M}
    exp(kappa z0_i^T k_m)) - log(N + M). The bank carries no gradient, as in MoCo.
    lightly fills a fresh bank with random unit vectors, so, as for the parent's
    negatives, the first calls estimate the density partly with those random
    centres, which inflates the entropy until the bank holds real keys.

    Choices where the paper leaves room: kappa is fixed (1 / temperature unless
    given) and shared by entropy and reconstruction, so with entropy_weight 1 the
    constant log C_d(kappa) cancels; the current queries are kernel centres of their
    own density (set ``leave_one_out`` to drop the self-term); the bank enters only
    the entropy, never the reconstruction.

    - [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in
      Multi-View Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SimCLR, 2020, https://arxiv.org/abs/2002.05709
    - [2] MoCo, 2020, https://arxiv.org/abs/1911.05722

    Attributes:
        temperature:
            The parent's temperature; here it only sets the default kappa.
        memory_bank_size:
            Size of the memory bank as a (num_features, dim) tuple, or 0 (SimCLR-ER).
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes (and,
            as in the parent, the bank is updated with the keys of all processes).
        kappa:
            Concentration of the vMF kernel and of the reconstruction density.
        entropy_weight:
            Weight of the entropy term in the loss.
        estimator:
            Entropy estimator, ``"joe"`` or ``"plugin"``.
        leave_one_out:
            Whether a query is left out of its own density estimate.
        last_components:
            The detached :class:`ERComponents` of the last call.

    Raises:
        ValueError: As NTXentLoss, and if kappa is not positive (or is None and
            temperature is not positive), entropy_weight is negative, or the
            estimator is unknown.

    Examples:
        >>> import torch
        >>> from lightly_er.loss.ntx_ent_er_loss import ERNTXentLoss
        >>> # SimCLR-ER
        >>> loss_fn = ERNTXentLoss(temperature=0.1)
        >>> loss_fn.kappa
        10.0
        >>> out0, out1 = torch.randn(32, 128), torch.randn(32, 128)
        >>> loss = loss_fn(out0, out1)
        >>>
        >>> # MoCo-ER: queries with gradient, keys from the momentum encoder
        >>> loss_fn = ERNTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))
        >>> queries = torch.randn(32, 128, requires_grad=True)
        >>> keys = torch.randn(32, 128)
        >>> loss = loss_fn(queries, keys)
        >>> entropy = loss_fn.last_components.entropy
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: Union[int, Sequence[int]] = 0,
        gather_distributed: bool = False,
        *,
        kappa: Optional[float] = None,
        entropy_weight: float = 1.0,
        estimator: str = "joe",
        leave_one_out: bool = False,
    ) -> None:
        """Initialises the loss; see the class docstring for the arguments."""
        super().__init__(
            temperature=temperature,
            memory_bank_size=memory_bank_size,
            gather_distributed=gather_distributed,
        )
        check_er_arguments(kappa, entropy_weight, estimator, gather_distributed)
        if kappa is None:
            if not temperature > 0:
                raise ValueError(
                    "temperature must be positive when kappa is not given "
                    f"(kappa defaults to 1 / temperature), got {temperature}"
                )
            kappa = 1.0 / temperature
        self.kappa = float(kappa)
        self.entropy_weight = float(entropy_weight)
        self.estimator = cast(SphereEstimator, estimator)
        self.leave_one_out = leave_one_out

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Returns the ER loss -(entropy_weight * entropy + reconstruction).

        Args:
            out0:
                Output projections of the first views (MoCo: the queries).
                Shape: (batch_size, embedding_size)
            out1:
                Output projections of the second views (MoCo: the keys).
                Shape: (batch_size, embedding_size)

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(out0, out1).loss

    def forward_components(self, out0: Tensor, out1: Tensor) -> ERComponents:
        """Returns the loss and its entropy and reconstruction terms.

        Updates the memory bank, if any, as :meth:`forward` does.

        Args:
            out0:
                Output projections of the first views (MoCo: the queries).
            out1:
                Output projections of the second views (MoCo: the keys).

        Returns:
            :class:`ERComponents` (loss, entropy, reconstruction), with gradients.
        """
        check_view_pair(out0, "out0", out1, "out1")
        z0 = normalize_rows(out0)
        z1 = normalize_rows(out1)
        # negatives: (dim, bank_size), read before this batch's keys are enqueued.
        z1, negatives = self.memory_bank.forward(z1, update=out0.requires_grad)
        z0_all = gather_batch(z0, self.gather_distributed)
        if negatives is None:
            z1_all = gather_batch(z1, self.gather_distributed)
            entropy = 0.5 * (self._entropy(z0_all, None) + self._entropy(z1_all, None))
        else:
            bank = F.normalize(negatives.T.detach().to(z0.device), dim=1)
            entropy = self._entropy(z0_all, bank)
        reconstruction = vmf_reconstruction(z1, z0, self.kappa, validate=False)
        return self._record(entropy, reconstruction, self.entropy_weight)

    def _entropy(self, z: Tensor, extra_support: Optional[Tensor]) -> Tensor:
        return sphere_entropy(
            z,
            self.kappa,
            estimator=self.estimator,
            leave_one_out=self.leave_one_out,
            validate=False,
            extra_support=extra_support,
        )


__all__ = ["ERNTXentLoss"]
