"""Pieces shared by the ER loss modules: the components, the recording, the checks.

The math is :mod:`lightly_er.functional`'s; what lives here is how a loss module
combines it: gathering across processes, the constant log C_d(kappa) added once,
the NaN/Inf check of the first calls, and the single-sample warning.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributed as torch_dist

from lightly_er.functional import discrete_entropy, log_vmf_normalizer
from lightly_er.functional._checks import SphereEstimator, at_least_float32
from lightly_er.functional._discrete import mean_distribution
from lightly_er.functional._kde import KDE_ESTIMATORS
from lightly_er.functional._special import log_vmf_normalizer_constant
from lightly_er.functional._sphere import relative_sphere_entropy
from lightly_er.loss._kappa import (
    DEFAULT_ESTIMATOR,
    DEFAULT_KAPPA,
    default_kappa,
    entropy_settings,
    resolve_kappa,
)
from lightly_er.loss._learnable_kappa import LearnableKappa
from lightly_er.loss._memory import DiscreteMemory, SphereMemory
from lightly_er.utils.checks import (
    check_bool,
    check_choice,
    check_estimator,
    check_int,
    check_matrix,
    check_positive,
    check_real,
    check_same_shape,
)
from lightly_er.utils.dist import gather_rows, gather_rows_no_grad

VALIDATE_MODES: Tuple[str, ...] = ("first", "always", "never")
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

    The sphere losses also get their concentration(s), possibly learnable, and the
    optional entropy memory from here (:meth:`_init_sphere`).

    Attributes:
        last_components:
            The terms of the most recent call, detached, or None before the first call.
        validate:
            When the loss is checked for NaN/Inf (a host sync on an accelerator):
            ``"first"`` the first 10 calls, ``"always"`` every call, ``"never"``
            never (lightly's behavior). The check is skipped while torch.compile
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
    # Set by the sphere losses only (_init_sphere): entropy_settings reads a kappa
    # attribute as "this loss lives on the sphere".
    _kappa_value: float
    _density_kappa_value: Optional[float]
    estimator: SphereEstimator
    leave_one_out: bool
    # A SphereMemory (sphere losses) or DiscreteMemory (discrete ones), or None.
    entropy_memory: Any

    def _set_validate(self, validate: str) -> None:
        check_choice(validate, "validate", VALIDATE_MODES)
        self.validate = validate
        self._calls_checked = 0

    # -- concentrations and memory of the sphere losses -----------------------------
    def _init_sphere(
        self,
        kappa: float,
        density_kappa: Optional[float] = None,
        learn_kappa: bool = False,
        kappa_bounds: Optional[Sequence[float]] = None,
        entropy_memory_size: Union[int, Sequence[int]] = 0,
    ) -> None:
        """Sets kappa (and density_kappa), learnable or not, and the entropy memory.

        Call after the module's own ``__init__`` and after ``self.estimator`` is set.
        """
        check_bool(learn_kappa, "learn_kappa")
        if density_kappa is not None:
            check_positive(density_kappa, "density_kappa")
            if self.estimator not in KDE_ESTIMATORS:
                raise ValueError(
                    "density_kappa is the kernel's concentration; the estimator "
                    f"{self.estimator!r} has no kernel"
                )
        self._kappa_value = float(kappa)
        self._density_kappa_value = (
            None if density_kappa is None else float(density_kappa)
        )
        self.learned_kappa: Optional[LearnableKappa] = None
        self.learned_density_kappa: Optional[LearnableKappa] = None
        if learn_kappa:
            self.learned_kappa = LearnableKappa(self._kappa_value, kappa_bounds)
            if self._density_kappa_value is not None:
                self.learned_density_kappa = LearnableKappa(
                    self._density_kappa_value, kappa_bounds
                )
        self.entropy_memory = sphere_memory(entropy_memory_size)

    @property
    def kappa(self) -> float:
        """The reconstruction's concentration (and the kernel's, unless separate).

        Its current value when learned (a host sync: read it to log, not per step).
        """
        learned = self.__dict__.get("_modules", {}).get("learned_kappa")
        if learned is not None:
            return float(learned().detach())
        return self._kappa_value

    @kappa.setter
    def kappa(self, value: float) -> None:
        if self.__dict__.get("_modules", {}).get("learned_kappa") is not None:
            raise AttributeError("kappa is learned; it cannot be set")
        self._kappa_value = float(value)

    @property
    def density_kappa(self) -> float:
        """The kernel density's concentration: the one the entropy is measured at."""
        if self._density_kappa_value is None:
            return self.kappa
        learned = self.learned_density_kappa
        if learned is not None:
            return float(learned().detach())
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
        self,
        z: Tensor,
        extra_support: Optional[Tensor] = None,
        kappa: Optional[KappaLike] = None,
    ) -> Tensor:
        """The entropy of the (gathered) rows z + log C_d(kernel kappa), with memory.

        The entropy memory's rows, if any, are extra centers. A batch of one sample
        without extra centers has only its own kernel: every estimator then gives
        the kernel estimate H_min, constant (knn has no neighbor, and
        leave-one-out no other sample); this warns once per loss. On S^0 (dim 1)
        knn falls back to the plug-in kernel estimate.
        """
        if kappa is None:
            kappa = self._kappas()[0]
        estimator: str = self.estimator
        leave_one_out = self.leave_one_out
        extra_valid: Optional[Tensor] = None
        memory = self.__dict__.get("_modules", {}).get("entropy_memory")
        if memory is not None and extra_support is None:
            extra_support, extra_valid = memory.centres(z)
        centres = z.shape[0] + (0 if extra_support is None else extra_support.shape[0])
        # Python ints from the shapes: deciding costs no host sync.
        if centres == 1:
            self._warn_single_sample()
            estimator, leave_one_out = "plugin", False
        elif estimator == "knn" and z.shape[1] == 1:
            # S^0 (two points) has no nearest-neighbor balls: the kernel estimate.
            estimator = "plugin"
        elif extra_valid is not None and z.shape[0] == 1:
            # The memory may still be empty: keep the sample's own kernel.
            leave_one_out = False
        return relative_sphere_entropy(
            z,
            kappa,
            estimator=cast(SphereEstimator, estimator),
            leave_one_out=leave_one_out,
            extra_support=extra_support,
            validate=False,
            extra_valid=extra_valid,
        )

    def _remember(self, rows: Tensor, entropy: Tensor) -> None:
        """Stages rows for the entropy memory; they join it after the backward."""
        memory = self.__dict__.get("_modules", {}).get("entropy_memory")
        if memory is not None:
            memory.stage(rows, entropy)

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
            self.entropy_weight,  # type: ignore[attr-defined]
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


KappaLike = Union[float, Tensor]


def log_norm_of(dim: int, kappa: KappaLike) -> KappaLike:
    """log C_d(kappa): a cached Python double, or a float64 tensor with its gradient."""
    if isinstance(kappa, Tensor):
        return log_vmf_normalizer(dim, kappa)
    return log_vmf_normalizer_constant(dim, kappa)


def _as_dtype(value: KappaLike, like: Tensor) -> KappaLike:
    return value.to(like.dtype) if isinstance(value, Tensor) else value


def sphere_memory(size: Union[int, Sequence[int]]) -> Optional[SphereMemory]:
    """The entropy memory of a sphere loss: None for 0, else its buffers.

    Args:
        size: Rows to keep, or a (rows, dim) pair to allocate it now (then a
            compiled loss needs no recompilation when it first fills).
    """
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ValueError(
                f"entropy_memory_size must be an int or a (size, dim) pair, got {size}"
            )
        return SphereMemory(size[0], size[1])
    check_int(size, "entropy_memory_size", 0)
    rows = cast(int, size)
    return SphereMemory(rows) if rows > 0 else None


def discrete_memory(size: int) -> Optional[DiscreteMemory]:
    """The entropy memory of a discrete loss: None for 0, else its buffers."""
    check_int(size, "entropy_memory_size", 0)
    return DiscreteMemory(int(size)) if size > 0 else None


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


def softmax_float32(logits: Tensor, temperature: float | Tensor) -> Tensor:
    """softmax(logits / temperature) in at least float32, outside autocast."""
    # One pass where log_softmax(...).exp() takes two: the targets need no logs.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return torch.softmax(logits / temperature, dim=-1)


def check_view_pair(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Raises a TypeError/ValueError naming the argument unless a, b are (N, D) alike."""
    for x, name in ((a, a_name), (b, b_name)):
        check_matrix(x, name, min_rows=1, min_dim=1, check_values=False)
    check_same_shape(a, a_name, b, b_name)


def normalize_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """L2-normalizes the rows of x in at least float32 (exactly unit norm in bf16)."""
    # bf16 rows normalized in bf16 miss unit norm by 1e-2, which kappa multiplies.
    return F.normalize(at_least_float32(x), dim=1, eps=eps)


def marginal_entropy(
    log_p: Sequence[Tensor],
    gather_distributed: bool,
    extra_p: Optional[Tensor] = None,
    memory: Optional[DiscreteMemory] = None,
) -> Tensor:
    """Entropy of the mean of the rows exp(log_p) (and extra_p), gathered if asked.

    The rows are averaged on this process into one row of K numbers
    (:func:`lightly_er.functional._discrete.mean_distribution`); with
    gather_distributed the rows of all processes are gathered (with gradient) and
    :func:`lightly_er.functional.discrete_entropy` takes their mean, which is the
    mean over the global batch when all processes hold as many rows. With an
    entropy ``memory`` the rows it holds join the mean, and this call's rows of
    log_p (not extra_p) are staged for it (they join after the backward).
    """
    if memory is None:
        # One row of K per process is gathered, not the N x K rows: the mean of the
        # means is the global marginal when every process holds as many rows.
        mean = gather_rows(
            mean_distribution(log_p, extra_p).unsqueeze(0), gather_distributed
        )
        return discrete_entropy(mean, validate=False)
    marginal, staged = marginal_distribution(log_p, gather_distributed, extra_p, memory)
    entropy = discrete_entropy(marginal.unsqueeze(0), validate=False)
    memory.stage(*staged, entropy)
    return entropy


def marginal_distribution(
    log_p: Sequence[Tensor],
    gather_distributed: bool,
    extra_p: Optional[Tensor] = None,
    memory: Optional[DiscreteMemory] = None,
) -> Tuple[Tensor, Tuple[Tensor, int]]:
    """The marginal row (K,) of :func:`marginal_entropy`, and what to stage.

    Returns:
        (marginal, (row sum, row count) of this call's log_p rows over all
        processes): the caller stages the latter in the memory with its output.
    """
    mean = gather_rows(
        mean_distribution(log_p, extra_p).unsqueeze(0), gather_distributed
    )
    own = sum(view.shape[0] for view in log_p)
    rows = own + (0 if extra_p is None else extra_p.shape[0])
    total = mean.sum(dim=0) * rows
    count = rows * mean.shape[0]
    stored, stored_count = (None, None) if memory is None else memory.totals(total)
    if stored is None or stored_count is None:
        marginal = total / count
    else:
        marginal = (total + stored) / (stored_count + count)
    batch = total.detach()
    if extra_p is not None:
        with torch.no_grad():
            # Only this call's own rows are remembered (not the queue's).
            sums = torch.stack([view.exp().sum(dim=0) for view in log_p]).sum(dim=0)
            sums = sums.unsqueeze(0)
            if gather_distributed:
                sums = gather_rows_no_grad(sums)
            batch = sums.sum(dim=0)
    return marginal, (batch, own * mean.shape[0])


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
