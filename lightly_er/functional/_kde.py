"""The vMF kernel-density estimators, fused: one Gram matrix forward, one backward.

Private. ``kernel_entropy`` returns, for embeddings z (N, d) and kernel centers
c = [z; extra] (N + M, d), the entropy estimate *relative* to the kernel's constant,
H + log C_d(kappa), of one of

- ``"plugin"``: -sum_i w_i r_i with w = softmax(r), the KDE's entropy on the samples;
- ``"joe"``: -mean_i r_i, the resubstitution estimate;
- ``"renyi2"``: -log mean_i exp(r_i), the Renyi-2 entropy -log E[p(Z)] with the
  expectation taken over the samples;

where r_i = log sum_j exp(kappa z_i^T c_j) - log(count_i) is log p(z_i) - log C_d.

Why a custom autograd Function: autograd through ``logsumexp(kappa * z @ c.T)``
stores and revisits the N x (N + M) matrix about ten times and spends three matrix
products (one forward, two backward). Here the forward is one product (kappa fused
into it), one exp and one row sum, shifted by the known maximum kappa (rows are
unit-norm, so kappa z_i^T c_j <= kappa, and the self-term reaches it); the backward
is one product with the symmetrized coefficient matrix, whose entries are the
softmax of each row times a per-row factor of the estimator. The gradient of kappa
(when it is a tensor) costs one more pass over N x d.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from typing_extensions import Protocol

KDE_ESTIMATORS = ("plugin", "joe", "renyi2")


class _KernelContext(Protocol):
    """The autograd context as _KernelEntropy uses it."""

    kappa: float
    n: int
    has_extra: bool
    extra_grad: bool
    kappa_grad: bool
    saved_tensors: Tuple[Any, ...]

    def save_for_backward(self, *tensors: Optional[Tensor]) -> None: ...


class _KernelEntropy(torch.autograd.Function):
    """H + log C_d(kappa) of a vMF kernel density; see the module docstring."""

    @staticmethod
    def forward(
        ctx: _KernelContext,
        z: Tensor,
        extra: Optional[Tensor],
        kappa_tensor: Optional[Tensor],
        kappa: float,
        estimator: str,
        leave_one_out: bool,
        extra_valid: Optional[Tensor],
    ) -> Tensor:
        n = z.shape[0]
        support = z if extra is None else torch.cat([z, extra.to(z.dtype)], dim=0)
        if kappa_tensor is None:
            # kappa fused into the product, and the shift by its maximum kappa into
            # the same pass: logits = kappa * z c^T - kappa.
            logits = torch.addmm(
                z.new_full((1, 1), -kappa), z, support.T, beta=1.0, alpha=kappa
            )
            shift: Any = kappa
        else:
            kappa_z = kappa_tensor.detach().to(z.dtype)
            logits = torch.mm(z, support.T).mul_(kappa_z)
            shift = kappa_z
            if not leave_one_out:
                logits.sub_(kappa_z)
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
            log_shift: Any = row_max.squeeze(1)
            if kappa_tensor is None:
                log_shift = log_shift + kappa  # the -kappa of the fused product
        else:
            weights = logits.exp_()
            log_shift = shift
        row_sums = weights.sum(dim=1)
        count = _log_count(n, support.shape[0] - n, leave_one_out, extra_valid)
        # r_i = log p(z_i) - log C_d(kappa).
        log_density = torch.log(row_sums) + log_shift - count
        value, factor = _reduce(log_density, estimator)
        ctx.save_for_backward(z, support, weights, row_sums, factor, kappa_tensor)
        ctx.kappa = kappa
        ctx.n = n
        ctx.has_extra = extra is not None
        # Read here, not from ctx.needs_input_grad in backward: torch 2.3's dynamo
        # cannot trace that attribute (a graph break, and no fullgraph compile).
        ctx.extra_grad = extra is not None and extra.requires_grad
        ctx.kappa_grad = kappa_tensor is not None and kappa_tensor.requires_grad
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: _KernelContext, *grad_outputs: Tensor
    ) -> Tuple[Optional[Tensor], ...]:
        # torch's signature: one gradient per output of forward (here one).
        (grad_output,) = grad_outputs
        z, support, weights, row_sums, factor, kappa_tensor = ctx.saved_tensors
        n = ctx.n
        # dH/dlogit_ij = factor_i * softmax_j(logit_i): the softmax is weights / sum.
        coefficients = weights * (grad_output * factor / row_sums).unsqueeze(1)
        own = coefficients[:, :n]
        # z_i enters row i (as the evaluation point) and column i (as a center).
        pulled = torch.mm(own + own.T, z)
        pushed_extra: Optional[Tensor] = None
        if ctx.has_extra:
            pushed_extra = torch.mm(coefficients[:, n:], support[n:])
        kappa = ctx.kappa if kappa_tensor is None else kappa_tensor.detach().to(z.dtype)
        grad_z = pulled if pushed_extra is None else pulled + pushed_extra
        grad_kappa: Optional[Tensor] = None
        if kappa_tensor is not None and ctx.kappa_grad:
            # d/dkappa sum_ij C_ij kappa z_i.c_j = sum_ij C_ij z_i.c_j, from the
            # products already made: the symmetrized own block counts pairs twice.
            total = 0.5 * (z * pulled).sum()
            if pushed_extra is not None:
                total = total + (z * pushed_extra).sum()
            grad_kappa = total.to(kappa_tensor.dtype).reshape(kappa_tensor.shape)
        grad_extra: Optional[Tensor] = None
        if ctx.has_extra and ctx.extra_grad:
            grad_extra = kappa * torch.mm(coefficients[:, n:].T, z)
        return (kappa * grad_z, grad_extra, grad_kappa, None, None, None, None)


def _log_count(
    n: int, m: int, leave_one_out: bool, extra_valid: Optional[Tensor]
) -> Any:
    """log of the number of kernel centers of each row (a float, or a 0-dim tensor)."""
    own = n - 1 if leave_one_out else n
    if extra_valid is None:
        return math.log(max(own + m, 1))
    # A memory's filled slots are counted on the device: no host sync.
    return torch.log((extra_valid.sum() + own).clamp_min(1).double())


def _reduce(log_density: Tensor, estimator: str) -> Tuple[Tensor, Tensor]:
    """The estimate from r_i = log p(z_i) - log C_d, and dH/dr_i."""
    n = log_density.shape[0]
    if estimator == "joe":
        value = -log_density.mean()
        return value, torch.full_like(log_density, -1.0 / n)
    if estimator == "renyi2":
        value = math.log(n) - torch.logsumexp(log_density, dim=0)
        return value, -torch.softmax(log_density, dim=0)
    # plug-in: H = -sum_i w_i r_i, w = softmax(r); dH/dr_i = -w_i (1 + r_i + H).
    w = torch.softmax(log_density, dim=0)
    value = -(w * log_density).sum()
    return value, -w * (1.0 + log_density + value)


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
    if isinstance(kappa, Tensor):
        result: Tensor = _KernelEntropy.apply(
            z, extra, kappa, 0.0, estimator, leave_one_out, extra_valid
        )
    else:
        result = _KernelEntropy.apply(
            z, extra, None, float(kappa), estimator, leave_one_out, extra_valid
        )
    return result
