"""Label-free diagnostics of prototype assignments (DINO, SwAV, MSN-like heads).

Private: the public names are re-exported by :mod:`lightly_er.functional`. A batch
of probability rows p_i = p(. | x_i) over K prototypes is read as the channel from
an input X to a prototype C: its marginal entropy H(E[p]) is
:func:`lightly_er.functional.discrete_entropy`, its conditional entropy H(C | X) =
E[H(p)] is :func:`conditional_entropy`, and their difference is the mutual
information I(X; C) (:func:`prototype_mutual_information`). A collapse to one
prototype and a collapse to the uniform distribution both have I(X; C) = 0; only
the marginal entropy tells them apart (0 and log K).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_er.functional._checks import (
    at_least_float32,
    check_probabilities,
    check_probability_shape,
)
from lightly_er.functional._discrete import discrete_entropy
from lightly_er.utils.checks import check_same_shape


def conditional_entropy(p: Tensor, validate: bool = True) -> Tensor:
    """Mean entropy of the probability rows, E_i[H(p_i)] = H(C | X), in nats.

    0 when every row is one-hot (confident assignments), log K when every row is
    uniform. Zero entries contribute 0.

    Args:
        p:
            Probability rows, shape (N, K), N >= 1.
        validate:
            Check that the rows are finite probability distributions; a caller
            that builds them with softmax may pass False.

    Returns:
        The mean entropy, a scalar tensor in [0, log K].

    Raises:
        TypeError: If p is not a floating point tensor.
        ValueError: If p is not (N, K), or (with validate) its rows are not finite
            probability distributions.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import conditional_entropy
        >>> round(conditional_entropy(torch.full((8, 4), 0.25)).item(), 4)  # log 4
        1.3863
        >>> conditional_entropy(torch.eye(4)).item()
        0.0
    """
    if validate:
        check_probabilities(p, "p", log_input=False)
    else:
        check_probability_shape(p, "p")
    with torch.autocast(device_type=p.device.type, enabled=False):
        p = at_least_float32(p)
        # 0 - 0, not -0.0, for one-hot rows.
        entropy: Tensor = 0.0 - torch.special.xlogy(p, p).sum(dim=1).mean()
        return entropy


def prototype_mutual_information(p: Tensor, validate: bool = True) -> Tensor:
    """Mutual information between input and prototype, H(E[p]) - E[H(p)], in nats.

    The information the assignment C ~ p(. | x) carries about which input of the
    batch it came from: at most min(log N, log K), and 0 when every input gets the
    same distribution (one prototype for all, or the uniform distribution for
    all: the two collapses of DINO [0]). Plug-in estimate on the batch; clamped
    at 0 against rounding.

    - [0] Caron et al., DINO, ICCV 2021, https://arxiv.org/abs/2104.14294 (Sec. 5.3)

    Args:
        p:
            Probability rows, shape (N, K), N >= 1.
        validate:
            Check that the rows are finite probability distributions.

    Returns:
        The mutual information, a scalar tensor in [0, log K].

    Raises:
        TypeError: If p is not a floating point tensor.
        ValueError: If p is not (N, K), or (with validate) its rows are not finite
            probability distributions.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import prototype_mutual_information
        >>> round(prototype_mutual_information(torch.eye(4)).item(), 4)  # log 4
        1.3863
        >>> prototype_mutual_information(torch.full((8, 4), 0.25)).item()
        0.0
    """
    marginal = discrete_entropy(p, validate=validate)
    conditional = conditional_entropy(p, validate=False)
    return (marginal - conditional).clamp_min(0.0)


def prototype_usage(p: Tensor) -> Tensor:
    """Perplexity of the argmax histogram: how many prototypes the batch uses.

    exp(H(h)) with h_k the fraction of rows whose most probable prototype is k: 1
    when every row picks the same prototype, min(N, K) when the picks are spread
    evenly. It counts hard picks only, so a batch of near-uniform rows can still
    read high; read it with
    :func:`prototype_mutual_information`. Not differentiable.

    Args:
        p:
            Scores or probabilities, shape (N, K), N >= 1 (only the argmax of each
            row is used, so logits give the same value).

    Returns:
        The perplexity, a scalar tensor in [1, min(N, K)], float32 for half
        precision inputs and the dtype of p otherwise.

    Raises:
        TypeError: If p is not a floating point tensor.
        ValueError: If p is not (N, K) with N >= 1.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import prototype_usage
        >>> prototype_usage(torch.eye(4)).item()  # every row its own prototype
        4.0
        >>> prototype_usage(torch.eye(4)[[0, 0, 0, 0]]).item()
        1.0
    """
    check_probability_shape(p, "p")
    n, k = p.shape
    dtype = at_least_float32(p).dtype
    counts = torch.bincount(p.argmax(dim=1), minlength=k).to(dtype)
    h = counts / n
    return torch.exp(0.0 - torch.special.xlogy(h, h).sum())


def mean_kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """E_i[KL(p_i || q_i)] from log-probability rows, in nats.

    With p the teacher's distributions and q the student's on the same inputs it is
    DINO's diagnostic KL(teacher || student) [0]: 0 when the student reproduces the
    teacher; a teacher and student that agree on a collapsed output also read 0.

    - [0] Caron et al., DINO, ICCV 2021, https://arxiv.org/abs/2104.14294 (Fig. 7)

    Args:
        log_p:
            Log-probability rows of the reference distributions, shape (N, K).
        log_q:
            Log-probability rows of the approximating distributions, same shape.

    Returns:
        The mean KL divergence, a scalar tensor >= 0 (clamped against rounding).

    Raises:
        TypeError: If an input is not a floating point tensor.
        ValueError: If the shapes differ or are not (N, K).

    Examples:
        >>> import torch
        >>> from lightly_er.functional import mean_kl_divergence
        >>> log_p = torch.log_softmax(torch.randn(8, 16), dim=1)
        >>> mean_kl_divergence(log_p, log_p).item()
        0.0
    """
    check_probability_shape(log_p, "log_p")
    check_probability_shape(log_q, "log_q")
    check_same_shape(log_p, "log_p", log_q, "log_q")
    with torch.autocast(device_type=log_p.device.type, enabled=False):
        log_p = at_least_float32(log_p)
        log_q = at_least_float32(log_q).to(log_p.dtype)
        # Where p is 0 the term is 0, whatever log q is (-inf included).
        p = log_p.exp()
        difference = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
        per_row = (p * difference).sum(dim=1)
        return per_row.mean().clamp_min(0.0)


__all__ = [
    "conditional_entropy",
    "mean_kl_divergence",
    "prototype_mutual_information",
    "prototype_usage",
]
