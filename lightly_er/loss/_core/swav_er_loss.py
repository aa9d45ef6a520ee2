"""SwAV-ER: the ER objective on the discrete support of SwAV's prototypes."""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from lightly.loss.swav_loss import SwaVLoss, sinkhorn
from torch import Tensor

from lightly_er.functional._discrete import cross_view_reconstruction
from lightly_er.loss._base import (
    DiscreteERLossMixin,
    ERComponents,
)
from lightly_er.loss._terms import (
    check_er_arguments,
    check_gather_distributed,
    log_softmax_float32,
    softmax_float32,
    target_entropy,
)
from lightly_er.utils._checks import check_bool, check_int, check_positive


class ERSwaVLoss(DiscreteERLossMixin, SwaVLoss):
    """SwAV loss with an explicit entropy term: SwAV-ER [0].

    SwAV [1] predicts the prototype codes of one crop from every other crop and
    avoids collapse by computing the codes with Sinkhorn-Knopp, which spreads the
    batch equally over the prototypes. SwAV-ER adds that term explicitly (in place
    of Sinkhorn with ``use_sinkhorn=False``, the paper's variant) and returns, in
    nats, ``loss = -(entropy_weight * entropy + reconstruction)``:

    - reconstruction: the mean over SwaVLoss's crop pairs (high-resolution crop i,
      crop v != i) of E_b[sum_k c_i[b, k] log q_v[b, k]], with
      log q_v = log_softmax(out_v / temperature) and codes c_i computed without
      gradient: lightly's ``sinkhorn`` with the queue appended, as in SwaVLoss, or,
      with ``use_sinkhorn=False``, softmax(out_i / sinkhorn_epsilon) (Sinkhorn's
      per-sample normalization without its equipartition);
    - entropy: of the mean prediction over the high-resolution crops, the queue
      outputs included without gradient.

    At ``entropy_weight=0`` (and the default ``use_sinkhorn=True``) the loss equals
    SwaVLoss.
    Like SwaVLoss it takes the outputs of one prototype set.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SwAV, 2020, https://arxiv.org/abs/2006.09882

    Args:
        temperature, sinkhorn_iterations, sinkhorn_epsilon,
        sinkhorn_gather_distributed:
            As :class:`lightly.loss.SwaVLoss`.
        entropy_weight:
            Weight of the entropy term, >= 0.
        use_sinkhorn:
            Whether the codes come from Sinkhorn, as in SwAV (the default: the swap
            keeps SwAV's anti-collapse device and adds the term). The paper's
            SwAV-ER is ``use_sinkhorn=False``, the entropy term in its place.
        gather_distributed:
            If True, the entropy is estimated over the batches of all processes.

    Attributes:
        last_components:
            The detached :class:`ERComponents` of the last call; entropy +
            reconstruction is the paper's surrogate, not a bound.
        last_bound:
            A lower bound on the mutual information, detached: the codes' marginal
            entropy plus the same reconstruction.

    Raises:
        ValueError: If temperature or sinkhorn_epsilon is not positive, or
            entropy_weight is negative.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> import torch
        >>> from lightly_er.loss import ERSwaVLoss
        >>> loss_fn = ERSwaVLoss()
        >>> # prototype scores of 2 high- and 4 low-resolution crops, 64 prototypes
        >>> high = [torch.randn(8, 64, requires_grad=True) for _ in range(2)]
        >>> low = [torch.randn(8, 64, requires_grad=True) for _ in range(4)]
        >>> loss = loss_fn(high, low)
        >>> loss.backward()
        >>> entropy = loss_fn.last_components.entropy  # nats, at most log(64)
    """

    entropy_weight: float
    use_sinkhorn: bool
    gather_distributed: bool

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_gather_distributed: bool = False,
        *,
        entropy_weight: float = 1.0,
        use_sinkhorn: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        # The parent checks none of these; a bad value would surface as NaN later.
        check_positive(temperature, "temperature")
        check_int(sinkhorn_iterations, "sinkhorn_iterations", 0)
        check_positive(sinkhorn_epsilon, "sinkhorn_epsilon")
        check_bool(sinkhorn_gather_distributed, "sinkhorn_gather_distributed")
        check_bool(use_sinkhorn, "use_sinkhorn")
        check_er_arguments(None, entropy_weight)
        check_gather_distributed(gather_distributed)
        super().__init__(
            temperature=temperature,
            sinkhorn_iterations=sinkhorn_iterations,
            sinkhorn_epsilon=sinkhorn_epsilon,
            sinkhorn_gather_distributed=sinkhorn_gather_distributed,
        )
        self.entropy_weight = float(entropy_weight)
        self.use_sinkhorn = use_sinkhorn
        self.gather_distributed = gather_distributed
        self._init_discrete()

    def _temperature(self) -> float:
        return float(self.temperature)

    def forward(
        self,
        high_resolution_outputs: List[Tensor],
        low_resolution_outputs: List[Tensor],
        queue_outputs: Union[List[Tensor], None] = None,
    ) -> Tensor:
        """Returns the SwAV-ER loss -(entropy_weight * entropy + reconstruction).

        Args:
            high_resolution_outputs:
                Prototype scores of the high-resolution crops, one tensor of shape
                (batch_size, n_prototypes) per crop.
            low_resolution_outputs:
                Prototype scores of the low-resolution crops, same shapes.
            queue_outputs:
                Prototype scores of the queued high-resolution features of earlier
                batches, one tensor of shape (queue_length, n_prototypes) per
                high-resolution crop, or None.

        Returns:
            The loss, a scalar tensor.
        """
        return self.forward_components(
            high_resolution_outputs, low_resolution_outputs, queue_outputs
        ).loss

    def forward_components(
        self,
        high_resolution_outputs: List[Tensor],
        low_resolution_outputs: List[Tensor],
        queue_outputs: Union[List[Tensor], None] = None,
    ) -> ERComponents:
        """Returns the loss, entropy and reconstruction; arguments as in forward."""
        _check_crops(high_resolution_outputs, low_resolution_outputs, queue_outputs)
        codes = [
            self._codes(out, None if queue_outputs is None else queue_outputs[i])
            for i, out in enumerate(high_resolution_outputs)
        ]
        crops = list(high_resolution_outputs) + list(low_resolution_outputs)
        log_q = [log_softmax_float32(out, self.temperature) for out in crops]

        reconstruction = cross_view_reconstruction(codes, log_q)
        queue_p: Optional[Tensor] = None
        if queue_outputs is not None:
            # The queue enlarges the batch the marginal is estimated on, as it
            # enlarges Sinkhorn's; it holds earlier batches, so no gradient.
            with torch.no_grad():
                queue_p = log_softmax_float32(
                    torch.cat([q.detach() for q in queue_outputs]), self.temperature
                ).exp_()
        entropy = self._marginal_entropy(log_q[: len(high_resolution_outputs)], queue_p)
        components = self._record(entropy, reconstruction, self.entropy_weight)
        # The prediction's entropy trains but does not make a bound; the codes'
        # does: I(C; X') >= H(C) + E[log q(C | X')].
        bound = target_entropy(codes, self.gather_distributed) + reconstruction
        self.last_bound = bound.detach()
        return components

    @torch.no_grad()
    def _codes(self, out: Tensor, queue: Optional[Tensor]) -> Tensor:
        """The target code of one high-resolution crop, in float32 or float64."""
        with torch.autocast(device_type=out.device.type, enabled=False):
            out = out.detach()
            batch_size = out.shape[0]
            if out.dtype in (torch.float16, torch.bfloat16):
                out = out.float()
            if not self.use_sinkhorn:
                # Sinkhorn's per-sample step alone: the equipartition it would add
                # is what the entropy term now asks for explicitly.
                return softmax_float32(out, self.sinkhorn_epsilon)
            if queue is not None:
                out = torch.cat([out, queue.detach().to(out.dtype)])
            codes: Tensor = sinkhorn(
                out,
                iterations=self.sinkhorn_iterations,
                epsilon=self.sinkhorn_epsilon,
                gather_distributed=self.sinkhorn_gather_distributed,
            )
            # The queue only conditions Sinkhorn; the codes are this batch's.
            return codes[:batch_size]


def _check_crops(
    high: Sequence[Tensor],
    low: Sequence[Tensor],
    queue: Optional[Sequence[Tensor]],
) -> None:
    if not isinstance(high, (list, tuple)) or len(high) == 0:
        raise ValueError("high_resolution_outputs must be a non-empty list of tensors")
    if not isinstance(low, (list, tuple)):
        raise ValueError("low_resolution_outputs must be a list of tensors")
    for crops, name in ((high, "high"), (low, "low")):
        if not all(isinstance(out, Tensor) for out in crops):
            raise TypeError(
                f"{name}_resolution_outputs must be a list of tensors; with several "
                "prototype sets (SwaVPrototypes with a list of n_prototypes), call "
                "the loss once per set"
            )
    shape = high[0].shape
    if any(out.ndim != 2 or out.shape != shape for out in list(high) + list(low)):
        raise ValueError(
            "high_resolution_outputs and low_resolution_outputs must hold tensors of "
            "one shape (batch_size, n_prototypes), got shapes "
            f"{[tuple(o.shape) for o in high]} and {[tuple(o.shape) for o in low]}"
        )
    if queue is None:
        return
    if not isinstance(queue, (list, tuple)) or len(queue) != len(high):
        raise ValueError(
            "queue_outputs must be a list with one tensor per high-resolution crop "
            f"({len(high)})"
        )
    if any(q.ndim != 2 or q.shape[1] != shape[1] for q in queue):
        raise ValueError(
            f"queue_outputs must hold tensors of shape (queue_length, {shape[1]}), "
            f"got shapes {[tuple(q.shape) for q in queue]}"
        )
