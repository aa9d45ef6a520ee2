"""Pieces shared by the ER loss modules: the components, the recording, the checks.

The math is in :mod:`lightly_er.functional`; what lives here is how a loss module
combines it: the constant log C_d(kappa) added once, the NaN/Inf check of the first
calls, and the single-sample warning. The mixins implement the authors' settings
(the plug-in kernel estimate with the self-term kept, a fixed kappa); each step is a
method that a subclass may override.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from typing_extensions import Literal

from lightly_er.functional import log_vmf_normalizer
from lightly_er.functional._special import log_vmf_normalizer_constant
from lightly_er.functional._vmf import relative_sphere_entropy
from lightly_er.loss._terms import marginal_entropy
from lightly_er.utils.compat import is_compiling

Support = Literal["sphere", "discrete"]
ValidateMode = Literal["first", "always", "never"]
KappaLike = Union[float, Tensor]

FIRST_CALLS_CHECKED = 10
"""The number of first calls whose loss is checked for NaN/Inf."""


class ERComponents(NamedTuple):
    """The terms of an ER loss, as returned by ``forward_components``.

    Attributes:
        loss:
            The value to minimize: -(entropy_weight * entropy + reconstruction) /
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

    Every ER loss states its support (``"sphere"`` or ``"discrete"``) and answers
    :meth:`entropy_settings`, so code that measures the entropy of a model's outputs
    asks the loss how instead of keeping a table of losses.

    Attributes:
        support:
            Where the loss's entropy lives: the unit sphere or a discrete support.
        entropy_weight:
            Weight of the entropy term.
        last_components:
            The terms of the most recent call, detached, or None before the first call.
        loss_scale:
            The loss is divided by it (kappa for BYOL/SimSiam-ER, 1 otherwise).
        last_bound:
            DINO-ER and SwAV-ER: a lower bound on the mutual information of the
            last call, detached (their entropy + reconstruction is a surrogate,
            not a bound). None for the other losses.
    """

    support: Support
    entropy_weight: float
    last_components: Optional[ERComponents] = None
    last_bound: Optional[Tensor] = None
    loss_scale: float = 1.0
    _calls_checked: int = 0
    _warned_single_sample: bool = False

    def entropy_settings(self) -> Dict[str, Any]:
        """How this loss's entropy is measured.

        Returns:
            ``{"support": "sphere", "kappa": ..., "estimator": ...}`` or
            ``{"support": "discrete", "temperature": ...}``.
        """
        raise NotImplementedError

    def _validate_mode(self) -> ValidateMode:
        """When the loss is checked for NaN/Inf: the first calls."""
        return "first"

    def _nan_hint(self) -> str:
        """The end of the NaN/Inf error message."""
        return ""

    def _record(
        self,
        entropy: Tensor,
        reconstruction: Tensor,
        entropy_weight: float,
        log_norm: KappaLike = 0.0,
        reconstruction_log_norm: Optional[KappaLike] = None,
    ) -> ERComponents:
        """Returns (and keeps) the loss and its terms.

        With ``log_norm`` = log C_d(kappa) (the sphere losses), the terms come
        without their constants: entropy + log_norm and reconstruction -
        reconstruction_log_norm (the same constant unless the kernel and the
        reconstruction have their own kappa). A tensor kappa's constants are
        tensors, with the exact gradient of log C_d.
        """
        loss = -(entropy_weight * entropy + reconstruction)
        if reconstruction_log_norm is None:
            reconstruction_log_norm = log_norm
        # -log C_d in the entropy and +log C_d in the reconstruction cancel at
        # entropy_weight 1 and one kappa; the rest is added once (a Python double
        # for a fixed kappa). At large d the constant (-270,000 nats at d = 65,536)
        # would swamp float32 terms.
        offset = entropy_weight * log_norm - reconstruction_log_norm
        if isinstance(offset, Tensor):
            loss = loss + offset.to(loss.dtype)
        elif offset != 0.0:
            loss = loss + offset
        if isinstance(log_norm, Tensor) or log_norm != 0.0:
            entropy = entropy - _as_dtype(log_norm, entropy)
            reconstruction = reconstruction + _as_dtype(
                reconstruction_log_norm, reconstruction
            )
        if self.loss_scale != 1.0:
            loss = loss / self.loss_scale
        if self._due_for_check():
            # The estimators skip their per-input value checks inside the losses;
            # one check of the result turns NaN/Inf inputs into a clear error.
            if not bool(torch.isfinite(loss)):
                raise ValueError(
                    f"the ER loss is not finite (entropy {entropy.item():.4g}, "
                    f"reconstruction {reconstruction.item():.4g}): the model outputs "
                    f"contain NaN or Inf{self._nan_hint()}"
                )
        components = ERComponents(loss, entropy, reconstruction)
        self.last_components = ERComponents(*(t.detach() for t in components))
        return components

    def _due_for_check(self) -> bool:
        # The check reads the loss on the host: a sync the compiled graph must not have.
        validate = self._validate_mode()
        if validate == "never" or is_compiling():
            return False
        if validate == "always":
            return True
        self._calls_checked += 1
        return self._calls_checked <= FIRST_CALLS_CHECKED

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


class SphereERLossMixin(ERLossMixin):
    """The ER machinery of the losses on the unit sphere, at a fixed kappa.

    The entropy is the plug-in vMF kernel-density estimate with the self-term kept,
    as in the authors' reference code. Call :meth:`_init_sphere` after the module's
    own ``__init__``.
    """

    support: Support = "sphere"
    _kappa_value: float

    def _init_sphere(self, kappa: float) -> None:
        """Sets kappa and resets the NaN/Inf check."""
        self._kappa_value = float(kappa)
        self._calls_checked = 0

    def _estimator_name(self) -> str:
        """The name of the sphere entropy estimator."""
        return "plugin"

    def entropy_settings(self) -> Dict[str, Any]:
        """How this loss's entropy is measured.

        Returns:
            ``{"support": "sphere", "kappa": ..., "estimator": ...}``: the kernel's
            concentration and the estimator's name.
        """
        return {
            "support": "sphere",
            "kappa": self.density_kappa,
            "estimator": self._estimator_name(),
        }

    @property
    def kappa(self) -> float:
        """The concentration of the reconstruction density and of the kernel."""
        return self._kappa_value

    @kappa.setter
    def kappa(self, value: float) -> None:
        self._kappa_value = float(value)

    @property
    def density_kappa(self) -> float:
        """The kernel density's concentration: the one the entropy is measured at."""
        return self.kappa

    def _kappas(self) -> Tuple[KappaLike, KappaLike]:
        """(kernel kappa, reconstruction kappa)."""
        return self._kappa_value, self._kappa_value

    def _sphere_entropy(
        self, z: Tensor, extra_support: Optional[Tensor] = None
    ) -> Tensor:
        """The entropy of the (gathered) rows z + log C_d(kappa).

        ``extra_support`` rows (a memory bank) are extra kernel centers. A batch of
        one sample without extra centers has only its own kernel: the estimate is
        then the constant H_min, and this warns once per loss.
        """
        if z.shape[0] + (0 if extra_support is None else extra_support.shape[0]) == 1:
            self._warn_single_sample()
        return relative_sphere_entropy(
            z, self._kappas()[0], extra_support=extra_support, validate=False
        )

    def _remember(self, rows: Tensor, entropy: Tensor) -> None:
        """Called with the rows of each entropy term; nothing to keep here."""

    def _sphere_record(
        self,
        entropy: Tensor,
        reconstruction: Tensor,
        dim: int,
        rows: Optional[Tensor] = None,
    ) -> ERComponents:
        """_record with the sphere losses' constants log C_d(kappa).

        ``entropy`` and ``reconstruction`` come from :meth:`_sphere_entropy` and
        :func:`lightly_er.functional._vmf.relative_vmf_reconstruction` at
        :meth:`_kappas`; ``rows`` are the rows of the entropy.
        """
        kernel, recon = self._kappas()
        return self._record(
            entropy,
            reconstruction,
            self.entropy_weight,
            log_norm_of(dim, kernel),
            log_norm_of(dim, recon),
        )


class DiscreteERLossMixin(ERLossMixin):
    """The ER machinery of the losses on a discrete support (prototypes)."""

    support: Support = "discrete"
    gather_distributed: bool

    def _init_discrete(self) -> None:
        """Resets the NaN/Inf check; call after the module's own ``__init__``."""
        self._calls_checked = 0

    def _marginal_entropy(
        self, log_p: Sequence[Tensor], extra_p: Optional[Tensor] = None
    ) -> Tensor:
        """The entropy of the marginal of the rows exp(log_p) (and extra_p)."""
        return marginal_entropy(log_p, self.gather_distributed, extra_p)

    def _temperature(self) -> float:
        """The softmax temperature of the predictions whose entropy is the term."""
        raise NotImplementedError

    def entropy_settings(self) -> Dict[str, Any]:
        """How this loss's entropy is measured.

        Returns:
            ``{"support": "discrete", "temperature": ...}``: the temperature of the
            softmax whose marginal entropy is the term.
        """
        return {"support": "discrete", "temperature": float(self._temperature())}


def log_norm_of(dim: int, kappa: KappaLike) -> KappaLike:
    """log C_d(kappa): a cached Python double, or a float64 tensor with its gradient."""
    if isinstance(kappa, Tensor):
        return log_vmf_normalizer(dim, kappa)
    return log_vmf_normalizer_constant(dim, kappa)


def _as_dtype(value: KappaLike, like: Tensor) -> KappaLike:
    return value.to(like.dtype) if isinstance(value, Tensor) else value


__all__ = [
    "DiscreteERLossMixin",
    "ERComponents",
    "ERLossMixin",
    "SphereERLossMixin",
]
