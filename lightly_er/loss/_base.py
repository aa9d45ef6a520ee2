"""Pieces shared by the ER loss modules: the components, the kappa rule, checks."""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from torch import Tensor
from torch import distributed as torch_dist

from lightly_er.functional import (
    _at_least_float32,
    _check_estimator,
    discrete_entropy,
    discrete_reconstruction,
    sphere_entropy,
)
from lightly_er.utils.checks import (
    check_bool,
    check_choice,
    check_int,
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)
from lightly_er.utils.dist import gather_rows

DEFAULT_KAPPA = 10.0
"""kappa where the parent loss has no temperature: the authors' reference default."""

DEFAULT_ESTIMATOR = "plugin"
"""The sphere entropy estimator of the authors' reference code."""

VALIDATE_MODES: Tuple[str, ...] = ("first", "always", "never")
FIRST_CALLS_CHECKED = 10
"""With ``validate="first"``, the number of calls whose loss is checked for NaN/Inf."""


def default_kappa(temperature: Optional[float] = None) -> float:
    """The kappa rule of lightly-er: 1 / temperature where the parent has one, else 10.

    A contrastive parent (NT-Xent) scales cosine similarities by 1 / temperature; with
    kappa = 1 / temperature the vMF reconstruction is on the parent's logit scale. A
    parent without a temperature (negative cosine similarity) gets the authors'
    reference value, 10. The heads' meters and the monitor use the same number
    (:func:`entropy_settings`). docs/kappa.md explains the choice.

    Raises:
        ValueError: If temperature is given and not positive.
    """
    if temperature is None:
        return DEFAULT_KAPPA
    check_positive(temperature, "temperature")
    return 1.0 / float(temperature)


def entropy_settings(criterion: Any) -> Optional[Dict[str, Any]]:
    """How the ER entropy of the outputs fed to criterion is measured, by the one rule.

    Returns keyword arguments for :class:`lightly_er.monitoring.EntropyMeter`:
    ``{"support": "sphere", "kappa": ..., "estimator": ...}`` for NT-Xent, negative
    cosine similarity and their ER versions, ``{"support": "discrete",
    "temperature": ...}`` for DINO and SwAV (the student's, resp. the prediction's,
    softmax temperature), or None for a criterion the rule does not know. An
    original lightly loss and its ER version give the same settings, so a
    benchmark's original run is measured at the kappa of its ER twin.

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_er.loss import entropy_settings
        >>> entropy_settings(NTXentLoss(temperature=0.5))
        {'support': 'sphere', 'kappa': 2.0, 'estimator': 'plugin'}
    """
    kappa = getattr(criterion, "kappa", None)
    estimator = getattr(criterion, "estimator", DEFAULT_ESTIMATOR)
    support = getattr(criterion, "support", None)
    if support == "discrete":
        return {"support": "discrete", "temperature": float(criterion.temperature)}
    if kappa is not None:
        return {"support": "sphere", "kappa": float(kappa), "estimator": estimator}
    if isinstance(criterion, NTXentLoss):
        kappa = default_kappa(float(criterion.temperature))
        return {"support": "sphere", "kappa": kappa, "estimator": estimator}
    if isinstance(criterion, NegativeCosineSimilarity):
        return {"support": "sphere", "kappa": DEFAULT_KAPPA, "estimator": estimator}
    if isinstance(criterion, DINOLoss):
        return {"support": "discrete", "temperature": float(criterion.student_temp)}
    if isinstance(criterion, SwaVLoss):
        return {"support": "discrete", "temperature": float(criterion.temperature)}
    return None


class ERComponents(NamedTuple):
    """The terms of an ER loss, as returned by ``forward_components``.

    Attributes:
        loss:
            The value to minimise: -(entropy_weight * entropy + reconstruction) /
            loss_scale (loss_scale is kappa for BYOL/SimSiam-ER, 1 otherwise).
        entropy:
            The entropy estimate in nats (higher is better).
        reconstruction:
            The expected log-likelihood of one view given the other, in nats
            (higher is better).
    """

    loss: Tensor
    entropy: Tensor
    reconstruction: Tensor


class ERLossMixin:
    """Combines the terms of an ER loss, checks it, and keeps them for logging.

    Attributes:
        last_components:
            The terms of the most recent call, detached, or None before the first call.
        validate:
            When the loss is checked for NaN/Inf (a host sync on an accelerator):
            ``"first"`` the first 10 calls, ``"always"`` every call, ``"never"``
            never (lightly's behaviour). The check is skipped while torch.compile
            traces the loss.
        loss_scale:
            The loss is divided by it (kappa for BYOL/SimSiam-ER, 1 otherwise).
    """

    last_components: Optional[ERComponents] = None
    validate: str = "first"
    loss_scale: float = 1.0
    _calls_checked: int = 0

    def _set_validate(self, validate: str) -> None:
        check_choice(validate, "validate", VALIDATE_MODES)
        self.validate = validate
        self._calls_checked = 0

    def _record(
        self, entropy: Tensor, reconstruction: Tensor, entropy_weight: float
    ) -> ERComponents:
        loss = -(entropy_weight * entropy + reconstruction)
        if self.loss_scale != 1.0:
            loss = loss / self.loss_scale
        if self._due_for_check():
            # The estimators skip their per-input value checks inside the losses;
            # one check of the result turns NaN/Inf inputs into a clear error.
            if not bool(torch.isfinite(loss)):
                raise ValueError(
                    f"the ER loss is not finite (entropy {entropy.item():.4g}, "
                    f"reconstruction {reconstruction.item():.4g}): the model outputs "
                    "contain NaN or Inf (pass validate='never' to keep training "
                    "through such steps, as lightly's losses do)"
                )
        components = ERComponents(loss, entropy, reconstruction)
        self.last_components = ERComponents(*(t.detach() for t in components))
        return components

    def _due_for_check(self) -> bool:
        if self.validate == "never" or torch.compiler.is_compiling():
            return False
        if self.validate == "always":
            return True
        self._calls_checked += 1
        return self._calls_checked <= FIRST_CALLS_CHECKED


def check_er_arguments(
    kappa: Optional[float],
    entropy_weight: float,
    estimator: str,
    gather_distributed: bool,
) -> None:
    """Raises a ValueError/TypeError naming the first bad ER keyword argument."""
    if kappa is not None:
        check_positive(kappa, "kappa")
    check_real(entropy_weight, "entropy_weight")
    if entropy_weight < 0:
        raise ValueError(
            f"entropy_weight must be finite and >= 0, got {entropy_weight}"
        )
    _check_estimator(estimator)
    check_bool(gather_distributed, "gather_distributed")
    if gather_distributed and not torch_dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available"
        )


def log_softmax_float32(logits: Tensor, temperature: float | Tensor) -> Tensor:
    """log_softmax(logits / temperature) in at least float32, outside autocast."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return torch.log_softmax(logits / temperature, dim=-1)


def check_view_pair(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Raises a TypeError/ValueError naming the argument unless a, b are (N, D) alike."""
    for x, name in ((a, a_name), (b, b_name)):
        check_matrix(x, name, min_rows=1, min_dim=2, check_values=False)
    check_same_shape(a, a_name, b, b_name)


def normalize_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """L2-normalises the rows of x in at least float32 (exactly unit norm in bf16)."""
    return F.normalize(_at_least_float32(x), dim=1, eps=eps)


def gather_batch(z: Tensor, gather_distributed: bool) -> Tensor:
    """gather_rows, with an error naming the batch size if fewer than 2 rows result."""
    z_all = gather_rows(z, gather_distributed)
    if z_all.shape[0] < 2:
        raise ValueError(
            "the entropy estimate needs a batch of at least 2 samples (over all "
            f"processes), got {z_all.shape[0]}"
        )
    return z_all


def cross_view_reconstruction(
    p_target: Sequence[Tensor], log_pred: Sequence[Tensor]
) -> Tensor:
    """Mean over view pairs (t, s), t != s, of discrete_reconstruction(p_t, log q_s).

    The pairs are those of DINO and SwAV: target view t and prediction view s index
    the same crop when t == s, and these pairs are left out. As the reconstruction is
    linear in the target, the pairs of prediction view s are summed exactly into one
    call of :func:`lightly_er.functional.discrete_reconstruction` whose target is the
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
        term = len(others) * discrete_reconstruction(
            target, log_q, log_input=True, validate=False
        )
        total = term if total is None else total + term
    assert total is not None
    return total / num_terms


def marginal_entropy(
    log_p: Sequence[Tensor],
    gather_distributed: bool,
    extra_p: Optional[Tensor] = None,
) -> Tensor:
    """Entropy of the mean of the rows exp(log_p) (and extra_p), gathered if asked.

    The rows are averaged on this process into one row of K numbers; with
    gather_distributed the rows of all processes are gathered (with gradient) and
    :func:`lightly_er.functional.discrete_entropy` takes their mean, which is the
    mean over the global batch when all processes hold as many rows.

    Args:
        log_p:
            Log-probability rows, tensors of shape (N_i, K).
        gather_distributed:
            Whether to average over the processes.
        extra_p:
            Further probability rows, shape (M, K), included in the mean.

    Returns:
        The entropy in nats, a scalar tensor.
    """
    total = torch.stack([view.exp().sum(dim=0) for view in log_p]).sum(dim=0)
    count = sum(view.shape[0] for view in log_p)
    if extra_p is not None:
        total = total + extra_p.to(total.dtype).sum(dim=0)
        count += extra_p.shape[0]
    mean = gather_rows((total / count).unsqueeze(0), gather_distributed)
    return discrete_entropy(mean, validate=False)


def gathered_sphere_entropy(
    z: Tensor,
    kappa: float,
    estimator: str,
    leave_one_out: bool,
    gather_distributed: bool,
) -> Tensor:
    """sphere_entropy of L2-normalised z over the batch of all processes if asked."""
    return sphere_entropy(
        gather_batch(z, gather_distributed),
        kappa,
        estimator=estimator,  # type: ignore[arg-type]
        leave_one_out=leave_one_out,
        validate=False,
    )


__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_KAPPA",
    "ERComponents",
    "ERLossMixin",
    "check_int",
    "default_kappa",
    "entropy_settings",
]
