"""The vMF kernel estimators beyond the plug-in: joe, Renyi-2, leave-one-out, a mask.

Private, and a research option: the upstream series sends only the plug-in estimate
with the self-term kept (``_kde``). ``kernel_entropy`` returns, for embeddings z
(N, d) and kernel centers c = [z; extra] (N + M, d), the entropy estimate *relative*
to the kernel's constant, H + log C_d(kappa), of one of

- ``"plugin"``: -sum_i w_i r_i with w = softmax(r), the KDE's entropy on the samples;
- ``"joe"``: -mean_i r_i, the resubstitution estimate;
- ``"renyi2"``: -log mean_i exp(r_i), the Renyi-2 entropy -log E[p(Z)] with the
  expectation taken over the samples;

where r_i = log sum_j exp(kappa z_i^T c_j) - log(count_i) is log p(z_i) - log C_d.
With ``leave_one_out`` each sample's own kernel is dropped (count_i = N - 1 + M);
``extra_valid`` marks which extra centers count (an entropy memory that is not full
yet). The kernel is the fused one of ``_kde``: the same product forward and backward.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from lightly_er.functional._kde import (
    KernelContext,
    kernel_backward,
    kernel_log_density,
    kernel_logits,
    kernel_support,
    plugin_entropy,
    save_kernel_context,
)

KDE_ESTIMATORS = ("plugin", "joe", "renyi2")


class _MaskedKernelLogDensity(torch.autograd.Function):
    """r_i of a vMF kernel density without the self-terms or with masked centers."""

    @staticmethod
    def forward(
        ctx: KernelContext,
        z: Tensor,
        extra: Optional[Tensor],
        kappa_tensor: Optional[Tensor],
        kappa: float,
        leave_one_out: bool,
        extra_valid: Optional[Tensor],
    ) -> Tensor:
        n = z.shape[0]
        support = kernel_support(z, extra)
        logits, shift = kernel_logits(
            z, support, kappa_tensor, kappa, shift_tensor_kappa=not leave_one_out
        )
        if leave_one_out:
            # exp(-inf) = 0 removes each sample's own kernel; an O(N) write.
            logits[:, :n].diagonal().fill_(float("-inf"))
        if extra_valid is not None:
            # Slots of a memory that are not filled yet are not kernel centers.
            logits[:, n:].masked_fill_(~extra_valid, float("-inf"))
        if leave_one_out:
            # Without the self-term the row maximum is unknown: shift by it.
            row_max = logits.amax(dim=1, keepdim=True)
            row_max = torch.where(torch.isfinite(row_max), row_max, 0.0)
            weights = logits.sub_(row_max).exp_()
            log_shift: Any = row_max.squeeze(1) + shift
        else:
            weights = logits.exp_()
            log_shift = shift
        row_sums = weights.sum(dim=1)
        count = _log_count(n, support.shape[0] - n, leave_one_out, extra_valid)
        log_density: Tensor = torch.log(row_sums) + log_shift - count
        save_kernel_context(
            ctx, z, support, extra, weights, row_sums, kappa_tensor, kappa
        )
        return log_density

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: KernelContext, *grad_outputs: Tensor
    ) -> Tuple[Optional[Tensor], ...]:
        # torch's signature: one gradient per output of forward (here one).
        (grad_output,) = grad_outputs
        return (*kernel_backward(ctx, grad_output), None, None, None)


def _log_count(
    n: int, m: int, leave_one_out: bool, extra_valid: Optional[Tensor]
) -> Any:
    """log of the number of kernel centers of each row (a float, or a 0-dim tensor)."""
    own = n - 1 if leave_one_out else n
    if extra_valid is None:
        return math.log(max(own + m, 1))
    # A memory's filled slots are counted on the device: no host sync.
    return torch.log((extra_valid.sum() + own).clamp_min(1).double())


def kernel_entropy(
    z: Tensor,
    kappa: Any,
    estimator: str,
    leave_one_out: bool = False,
    extra: Optional[Tensor] = None,
    extra_valid: Optional[Tensor] = None,
) -> Tensor:
    """H + log C_d(kappa) for the vMF kernel estimators; inputs already checked.

    Args:
        z: Unit-norm rows (N, d), float32 or float64.
        kappa: A Python float, or a 0-dim tensor (possibly requiring grad).
        estimator: ``"plugin"``, ``"joe"`` or ``"renyi2"``.
        leave_one_out: Drop each sample's own kernel.
        extra: Further kernel centers (M, d), or None.
        extra_valid: Which of the M extra centers count (bool (M,)), or None (all).
    """
    if not leave_one_out and extra_valid is None:
        log_density = kernel_log_density(z, kappa, extra)
    elif isinstance(kappa, Tensor):
        log_density = _MaskedKernelLogDensity.apply(
            z, extra, kappa, 0.0, leave_one_out, extra_valid
        )
    else:
        log_density = _MaskedKernelLogDensity.apply(
            z, extra, None, float(kappa), leave_one_out, extra_valid
        )
    if estimator == "joe":
        return -log_density.mean()
    if estimator == "renyi2":
        return math.log(z.shape[0]) - torch.logsumexp(log_density, dim=0)
    return plugin_entropy(log_density)
