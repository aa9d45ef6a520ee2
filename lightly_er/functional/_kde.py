"""The plug-in vMF kernel-density entropy, fused: one Gram matrix forward, one backward.

Private. For embeddings z (N, d) and kernel centers c = [z; extra] (N + M, d),
``kernel_log_density`` returns

    r_i = log sum_j exp(kappa z_i^T c_j) - log(N + M) = log p(z_i) - log C_d(kappa),

the log-density of the kernel density estimate at each sample relative to the
kernel's constant (each sample's own kernel kept, as in the authors' reference
code), and ``kernel_entropy`` the plug-in estimate relative to the same constant,

    H + log C_d(kappa) = -sum_i w_i r_i,  w = softmax(r),

the entropy of the kernel density estimate evaluated on the samples.

Why a custom autograd Function: autograd through ``logsumexp(kappa * z @ c.T)``
stores and revisits the N x (N + M) matrix about ten times and spends three matrix
products (one forward, two backward). Here the forward is one product (kappa fused
into it), one exp and one row sum, shifted by the known maximum kappa (rows are
unit-norm, so kappa z_i^T c_j <= kappa, and the self-term reaches it); the backward
is one product with the symmetrized coefficient matrix, whose entries are the
softmax of each row times the gradient of r_i. The gradient of kappa (when it is a
tensor) costs one more pass over N x d. The reduction of r to the entropy works on
N numbers and is left to autograd.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from typing_extensions import Protocol


class KernelContext(Protocol):
    """The autograd context of the kernel Functions."""

    kappa: float
    n: int
    has_extra: bool
    extra_grad: bool
    kappa_grad: bool
    saved_tensors: Tuple[Any, ...]

    def save_for_backward(self, *tensors: Optional[Tensor]) -> None: ...


def kernel_logits(
    z: Tensor,
    support: Tensor,
    kappa_tensor: Optional[Tensor],
    kappa: float,
    shift_tensor_kappa: bool = True,
) -> Tuple[Tensor, Any]:
    """kappa z c^T minus a shift, and the shift (kappa, or 0 for an unshifted tensor).

    A Python kappa is fused into the product, and the shift by its maximum kappa
    into the same pass. A tensor kappa multiplies the product.
    """
    if kappa_tensor is None:
        logits = torch.addmm(
            z.new_full((1, 1), -kappa), z, support.T, beta=1.0, alpha=kappa
        )
        return logits, kappa
    kappa_z = kappa_tensor.detach().to(z.dtype)
    logits = torch.mm(z, support.T).mul_(kappa_z)
    if not shift_tensor_kappa:
        return logits, 0.0
    return logits.sub_(kappa_z), kappa_z


def save_kernel_context(
    ctx: KernelContext,
    z: Tensor,
    support: Tensor,
    extra: Optional[Tensor],
    weights: Tensor,
    row_sums: Tensor,
    kappa_tensor: Optional[Tensor],
    kappa: float,
) -> None:
    """Keeps what :func:`kernel_backward` needs."""
    ctx.save_for_backward(z, support, weights, row_sums, kappa_tensor)
    ctx.kappa = kappa
    ctx.n = z.shape[0]
    ctx.has_extra = extra is not None
    # Read here, not from ctx.needs_input_grad in backward: torch 2.3's dynamo
    # cannot trace that attribute (a graph break, and no fullgraph compile).
    ctx.extra_grad = extra is not None and extra.requires_grad
    ctx.kappa_grad = kappa_tensor is not None and kappa_tensor.requires_grad


def kernel_backward(
    ctx: KernelContext, grad_log_density: Tensor
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """The gradients of z, extra and kappa from the gradient of r (N,)."""
    z, support, weights, row_sums, kappa_tensor = ctx.saved_tensors
    n = ctx.n
    # dr_i/dlogit_ij = softmax_j(logit_i): the softmax is weights / row sum.
    coefficients = weights * (grad_log_density / row_sums).unsqueeze(1)
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
    return kappa * grad_z, grad_extra, grad_kappa


def kernel_support(z: Tensor, extra: Optional[Tensor]) -> Tensor:
    """The kernel centers: z, then the extra rows (in z's dtype)."""
    return z if extra is None else torch.cat([z, extra.to(z.dtype)], dim=0)


class _KernelLogDensity(torch.autograd.Function):
    """r_i = log p(z_i) - log C_d(kappa) of a vMF kernel density; see the module."""

    @staticmethod
    def forward(
        ctx: KernelContext,
        z: Tensor,
        extra: Optional[Tensor],
        kappa_tensor: Optional[Tensor],
        kappa: float,
    ) -> Tensor:
        support = kernel_support(z, extra)
        logits, shift = kernel_logits(z, support, kappa_tensor, kappa)
        weights = logits.exp_()
        row_sums = weights.sum(dim=1)
        log_density: Tensor = torch.log(row_sums) + shift - math.log(support.shape[0])
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
        return (*kernel_backward(ctx, grad_output), None)


def kernel_log_density(z: Tensor, kappa: Any, extra: Optional[Tensor] = None) -> Tensor:
    """r = log p(z_i) - log C_d(kappa) at each row (N,); inputs already checked.

    Args:
        z: Unit-norm rows (N, d), float32 or float64.
        kappa: A Python float, or a 0-dim tensor (possibly requiring grad).
        extra: Further kernel centers (M, d), or None.
    """
    if isinstance(kappa, Tensor):
        result: Tensor = _KernelLogDensity.apply(z, extra, kappa, 0.0)
    else:
        result = _KernelLogDensity.apply(z, extra, None, float(kappa))
    return result


def plugin_entropy(log_density: Tensor) -> Tensor:
    """-sum_i w_i r_i with w = softmax(r): the entropy of the density on the samples."""
    weights = torch.softmax(log_density, dim=0)
    return -(weights * log_density).sum()


def kernel_entropy(z: Tensor, kappa: Any, extra: Optional[Tensor] = None) -> Tensor:
    """H + log C_d(kappa), the plug-in estimate; inputs already checked.

    Args:
        z: Unit-norm rows (N, d), float32 or float64.
        kappa: A Python float, or a 0-dim tensor (possibly requiring grad).
        extra: Further kernel centers (M, d), or None.
    """
    return plugin_entropy(kernel_log_density(z, kappa, extra))
