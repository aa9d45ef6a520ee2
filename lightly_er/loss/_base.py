"""Pieces shared by the ER loss modules: the components, the recording, the checks.

The math is :mod:`lightly_er.functional`'s; what lives here is how a loss module
combines it: gathering across processes, the constant log C_d(kappa) added once,
the NaN/Inf check of the first calls, and the single-sample warning.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributed as torch_dist

from lightly_er.functional import discrete_entropy
from lightly_er.functional._checks import SphereEstimator, at_least_float32
from lightly_er.functional._discrete import mean_distribution
from lightly_er.functional._sphere import relative_sphere_entropy
from lightly_er.loss._kappa import (
    DEFAULT_ESTIMATOR,
    DEFAULT_KAPPA,
    default_kappa,
    entropy_settings,
    resolve_kappa,
)
from lightly_er.utils.checks import (
    check_bool,
    check_choice,
    check_estimator,
    check_matrix,
    check_real,
    check_same_shape,
)
from lightly_er.utils.dist import gather_rows

VALIDATE_MODES: Tuple[str, ...] = ("first", "always", "never")
FIRST_CALLS_CHECKED = 10
"""With ``validate="first"``, the number of calls whose loss is checked for NaN/Inf."""


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
        last_bound:
            DINO-ER and SwAV-ER: a lower bound on the mutual information of the
            last call, detached (their entropy + reconstruction is a surrogate,
            not a bound; docs/objectives.md). None for the other losses.
    """

    last_components: Optional[ERComponents] = None
    last_bound: Optional[Tensor] = None
    validate: str = "first"
    loss_scale: float = 1.0
    _calls_checked: int = 0
    _warned_single_sample: bool = False
    # Set by the sphere losses only: entropy_settings reads a kappa attribute as
    # "this loss lives on the sphere".
    kappa: float
    estimator: SphereEstimator
    leave_one_out: bool

    def _set_validate(self, validate: str) -> None:
        check_choice(validate, "validate", VALIDATE_MODES)
        self.validate = validate
        self._calls_checked = 0

    def _record(
        self,
        entropy: Tensor,
        reconstruction: Tensor,
        entropy_weight: float,
        log_norm: float = 0.0,
    ) -> ERComponents:
        """Returns (and keeps) the loss and its terms.

        With ``log_norm`` = log C_d(kappa) (the sphere losses), the terms come
        without their constants: entropy + log_norm and reconstruction - log_norm.
        """
        loss = -(entropy_weight * entropy + reconstruction)
        if log_norm != 0.0:
            # -log C_d in the entropy and +log C_d in the reconstruction cancel at
            # entropy_weight 1; the rest is added once, a Python double. At large d
            # the constant (-270,000 nats at d = 65,536) would swamp float32 terms.
            offset = (1.0 - entropy_weight) * log_norm
            if offset != 0.0:
                loss = loss - offset
            entropy = entropy - log_norm
            reconstruction = reconstruction + log_norm
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
        # The check reads the loss on the host: a sync the compiled graph must not have.
        if self.validate == "never" or torch.compiler.is_compiling():
            return False
        if self.validate == "always":
            return True
        self._calls_checked += 1
        return self._calls_checked <= FIRST_CALLS_CHECKED

    def _sphere_entropy(
        self, z: Tensor, extra_support: Optional[Tensor] = None
    ) -> Tensor:
        """The vMF entropy of the (gathered) rows z, without the constant -log C_d.

        A batch of one sample without extra kernel centres has only its own kernel:
        the estimate is H_min, constant, and leave-one-out has no other sample to
        use, so the self-term is kept. This warns once per loss.
        """
        leave_one_out = self.leave_one_out
        centres = z.shape[0] + (0 if extra_support is None else extra_support.shape[0])
        # A Python int from the shapes: deciding costs no host sync.
        if centres == 1:
            self._warn_single_sample()
            leave_one_out = False
        return relative_sphere_entropy(
            z,
            self.kappa,
            estimator=self.estimator,
            leave_one_out=leave_one_out,
            extra_support=extra_support,
            validate=False,
        )

    def _warn_single_sample(self) -> None:
        if self._warned_single_sample:
            return
        self._warned_single_sample = True
        warnings.warn(
            f"{type(self).__name__} got a batch of 1 sample (over all processes) and "
            "no memory bank: its entropy estimate is the constant H_min, with no "
            "gradient, so only the reconstruction trains on such a batch (use "
            "drop_last=True to avoid it). Warned once per loss.",
            UserWarning,
            stacklevel=2,
        )


def check_er_arguments(
    kappa: Optional[float], entropy_weight: float, estimator: str
) -> None:
    """Raises a ValueError/TypeError naming the first bad ER keyword argument."""
    if kappa is not None:
        resolve_kappa(kappa)
    check_real(entropy_weight, "entropy_weight")
    if entropy_weight < 0:
        raise ValueError(
            f"entropy_weight must be finite and >= 0, got {entropy_weight}"
        )
    check_estimator(estimator)


def check_gather_distributed(gather_distributed: bool) -> None:
    """Raises unless gather_distributed is a bool, and True only where it can work.

    For the losses whose lightly parent does not check it itself (NTXentLoss does).
    """
    check_bool(gather_distributed, "gather_distributed")
    if gather_distributed and not torch_dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available"
        )


def log_softmax_float32(logits: Tensor, temperature: float | Tensor) -> Tensor:
    """log_softmax(logits / temperature) in at least float32, outside autocast."""
    # Sharp temperatures (DINO's teacher: 0.04) turn fp16 logits into overflows.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return torch.log_softmax(logits / temperature, dim=-1)


def check_view_pair(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Raises a TypeError/ValueError naming the argument unless a, b are (N, D) alike."""
    for x, name in ((a, a_name), (b, b_name)):
        check_matrix(x, name, min_rows=1, min_dim=1, check_values=False)
    check_same_shape(a, a_name, b, b_name)


def normalize_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """L2-normalises the rows of x in at least float32 (exactly unit norm in bf16)."""
    # bf16 rows normalised in bf16 miss unit norm by 1e-2, which kappa multiplies.
    return F.normalize(at_least_float32(x), dim=1, eps=eps)


def marginal_entropy(
    log_p: Sequence[Tensor],
    gather_distributed: bool,
    extra_p: Optional[Tensor] = None,
) -> Tensor:
    """Entropy of the mean of the rows exp(log_p) (and extra_p), gathered if asked.

    The rows are averaged on this process into one row of K numbers
    (:func:`lightly_er.functional._discrete.mean_distribution`); with
    gather_distributed the rows of all processes are gathered (with gradient) and
    :func:`lightly_er.functional.discrete_entropy` takes their mean, which is the
    mean over the global batch when all processes hold as many rows.
    """
    # One row of K per process is gathered, not the N x K rows: the mean of the
    # means is the global marginal when every process holds as many rows.
    mean = gather_rows(
        mean_distribution(log_p, extra_p).unsqueeze(0), gather_distributed
    )
    return discrete_entropy(mean, validate=False)


def target_entropy(p_target: Sequence[Tensor], gather_distributed: bool) -> Tensor:
    """H(T): the entropy of the mean of the target rows, without gradient.

    With the reconstruction E[log q(T | X')] of the same targets it forms the
    Barber-Agakov lower bound I(T; X') >= H(T) + E[log q(T | X')] that DINO-ER and
    SwAV-ER report as ``last_bound`` (docs/objectives.md).
    """
    with torch.no_grad():
        mean = torch.stack([p.mean(dim=0) for p in p_target]).mean(dim=0)
        rows = gather_rows(mean.unsqueeze(0), gather_distributed)
        return discrete_entropy(rows, validate=False)


__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_KAPPA",
    "ERComponents",
    "ERLossMixin",
    "default_kappa",
    "entropy_settings",
    "resolve_kappa",
]
