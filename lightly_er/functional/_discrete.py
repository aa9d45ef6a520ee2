"""The ER terms on a discrete support: entropy of the batch marginal, cross-entropy.

Private: the public names are re-exported by :mod:`lightly_er.functional`.
``cross_view_reconstruction`` and ``mean_distribution`` are the multi-view math of
DINO-ER and SwAV-ER, internal to the library; the loss layer gathers across
processes around them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from lightly_er.functional._checks import (
    at_least_float32,
    check_probabilities,
    check_probability_shape,
)
from lightly_er.utils._checks import check_same_shape
from lightly_er.utils.compat import vecdot


def discrete_entropy(p: Tensor, validate: bool = True) -> Tensor:
    """Entropy of the batch-mean of probability rows, H(mean_i p_i).

    The entropy term of ER on a discrete support (DINO, SwAV prototypes) [0]: the
    marginal distribution of the assignments is estimated by the mean of the
    per-sample distributions, and its Shannon entropy is returned. It is log K for a
    uniform use of the K classes and 0 when every sample puts all its mass on one class.
    Classes with zero mean mass contribute 0 (and a finite gradient).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        p:
            Probability rows, shape (N, K), N >= 1, non-negative, each row summing to 1.
        validate:
            Check that the rows are finite probability distributions (several passes
            and a host sync); a caller that builds them with softmax may pass False.
            Types and shapes are always checked.

    Returns:
        The entropy in nats, a scalar tensor in [0, log K].

    Raises:
        TypeError: If p is not a floating point tensor.
        ValueError: If p is not (N, K) with N >= 1, not finite, or its rows are not
            probability distributions.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import discrete_entropy
        >>> p = torch.softmax(torch.randn(256, 1000), dim=1)
        >>> entropy = discrete_entropy(p)
    """
    if validate:
        check_probabilities(p, "p", log_input=False)
    else:
        check_probability_shape(p, "p")
    with torch.autocast(device_type=p.device.type, enabled=False):
        mean = at_least_float32(p).mean(dim=0)
        # Exact, where the reference adds 1e-7 inside the log: a class of zero
        # mass gives 0 * log(tiny) = 0, and a finite gradient.
        tiny = torch.finfo(mean.dtype).tiny
        return -(mean * torch.log(mean.clamp_min(tiny))).sum()


def discrete_reconstruction(
    p_target: Tensor, p_pred: Tensor, log_input: bool = False, validate: bool = True
) -> Tensor:
    """Expected log-likelihood of target distributions under predicted ones.

    The reconstruction term of ER on a discrete support [0]: the negative
    cross-entropy E_i[sum_c p_target_ic log p_pred_ic], which is at most
    -E_i[H(p_target_i)] and reaches it when the prediction equals the target.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        p_target:
            Target probability rows, shape (N, K).
        p_pred:
            Predicted probability rows, shape (N, K); log-probabilities (for example a
            log_softmax output, more accurate than the log of a softmax) if log_input.
        log_input:
            Whether p_pred holds log-probabilities.
        validate:
            Whether to check that the rows are finite probability distributions.
            The check reads every input several times (with a log-sum-exp over
            p_pred when log_input) and costs more than the estimate; a caller that
            builds the rows with softmax / log_softmax may pass False. Types and
            shapes are always checked.

    Returns:
        The expected log-likelihood in nats, a scalar tensor (<= 0).

    Raises:
        TypeError: If an input is not a floating point tensor.
        ValueError: If the shapes differ or are not (N, K) with N >= 1, if an input is
            not finite (p_pred may hold -inf where log_input and p_target is 0), or
            its rows are not probability distributions.

    Examples:
        >>> import torch
        >>> from lightly_er.functional import discrete_reconstruction
        >>> teacher = torch.softmax(torch.randn(256, 1000) / 0.04, dim=1)
        >>> student = torch.log_softmax(torch.randn(256, 1000) / 0.1, dim=1)
        >>> reconstruction = discrete_reconstruction(teacher, student, log_input=True)
    """
    if validate:
        check_probabilities(p_target, "p_target", log_input=False)
        check_probabilities(p_pred, "p_pred", log_input=log_input)
    else:
        check_probability_shape(p_target, "p_target")
        check_probability_shape(p_pred, "p_pred")
    check_same_shape(p_target, "p_target", p_pred, "p_pred")
    with torch.autocast(device_type=p_target.device.type, enabled=False):
        p_target = at_least_float32(p_target)
        p_pred = at_least_float32(p_pred).to(p_target.dtype)
        if log_input:
            log_pred = p_pred
        else:
            log_pred = torch.log(p_pred.clamp_min(torch.finfo(p_pred.dtype).tiny))
        # One multiply-and-sum per row. A log-probability of -inf is clamped to
        # the most negative finite value, so that a target of exactly 0 there
        # contributes 0 (xlogy-style) instead of 0 * -inf = NaN, with no host sync.
        log_pred = log_pred.clamp_min(torch.finfo(log_pred.dtype).min)
        per_row: Tensor = vecdot(p_target, log_pred)
        return per_row.mean()


def cross_view_reconstruction(
    p_target: Sequence[Tensor], log_pred: Sequence[Tensor]
) -> Tensor:
    """Mean over view pairs (t, s), t != s, of discrete_reconstruction(p_t, log q_s).

    Library-internal (not re-exported): the reconstruction of DINO-ER and SwAV-ER.

    The pairs are those of DINO and SwAV: target view t and prediction view s index
    the same crop when t == s, and these pairs are left out. As the reconstruction is
    linear in the target, the pairs of prediction view s are summed exactly into one
    call of :func:`discrete_reconstruction` whose target is the
    mean of the p_t over t != s, weighted by their number: one call per prediction
    view instead of one per pair, and no copy of a prediction.

    Args:
        p_target:
            T target distributions, each of shape (batch_size, K), without gradient.
        log_pred:
            S predicted log-probabilities, each of shape (batch_size, K).

    Returns:
        The mean reconstruction in nats, a scalar tensor.

    Raises:
        ValueError: If there is no pair t != s (T = S = 1).
    """
    num_targets, num_preds = len(p_target), len(log_pred)
    num_terms = num_targets * num_preds - min(num_targets, num_preds)
    if num_terms == 0:
        raise ValueError(
            "at least two views in total are needed (the pair of a view with itself "
            f"is excluded), got {num_targets} target view(s) and {num_preds} "
            "prediction view(s)"
        )
    mean_target: Optional[Tensor] = None
    total: Optional[Tensor] = None
    for s, log_q in enumerate(log_pred):
        others = [p for t, p in enumerate(p_target) if t != s]
        if not others:
            continue
        if len(others) == 1:
            target = others[0]
        elif s >= num_targets:
            if mean_target is None:
                mean_target = torch.stack(others).mean(dim=0)
            target = mean_target
        else:
            target = torch.stack(others).mean(dim=0)
        term = len(others) * _log_softmax_reconstruction(target, log_q)
        total = term if total is None else total + term
    assert total is not None
    return total / num_terms


def _log_softmax_reconstruction(p_target: Tensor, log_q: Tensor) -> Tensor:
    """E_i[sum_k p_target_ik log_q_ik] for log_q a log_softmax of finite logits."""
    # discrete_reconstruction clamps log_q against -inf, a pass forward and one
    # backward on every (N, K) view. A log_softmax of finite float32 logits is
    # finite unless the logits span more than the float32 range, where the parent
    # losses return NaN alike and the validate check of the loss reports it.
    with torch.autocast(device_type=log_q.device.type, enabled=False):
        target = at_least_float32(p_target).to(log_q.dtype)
        per_row: Tensor = vecdot(target, log_q)
        return per_row.mean()


def mean_distribution(
    log_p: Sequence[Tensor], extra_p: Optional[Tensor] = None
) -> Tensor:
    """The mean of the probability rows exp(log_p) (and extra_p), shape (K,).

    Library-internal (not re-exported): the batch marginal whose entropy is the
    entropy term of DINO-ER and SwAV-ER.

    Args:
        log_p:
            Log-probability rows, tensors of shape (N_i, K).
        extra_p:
            Further probability rows, shape (M, K), included in the mean (SwAV's
            queue).

    Returns:
        The mean row, shape (K,), in the dtype of log_p.
    """
    # One sum per view instead of a concatenation: no copy of the crops.
    total = torch.stack([view.exp().sum(dim=0) for view in log_p]).sum(dim=0)
    count = sum(view.shape[0] for view in log_p)
    if extra_p is not None:
        total = total + extra_p.to(total.dtype).sum(dim=0)
        count += extra_p.shape[0]
    return total / count
