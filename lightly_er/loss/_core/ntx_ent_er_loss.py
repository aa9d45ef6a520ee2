"""SimCLR-ER and MoCo-ER: the ER objective in place of lightly's NTXentLoss."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from lightly.loss.ntx_ent_loss import NTXentLoss
from torch import Tensor
from torch.nn import functional as F

from lightly_er.functional._vmf import relative_vmf_reconstruction
from lightly_er.loss._base import (
    ERComponents,
    SphereERLossMixin,
)
from lightly_er.loss._terms import (
    check_er_arguments,
    check_view_pair,
    normalize_rows,
    resolve_kappa,
)
from lightly_er.utils._checks import check_bool
from lightly_er.utils.dist import gather_rows


class ERNTXentLoss(SphereERLossMixin, NTXentLoss):
    """ER version of the contrastive NT-Xent loss: SimCLR-ER, and MoCo-ER with a bank.

    Replaces the InfoNCE objective of SimCLR [1] and MoCo [2] by the ER bound [0]
    I(Z0; Z1) >= H(Z1) + E[log q(Z1 | Z0)] on the L2-normalized outputs, and returns
    ``loss = -(entropy_weight * entropy + reconstruction)`` in nats:

    - reconstruction = log C_d(kappa) + kappa * mean_i cos(z0_i, z1_i), the vMF
      log-likelihood of one view given the other. ``kappa`` defaults to
      1 / temperature, which puts it on NT-Xent's logit scale: its gradient is that
      of NT-Xent's positive term.
    - entropy = the vMF kernel-density estimate of each view's entropy over the
      (gathered) batch, averaged over the two views (SimCLR-ER). With
      ``memory_bank_size > 0`` (MoCo-ER) it is the entropy of the queries with the
      bank's keys as extra kernel centers; the bank is read and updated as by
      NTXentLoss. InfoNCE's denominator is such an entropy estimate up to
      constants.

    Like NTXentLoss it accepts a batch of 1 (without a bank its entropy is the
    constant H_min; this warns once) and embeddings of dimension 1.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SimCLR, 2020, https://arxiv.org/abs/2002.05709
    - [2] MoCo, 2020, https://arxiv.org/abs/1911.05722

    Args:
        temperature:
            The parent's temperature; sets the default kappa.
        memory_bank_size:
            Size of the memory bank as a (num_features, dim) tuple, or 0 (SimCLR-ER).
        gather_distributed:
            If True, the entropy (and, as in the parent, the bank update) uses the
            batches of all processes.
        kappa:
            Concentration of the vMF kernel and reconstruction density, or None for
            1 / temperature (10, with a warning, for a non-positive temperature).
        entropy_weight:
            Weight of the entropy term, >= 0.

    Attributes:
        last_components:
            The detached :class:`ERComponents` of the last call.

    Raises:
        ValueError: If kappa is not positive or entropy_weight is negative.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERNTXentLoss
        >>> loss_fn = ERNTXentLoss(temperature=0.1)  # SimCLR-ER, kappa = 10
        >>> out0, out1 = torch.randn(32, 128), torch.randn(32, 128)
        >>> loss = loss_fn(out0, out1)
        >>>
        >>> # MoCo-ER: queries with gradient, keys from the momentum encoder
        >>> loss_fn = ERNTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))
        >>> queries = torch.randn(32, 128, requires_grad=True)
        >>> loss = loss_fn(queries, torch.randn(32, 128))
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: Union[int, Sequence[int]] = 0,
        gather_distributed: bool = False,
        *,
        kappa: Optional[float] = None,
        entropy_weight: float = 1.0,
    ) -> None:
        check_bool(gather_distributed, "gather_distributed")
        # The parent checks the temperature, the bank size and that torch.distributed
        # is available (lightly's tests count that call: it must happen once).
        super().__init__(
            temperature=temperature,
            memory_bank_size=memory_bank_size,
            gather_distributed=gather_distributed,
        )
        check_er_arguments(kappa, entropy_weight)
        self.entropy_weight = float(entropy_weight)
        self._init_sphere(resolve_kappa(kappa, temperature=temperature))

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
        # As in the parent, the bank is updated only in training (queries with grad).
        z1, negatives = self.memory_bank.forward(z1, update=out0.requires_grad)
        z0_all = gather_rows(z0, self.gather_distributed)
        rows = z0_all
        if negatives is None:
            # SimCLR: both views train, so both views' entropies count.
            z1_all = gather_rows(z1, self.gather_distributed)
            entropy = 0.5 * (
                self._sphere_entropy(z0_all) + self._sphere_entropy(z1_all)
            )
            rows = torch.cat([z0_all, z1_all])
            self._remember(rows, entropy)
        else:
            # MoCo: the keys have no gradient; the bank's keys are further kernel
            # centers for the queries' density, as they are InfoNCE's negatives.
            # Normalized again: lightly's bank starts as random normal vectors.
            bank = F.normalize(negatives.T.detach().to(z0.device), dim=1)
            entropy = self._sphere_entropy(z0_all, bank)
        # validate=False: the inputs were just normalized here; the loss itself is
        # checked for NaN/Inf in _record instead (no host sync per input).
        reconstruction = relative_vmf_reconstruction(
            z1, z0, self._kappas()[1], validate=False
        )
        return self._sphere_record(entropy, reconstruction, z0.shape[1], rows)


__all__ = ["ERNTXentLoss"]
