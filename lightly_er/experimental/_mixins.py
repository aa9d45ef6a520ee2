"""The research options of :class:`EntropyEstimator`, as overrides of the loss mixins.

:mod:`lightly_er.loss._base` implements the authors' settings (plug-in estimate,
fixed kappa, no memory); the mixins here override its steps for the options of an
:class:`EntropyEstimator`: the other sphere estimators and leave-one-out, a separate
or learned kappa, an entropy memory and the NaN/Inf check's cadence. The public ER
losses of :mod:`lightly_er.loss` are the core losses with these mixins in front.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from lightly_er.experimental._learnable_kappa import LearnableKappa
from lightly_er.experimental._memory import DiscreteMemory, SphereMemory
from lightly_er.experimental.estimator import EntropyEstimator
from lightly_er.functional import discrete_entropy, log_vmf_normalizer
from lightly_er.functional._discrete import mean_distribution
from lightly_er.functional._sphere import SphereEstimator, relative_sphere_entropy
from lightly_er.loss._base import (
    DiscreteERLossMixin,
    ERComponents,
    ERLossMixin,
    KappaLike,
    SphereERLossMixin,
    ValidateMode,
    log_norm_of,
)
from lightly_er.loss._terms import marginal_entropy
from lightly_er.utils.checks import check_int
from lightly_er.utils.dist import gather_rows, gather_rows_no_grad


class EstimatorMixin(ERLossMixin):
    """Reads the NaN/Inf check's cadence from the loss's :class:`EntropyEstimator`.

    Attributes:
        estimator:
            The :class:`EntropyEstimator` in use.
    """

    estimator: EntropyEstimator

    def _validate_mode(self) -> ValidateMode:
        return self.estimator.validate

    def _nan_hint(self) -> str:
        return (
            " (pass estimator=EntropyEstimator(validate='never') to keep training "
            "through such steps, as lightly's losses do)"
        )


class SphereEstimatorMixin(EstimatorMixin, SphereERLossMixin):
    """The sphere losses with an :class:`EntropyEstimator`'s options.

    Attributes:
        learned_kappa, learned_density_kappa:
            With ``EntropyEstimator(learn_kappa=True)``, the learnable
            concentrations (parameters), else None.
        entropy_memory:
            With ``EntropyEstimator(memory_size=...)``, the memory of earlier rows
            (extra centers of the entropy estimate), else None.
    """

    _density_kappa_value: Optional[float]
    learned_kappa: Optional[LearnableKappa]
    learned_density_kappa: Optional[LearnableKappa]
    entropy_memory: Optional[SphereMemory]

    def _init_estimator(self, estimator: EntropyEstimator) -> None:
        """Sets the estimator, density_kappa, the learnable kappas and the memory.

        Call after the core loss's ``__init__`` (which set kappa).
        """
        self.estimator = estimator
        self._calls_checked = 0
        density_kappa = estimator.density_kappa
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

    def _estimator_name(self) -> str:
        return self.estimator.name

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
        """_record with the constants, and the gradient of a learned kernel kappa.

        With a separately learned kernel kappa, ``rows`` (the rows of the entropy)
        give it its gradient: that of the leave-one-out likelihood of the detached
        rows, added as a term of value 0.
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


class DiscreteEstimatorMixin(EstimatorMixin, DiscreteERLossMixin):
    """The discrete losses with an :class:`EntropyEstimator`'s options.

    Attributes:
        entropy_memory:
            With ``EntropyEstimator(memory_size=...)``, the probability rows of
            earlier batches that join the marginal of the entropy term, else None.
    """

    entropy_memory: Optional[DiscreteMemory]
    gather_distributed: bool

    def _init_estimator(self, estimator: EntropyEstimator) -> None:
        """Sets the estimator and the memory; call after the core loss's __init__."""
        self.estimator = estimator
        self._calls_checked = 0
        self.entropy_memory = discrete_memory(estimator.memory_rows)

    def _marginal_entropy(
        self, log_p: Sequence[Tensor], extra_p: Optional[Tensor] = None
    ) -> Tensor:
        """The marginal entropy, with the memory's rows if there is a memory."""
        if self.entropy_memory is None:
            return marginal_entropy(log_p, self.gather_distributed, extra_p)
        marginal, staged = marginal_distribution(
            log_p, self.gather_distributed, extra_p, self.entropy_memory
        )
        entropy = discrete_entropy(marginal.unsqueeze(0), validate=False)
        self.entropy_memory.stage(*staged, entropy)
        return entropy


def marginal_distribution(
    log_p: Sequence[Tensor],
    gather_distributed: bool,
    extra_p: Optional[Tensor] = None,
    memory: Optional[DiscreteMemory] = None,
) -> Tuple[Tensor, Tuple[Tensor, int]]:
    """The marginal row (K,) of the entropy term with a memory, and what to stage.

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


def sphere_memory(size: Union[int, Tuple[int, int]]) -> Optional[SphereMemory]:
    """The entropy memory of a sphere loss: None for 0, else its buffers.

    Args:
        size: Rows to keep, or a (rows, dim) pair to allocate it now (then a
            compiled loss needs no recompilation when it first fills). Checked by
            :class:`EntropyEstimator`.
    """
    if isinstance(size, tuple):
        return SphereMemory(int(size[0]), int(size[1]))
    return SphereMemory(int(size)) if size > 0 else None


def discrete_memory(size: int) -> Optional[DiscreteMemory]:
    """The entropy memory of a discrete loss: None for 0, else its buffers."""
    check_int(size, "entropy_memory_size", 0)
    return DiscreteMemory(int(size)) if size > 0 else None


__all__ = [
    "DiscreteEstimatorMixin",
    "EstimatorMixin",
    "SphereEstimatorMixin",
    "discrete_memory",
    "marginal_distribution",
    "sphere_memory",
]
