"""Pieces shared by the ER loss modules: the components, the recording, the checks.

The math is :mod:`lightly_er.functional`'s; what lives here is how a loss module
combines it: gathering across processes, the constant log C_d(kappa) added once,
the NaN/Inf check of the first calls, and the single-sample warning.
"""

from __future__ import annotations

import warnings
from typing import (
    Any,
    Dict,
    Literal,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

import torch
from torch import Tensor

from lightly_er.experimental._learnable_kappa import LearnableKappa
from lightly_er.experimental._memory import DiscreteMemory, SphereMemory
from lightly_er.experimental.estimator import EntropyEstimator
from lightly_er.functional import log_vmf_normalizer
from lightly_er.functional._checks import SphereEstimator
from lightly_er.functional._special import log_vmf_normalizer_constant
from lightly_er.functional._sphere import relative_sphere_entropy
from lightly_er.utils.checks import (
    check_int,
)
from lightly_er.utils.compat import is_compiling

Support = Literal["sphere", "discrete"]

FIRST_CALLS_CHECKED = 10
"""With ``validate="first"``, the number of calls whose loss is checked for NaN/Inf."""


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
    :meth:`entropy_settings`, so meters, monitors and benchmarks ask the loss how
    its entropy is measured instead of keeping a table of losses.

    Attributes:
        support:
            Where the loss's entropy lives: the unit sphere or a discrete support.
        estimator:
            The :class:`lightly_er.experimental.EntropyEstimator` in use.
        entropy_weight:
            Weight of the entropy term.
        last_components:
            The terms of the most recent call, detached, or None before the first call.
        loss_scale:
            The loss is divided by it (kappa for BYOL/SimSiam-ER, 1 otherwise).
        last_bound:
            DINO-ER and SwAV-ER: a lower bound on the mutual information of the
            last call, detached (their entropy + reconstruction is a surrogate,
            not a bound; docs/objectives.md). None for the other losses.
    """

    support: Support
    estimator: EntropyEstimator
    entropy_weight: float
    last_components: Optional[ERComponents] = None
    last_bound: Optional[Tensor] = None
    loss_scale: float = 1.0
    _calls_checked: int = 0
    _warned_single_sample: bool = False

    def _init_estimator(self, estimator: EntropyEstimator) -> None:
        self.estimator = estimator
        self._calls_checked = 0

    def entropy_settings(self) -> Dict[str, Any]:
        """How this loss's entropy is measured, as EntropyMeter's keyword arguments.

        Returns:
            ``{"support": "sphere", "kappa": ..., "estimator": ...}`` or
            ``{"support": "discrete", "temperature": ...}``.
        """
        raise NotImplementedError

    # -- combining the terms --------------------------------------------------------
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
        reconstruction have their own kappa). A learned kappa's constants are
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
                    "contain NaN or Inf (pass estimator=EntropyEstimator("
                    "validate='never') to keep training through such steps, as "
                    "lightly's losses do)"
                )
        components = ERComponents(loss, entropy, reconstruction)
        self.last_components = ERComponents(*(t.detach() for t in components))
        return components

    def _due_for_check(self) -> bool:
        # The check reads the loss on the host: a sync the compiled graph must not have.
        validate = self.estimator.validate
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
    """The ER machinery of the losses on the unit sphere.

    Their concentration(s), possibly learnable, and the optional entropy memory are
    set by :meth:`_init_sphere`.

    Attributes:
        learned_kappa, learned_density_kappa:
            With ``EntropyEstimator(learn_kappa=True)``, the learnable
            concentrations (parameters), else None.
        entropy_memory:
            With ``EntropyEstimator(memory_size=...)``, the memory of earlier rows
            (extra centers of the entropy estimate), else None.
    """

    support: Support = "sphere"
    _kappa_value: float
    _density_kappa_value: Optional[float]
    learned_kappa: Optional[LearnableKappa]
    learned_density_kappa: Optional[LearnableKappa]
    entropy_memory: Optional[SphereMemory]

    def _init_sphere(self, kappa: float, estimator: EntropyEstimator) -> None:
        """Sets the estimator, kappa (and density_kappa), learnable or not, and memory.

        Call after the module's own ``__init__``.
        """
        self._init_estimator(estimator)
        density_kappa = estimator.density_kappa
        self._kappa_value = float(kappa)
        self._density_kappa_value = (
            None if density_kappa is None else float(density_kappa)
        )
        self.learned_kappa = None
        self.learned_density_kappa = None
        if estimator.learn_kappa:
            bounds = estimator.kappa_bounds
            self.learned_kappa = LearnableKappa(self._kappa_value, bounds)
            if self._density_kappa_value is not None:
                self.learned_density_kappa = LearnableKappa(
                    self._density_kappa_value, bounds
                )
        self.entropy_memory = sphere_memory(estimator.memory_size)

    def entropy_settings(self) -> Dict[str, Any]:
        """How this loss's entropy is measured, as EntropyMeter's keyword arguments.

        Returns:
            ``{"support": "sphere", "kappa": ..., "estimator": ...}``: the kernel's
            concentration (the current value of a learned one) and the estimator's
            name.
        """
        return {
            "support": "sphere",
            "kappa": self.density_kappa,
            "estimator": self.estimator.name,
        }

    @property
    def kappa(self) -> float:
        """The reconstruction's concentration (and the kernel's, unless separate).

        Its current value when learned (a host sync: read it to log, not per step).
        """
        if self.learned_kappa is not None:
            return float(self.learned_kappa().detach())
        return self._kappa_value

    @kappa.setter
    def kappa(self, value: float) -> None:
        if self.learned_kappa is not None:
            raise AttributeError("kappa is learned; it cannot be set")
        self._kappa_value = float(value)

    @property
    def density_kappa(self) -> float:
        """The kernel density's concentration: the one the entropy is measured at."""
        if self._density_kappa_value is None:
            return self.kappa
        if self.learned_density_kappa is not None:
            return float(self.learned_density_kappa().detach())
        return self._density_kappa_value

    def _kappas(self) -> Tuple[KappaLike, KappaLike]:
        """(kernel kappa, reconstruction kappa): Python floats, or tensors if learned.

        A separately learned kernel kappa is detached here: the ER objective would
        drive it to its lower bound (the kernel estimate grows as the kernels
        widen); :meth:`_density_kappa_term` trains it instead.
        """
        reconstruction: KappaLike = self._kappa_value
        if self.learned_kappa is not None:
            reconstruction = self.learned_kappa()
        if self._density_kappa_value is None:
            return reconstruction, reconstruction
        if self.learned_density_kappa is not None:
            return self.learned_density_kappa().detach(), reconstruction
        return self._density_kappa_value, reconstruction

    def _sphere_entropy(
        self, z: Tensor, extra_support: Optional[Tensor] = None
    ) -> Tensor:
        """The entropy of the (gathered) rows z + log C_d(kernel kappa), with memory.

        The entropy memory's rows, if any, are extra centers. A batch of one sample
        without extra centers has only its own kernel: every estimator then gives
        the kernel estimate H_min, constant (knn has no neighbor, and
        leave-one-out no other sample); this warns once per loss. On S^0 (dim 1)
        knn falls back to the plug-in kernel estimate.
        """
        kappa = self._kappas()[0]
        name: SphereEstimator = self.estimator.name
        leave_one_out = self.estimator.leave_one_out
        extra_valid: Optional[Tensor] = None
        if self.entropy_memory is not None and extra_support is None:
            extra_support, extra_valid = self.entropy_memory.centers(z)
        centers = z.shape[0] + (0 if extra_support is None else extra_support.shape[0])
        # Python ints from the shapes: deciding costs no host sync.
        if centers == 1:
            self._warn_single_sample()
            name, leave_one_out = "plugin", False
        elif name == "knn" and z.shape[1] == 1:
            # S^0 (two points) has no nearest-neighbor balls: the kernel estimate.
            name = "plugin"
        elif extra_valid is not None and z.shape[0] == 1:
            # The memory may still be empty: keep the sample's own kernel.
            leave_one_out = False
        return relative_sphere_entropy(
            z,
            kappa,
            estimator=name,
            leave_one_out=leave_one_out,
            extra_support=extra_support,
            validate=False,
            extra_valid=extra_valid,
        )

    def _remember(self, rows: Tensor, entropy: Tensor) -> None:
        """Stages rows for the entropy memory; they join it after the backward."""
        if self.entropy_memory is not None:
            self.entropy_memory.stage(rows, entropy)

    def _sphere_record(
        self,
        entropy: Tensor,
        reconstruction: Tensor,
        dim: int,
        rows: Optional[Tensor] = None,
    ) -> ERComponents:
        """_record for the sphere losses: their constants, and a learned kernel kappa.

        ``entropy`` and ``reconstruction`` come from :meth:`_sphere_entropy` and
        :func:`relative_vmf_reconstruction` at :meth:`_kappas`. With a separately
        learned kernel kappa, ``rows`` (the rows of the entropy) give it its
        gradient: that of the leave-one-out likelihood of the detached rows, added
        as a term of value 0.
        """
        kernel, recon = self._kappas()
        components = self._record(
            entropy,
            reconstruction,
            self.entropy_weight,
            log_norm_of(dim, kernel),
            log_norm_of(dim, recon),
        )
        if self.learned_density_kappa is None or rows is None or rows.shape[0] < 2:
            return components
        term = self._density_kappa_term(rows)
        return components._replace(loss=components.loss + (term - term.detach()))

    def _density_kappa_term(self, rows: Tensor) -> Tensor:
        """The leave-one-out entropy of the detached rows at the learned kernel kappa.

        Minimizing it is maximum likelihood (leave-one-out) for the bandwidth; its
        gradient reaches only the kernel kappa.
        """
        assert self.learned_density_kappa is not None
        kappa = self.learned_density_kappa()
        rows = rows.detach()
        relative = relative_sphere_entropy(
            rows, kappa, estimator="joe", leave_one_out=True, validate=False
        )
        term = relative - log_vmf_normalizer(rows.shape[1], kappa).to(relative.dtype)
        scale = self.loss_scale
        return term / scale if scale != 1.0 else term


class DiscreteERLossMixin(ERLossMixin):
    """The ER machinery of the losses on a discrete support (prototypes).

    Attributes:
        entropy_memory:
            With ``EntropyEstimator(memory_size=...)``, the probability rows of
            earlier batches that join the marginal of the entropy term, else None.
    """

    support: Support = "discrete"
    entropy_memory: Optional[DiscreteMemory]

    def _init_discrete(self, estimator: EntropyEstimator) -> None:
        self._init_estimator(estimator)
        self.entropy_memory = discrete_memory(estimator.memory_rows)

    def _temperature(self) -> float:
        """The softmax temperature of the predictions whose entropy is the term."""
        raise NotImplementedError

    def entropy_settings(self) -> Dict[str, Any]:
        """How this loss's entropy is measured, as EntropyMeter's keyword arguments.

        Returns:
            ``{"support": "discrete", "temperature": ...}``: the temperature of the
            softmax whose marginal entropy is the term.
        """
        return {"support": "discrete", "temperature": float(self._temperature())}


KappaLike = Union[float, Tensor]


def log_norm_of(dim: int, kappa: KappaLike) -> KappaLike:
    """log C_d(kappa): a cached Python double, or a float64 tensor with its gradient."""
    if isinstance(kappa, Tensor):
        return log_vmf_normalizer(dim, kappa)
    return log_vmf_normalizer_constant(dim, kappa)


def _as_dtype(value: KappaLike, like: Tensor) -> KappaLike:
    return value.to(like.dtype) if isinstance(value, Tensor) else value


def sphere_memory(size: Union[int, Tuple[int, int]]) -> Optional[SphereMemory]:
    """The entropy memory of a sphere loss: None for 0, else its buffers.

    Args:
        size: Rows to keep, or a (rows, dim) pair to allocate it now (then a
            compiled loss needs no recompilation when it first fills). Checked by
            :class:`lightly_er.experimental.EntropyEstimator`.
    """
    if isinstance(size, tuple):
        return SphereMemory(int(size[0]), int(size[1]))
    return SphereMemory(int(size)) if size > 0 else None


def discrete_memory(size: int) -> Optional[DiscreteMemory]:
    """The entropy memory of a discrete loss: None for 0, else its buffers."""
    check_int(size, "entropy_memory_size", 0)
    return DiscreteMemory(int(size)) if size > 0 else None


__all__ = [
    "DiscreteERLossMixin",
    "ERComponents",
    "ERLossMixin",
    "SphereERLossMixin",
]
