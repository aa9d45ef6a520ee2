"""EntropyMeter: label-free measurements of a batch of representations, plain PyTorch.

This module imports neither Lightning nor anything that does, so that heads and
plain PyTorch training loops can use it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor
from torch import distributed as torch_dist
from torch.nn import functional as F

from lightly_er import functional
from lightly_er.functional._checks import check_probabilities
from lightly_er.functional._diagnostics import lidar
from lightly_er.functional._special import log_vmf_normalizer_constant
from lightly_er.functional._sphere import relative_sphere_entropy
from lightly_er.loss._kappa import (
    DEFAULT_ESTIMATOR,
    DEFAULT_TEMPERATURE,
    entropy_settings,
    resolve_kappa,
)
from lightly_er.monitoring._names import (
    DISCRETE_METRICS,
    SPHERE_METRICS,
    DiscreteInputs,
    MetricName,
    Support,
)
from lightly_er.utils.checks import (
    check_bool,
    check_choice,
    check_estimator,
    check_positive,
    check_real,
)
from lightly_er.utils.dist import gather_rows_no_grad

SUPPORTS: Tuple[str, ...] = ("sphere", "discrete")
DISCRETE_INPUTS: Tuple[str, ...] = ("auto", "logits", "probabilities")
_MIN_ROWS = 2  # one sample has no spread to measure (its gap is 0 by construction)
_MIN_ROWS_DIMENSION = 4  # the U-statistics of the dimension score need 4 rows


class EntropyMeter:
    """Measures the entropy and collapse of a batch of representations, without autograd.

    Each call of :meth:`update` measures one batch, as the ER objective [0] sees it,
    and returns the metrics (it also keeps the latest ones and their moving
    averages). When to measure is the caller's choice: the
    :class:`lightly_er.monitoring.EntropyMonitor` callback decides it for Lightning.

    ``support="sphere"`` (embeddings, L2-normalized here): ``entropy``, the vMF
    kernel-density estimate at ``kappa`` in nats; ``entropy_gap``, its distance to
    its minimum, in [0, log N] (0: collapsed); ``normalized_entropy``, the gap over
    log N; ``dimension_score`` (:func:`lightly_er.functional.dimension_score`, the
    batch-size-free collapse score the default alarm reads) and
    ``participation_ratio`` (the number of directions used), both NaN below N = 4;
    ``collapse_score`` (:func:`lightly_er.functional.collapse_score`, which depends
    on the batch size), ``effective_rank`` (RankMe), ``std`` (lightly's std of
    L2-normalized outputs), ``uniformity`` and, given second views ``x2``,
    ``alignment`` and ``lidar`` (:func:`lightly_er.functional._diagnostics.lidar`,
    the effective rank of the LDA matrix between the two views of the samples).

    ``support="discrete"`` (prototype scores, as logits turned into
    softmax(x / temperature), or as probabilities): ``entropy`` = H(E[p]), the
    entropy of the batch marginal, and ``normalized_entropy`` = entropy / log K;
    ``conditional_entropy`` = E[H(p)]; ``mutual_information`` = H(E[p]) - E[H(p)]
    between input and prototype, and ``normalized_mutual_information`` = that over
    log K (the default alarm reads it); ``prototype_usage``, the perplexity of the
    argmax histogram; and ``collapse_score``, ``effective_rank`` and ``std`` of the
    probability rows. docs/reading_the_numbers.md says how to read each one and
    what it cannot see.

    A batch it cannot measure (fewer than 2 rows, or NaN or Inf values) gives a
    warning (once per meter for the rows) and a dict with NaN, "not measured", for
    every metric; the state is then unchanged.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Args:
        support:
            ``"sphere"`` (embeddings) or ``"discrete"`` (prototype scores).
        kappa:
            Concentration of the vMF kernel (sphere), > 0; None means 10, the
            authors' default, until the monitor binds it to the loss's kappa.
        estimator:
            The sphere entropy estimator of
            :func:`lightly_er.functional.sphere_entropy`: ``"plugin"`` (the
            authors', default), ``"joe"``, ``"renyi2"``, ``"knn"`` or ``"logdet"``.
        temperature:
            Softmax temperature of discrete logits, > 0; None means 0.1.
        inputs:
            What discrete rows hold: ``"logits"``, ``"probabilities"``, or
            ``"auto"`` (default): probabilities where every row is non-negative and
            sums to 1 (then with a one-time warning), logits otherwise.
        momentum:
            Momentum of the moving averages in ``running``, in [0, 1).
        resolution:
            The ``resolution`` of the collapse and dimension scores, > 0.
        gather_distributed:
            Whether to measure the batch gathered from all processes (a collective:
            all processes must then call :meth:`update` together).

    Attributes:
        support, kappa, estimator, temperature, inputs, momentum, resolution,
        gather_distributed:
            The arguments.
        latest, running:
            The metrics of the last measured batch, and their moving averages.
        num_updates:
            How many batches were measured.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If support, estimator or inputs is not one of its choices, or
            a number is out of its range.

    Examples:
        >>> import torch
        >>> from lightly_er.monitoring import EntropyMeter
        >>> meter = EntropyMeter("sphere", kappa=10.0)
        >>> metrics = meter.update(torch.randn(64, 32))
        >>> metrics["collapse_score"] > 0.9
        True
        >>> round(meter.update(torch.ones(64, 32))["collapse_score"], 3)
        0.0
    """

    def __init__(
        self,
        support: Support = "sphere",
        kappa: Optional[float] = None,
        estimator: functional.SphereEstimator = DEFAULT_ESTIMATOR,  # type: ignore[assignment]
        temperature: Optional[float] = None,
        inputs: DiscreteInputs = "auto",
        momentum: float = 0.9,
        resolution: float = 1e-3,
        gather_distributed: bool = False,
    ) -> None:
        check_choice(support, "support", SUPPORTS)
        if kappa is not None:
            check_positive(kappa, "kappa")
        check_estimator(estimator)
        if temperature is not None:
            check_positive(temperature, "temperature")
        check_choice(inputs, "inputs", DISCRETE_INPUTS)
        check_real(momentum, "momentum")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        check_positive(resolution, "resolution")
        check_bool(gather_distributed, "gather_distributed")
        if gather_distributed and not torch_dist.is_available():
            raise ValueError(
                "gather_distributed is True but torch.distributed is not available"
            )
        self.support: Support = support
        self.kappa = None if kappa is None else float(kappa)
        self.estimator: functional.SphereEstimator = estimator
        self.temperature = None if temperature is None else float(temperature)
        self.inputs: DiscreteInputs = inputs
        self.momentum = float(momentum)
        self.resolution = float(resolution)
        self.gather_distributed = gather_distributed
        self.latest: Dict[str, float] = {}
        self.running: Dict[str, float] = {}
        self.num_updates = 0
        # What was said once: too few rows, rows read as probabilities.
        self._said: Dict[str, bool] = {}

    @classmethod
    def for_loss(cls, criterion: object, **overrides: object) -> EntropyMeter:
        """A meter that measures what criterion's ER term sees, at its kappa.

        Uses :func:`lightly_er.monitoring.entropy_settings`, so an original lightly
        loss and its ER version give the same meter; ``support``, ``kappa``,
        ``temperature`` and ``estimator`` in overrides win over the criterion's,
        by the same rule. Other overrides are passed to the constructor.

        Raises:
            ValueError: If the rule does not know criterion and no support is given.
        """
        chosen: Dict[str, Any] = {
            key: overrides.pop(key)
            for key in ("support", "kappa", "temperature", "estimator")
            if key in overrides
        }
        settings = entropy_settings(criterion, **chosen)
        if settings is None:
            raise ValueError(
                f"no entropy settings are known for criterion "
                f"{type(criterion).__name__}: pass support='sphere' (with kappa=) "
                "or support='discrete' (with temperature=) to for_loss"
            )
        # The four chosen keys were popped: settings and overrides are disjoint.
        merged: Dict[str, Any] = {**settings, **overrides}
        return cls(**merged)

    @property
    def effective_kappa(self) -> float:
        """kappa, or the authors' default 10 where it is not set (resolve_kappa)."""
        return resolve_kappa(self.kappa)

    @property
    def effective_temperature(self) -> float:
        """temperature, or 0.1 where it is not set."""
        return DEFAULT_TEMPERATURE if self.temperature is None else self.temperature

    def __repr__(self) -> str:
        details = (
            f"kappa={self.effective_kappa:g}, estimator={self.estimator!r}"
            if self.support == "sphere"
            else f"inputs={self.inputs!r}, temperature={self.effective_temperature:g}"
        )
        return f"{type(self).__name__}(support={self.support!r}, {details})"

    def settings(self) -> Dict[str, Any]:
        """What the metrics depend on, for run records and logs."""
        if self.support == "sphere":
            return {
                "support": "sphere",
                "kappa": self.effective_kappa,
                "estimator": self.estimator,
            }
        return {"support": "discrete", "temperature": self.effective_temperature}

    def metric_names(self, second_views: bool = False) -> Tuple[str, ...]:
        """The keys of the dicts this meter returns, in order.

        Args:
            second_views: Whether second views ``x2`` are given (sphere:
                ``alignment`` and ``lidar`` are added).
        """
        if self.support == "discrete":
            return DISCRETE_METRICS
        return SPHERE_METRICS + (("alignment", "lidar") if second_views else ())

    def not_measured(self, second_views: bool = False) -> Dict[str, float]:
        """A dict with NaN, "not measured", for every metric (see metric_names)."""
        return {name: math.nan for name in self.metric_names(second_views)}

    def reset(self) -> None:
        """Forgets the metrics and their moving averages."""
        self.latest = {}
        self.running = {}
        self.num_updates = 0

    def update(self, x: Tensor, x2: Optional[Tensor] = None) -> Dict[str, float]:
        """Measures a batch and folds it into ``latest`` and ``running``.

        Args:
            x:
                Outputs for a batch, shape (N, ...): embeddings (sphere), logits or
                probabilities (discrete); flattened to (N, -1).
            x2:
                Optional outputs for second views of the same inputs, same shape
                (sphere only), for the alignment.

        Returns:
            The metrics (a new dict). A batch of fewer than 2 rows, or with NaN or
            Inf values, is not measured: every value is then NaN, with a warning,
            and the state is unchanged (``num_updates`` does not count it).

        Raises:
            TypeError: If x or x2 is not a floating point tensor.
            ValueError: If x has fewer than 2 dimensions, x2 another shape or is
                given for the discrete support, or x has fewer than 2 columns
                (discrete) or rows that are not distributions
                (``inputs="probabilities"``).
        """
        with torch.no_grad():
            metrics = self._measure(x, x2)
        if metrics is None:
            return self.not_measured(x2 is not None)
        self.latest = metrics
        self.num_updates += 1
        for name, value in metrics.items():
            if math.isnan(value):
                continue  # not measured in this batch (dimension_score below N = 4)
            previous = self.running.get(name)
            self.running[name] = (
                value
                if previous is None
                else self.momentum * previous + (1.0 - self.momentum) * value
            )
        return dict(metrics)

    def compute(self, x: Tensor, x2: Optional[Tensor] = None) -> Dict[str, float]:
        """Measures one batch without changing the state; see :meth:`update`."""
        with torch.no_grad():
            metrics = self._measure(x, x2)
        return self.not_measured(x2 is not None) if metrics is None else metrics

    def _measure(self, x: Tensor, x2: Optional[Tensor]) -> Optional[Dict[str, float]]:
        """The metrics of one batch, or None where it cannot be measured (warned)."""
        x = _as_rows(x, "x")
        if x2 is not None:
            if self.support != "sphere":
                raise ValueError(
                    "x2 (second views, for the alignment) is only supported for the "
                    "sphere support; this meter has support='discrete'"
                )
            x2 = _as_rows(x2, "x2")
            if x2.shape != x.shape:
                raise ValueError(
                    f"x and x2 must have the same shape, got {tuple(x.shape)} and "
                    f"{tuple(x2.shape)}"
                )
        if self.support == "discrete" and x.shape[1] < 2:
            raise ValueError(
                "x must have >= 2 columns (classes) for the discrete support, got "
                f"shape {tuple(x.shape)}"
            )
        if self.gather_distributed:
            # Without gradient, and padded: a last batch may be smaller on one rank.
            x = gather_rows_no_grad(x)
            x2 = None if x2 is None else gather_rows_no_grad(x2)
        if x.shape[0] < _MIN_ROWS:
            self._say_once(
                "rows",
                f"EntropyMeter needs at least {_MIN_ROWS} rows to measure a batch, "
                f"got {x.shape[0]}: every metric is NaN (not measured); shown once "
                "per meter",
                stacklevel=3,  # the caller of update or compute
            )
            return None
        finite = bool(torch.isfinite(x).all()) and (
            x2 is None or bool(torch.isfinite(x2).all())
        )
        if not finite:
            # A diagnostic must not stop training: the loss's own check reports it.
            warnings.warn(
                "EntropyMeter skipped a batch with NaN or Inf values: every metric "
                "is NaN (not measured)",
                stacklevel=3,
            )
            return None
        if self.support == "sphere":
            values = self._sphere_metrics(x, x2)
        else:
            values = self._discrete_metrics(x)
        names = list(values)
        # One host transfer for all metrics.
        numbers = torch.stack([values[n].reshape(()) for n in names]).tolist()
        # No zip(strict=...): these files run on lightly's oldest Python, 3.8.
        measured = dict(zip(names, numbers))  # noqa: B905
        return {
            name: float(measured.get(name, math.nan))
            for name in self.metric_names(x2 is not None)
        }

    def _say_once(self, key: str, message: str, stacklevel: int) -> None:
        """Warns once per meter and key; stacklevel counts from the caller's frame."""
        if not self._said.get(key, False):
            self._said[key] = True
            warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)

    def _sphere_metrics(self, x: Tensor, x2: Optional[Tensor]) -> Dict[str, Tensor]:
        # Imported here: lightly.utils.debug imports matplotlib.pyplot (1.2 s) at
        # import, which `import lightly_er` should not pay.
        from lightly.utils.debug import std_of_l2_normalized

        n, dim = x.shape
        kappa = self.effective_kappa
        z = F.normalize(x, dim=1)
        relative = relative_sphere_entropy(
            z, kappa, estimator=self.estimator, validate=False
        )
        log_norm = log_vmf_normalizer_constant(dim, kappa)
        # The gap from the constant-free estimate: H - H_min = relative + kappa, exact
        # in float32 where H itself is about 270,000 nats (d = 65,536).
        gap = (relative + kappa).clamp_min(0.0)
        values = {
            "entropy": relative - log_norm,
            "entropy_gap": gap,
            "normalized_entropy": (gap / math.log(n)).clamp(0.0, 1.0),
        }
        if n >= _MIN_ROWS_DIMENSION:
            values["dimension_score"] = functional.dimension_score(z, self.resolution)
            values["participation_ratio"] = functional.participation_ratio(z)
        else:
            self._say_once(
                "dimension",
                f"EntropyMeter needs at least {_MIN_ROWS_DIMENSION} rows for "
                f"dimension_score and participation_ratio, got {n}: they are NaN "
                "(not measured); shown once per meter",
                stacklevel=4,
            )
        values.update(
            collapse_score=functional.collapse_score(z, self.resolution),
            effective_rank=functional.effective_rank(z),
            std=std_of_l2_normalized(z),
            uniformity=functional.uniformity(z),
        )
        if x2 is not None:
            z2 = F.normalize(x2, dim=1)
            values["uniformity"] = 0.5 * (
                values["uniformity"] + functional.uniformity(z2)
            )
            values["alignment"] = functional.alignment(z, z2)
            values["lidar"] = lidar(torch.stack([z, z2], dim=1))
        return values

    def _discrete_metrics(self, x: Tensor) -> Dict[str, Tensor]:
        p, _ = self._distributions(x, stacklevel=5)
        from lightly.utils.debug import std_of_l2_normalized  # see _sphere_metrics

        log_k = math.log(x.shape[1])
        entropy = functional.discrete_entropy(p, validate=False)
        conditional = functional.conditional_entropy(p, validate=False)
        information = (entropy - conditional).clamp_min(0.0)
        return {
            "entropy": entropy,
            "normalized_entropy": (entropy / log_k).clamp(0.0, 1.0),
            "conditional_entropy": conditional,
            "mutual_information": information,
            "normalized_mutual_information": (information / log_k).clamp(0.0, 1.0),
            "prototype_usage": functional.prototype_usage(p),
            "collapse_score": functional.collapse_score(p, self.resolution),
            "effective_rank": functional.effective_rank(p),
            "std": std_of_l2_normalized(p),
        }

    def _distributions(self, x: Tensor, stacklevel: int) -> Tuple[Tensor, Tensor]:
        """The probability rows of x (float32, (N, K)) and their logarithms."""
        if self._reads_probabilities(x, stacklevel + 1):
            return x, torch.log(x)
        log_p = torch.log_softmax(x / self.effective_temperature, dim=1)
        return log_p.exp(), log_p

    def _reads_probabilities(self, x: Tensor, stacklevel: int) -> bool:
        """Whether x holds probability rows: by inputs, or detected for "auto"."""
        if self.inputs == "probabilities":
            check_probabilities(x, "x (inputs='probabilities')", log_input=False)
            return True
        if self.inputs == "logits" or x.shape[0] == 0:
            return False
        # The tolerance of the probability checks of lightly_er.functional (float32).
        sums = x.sum(dim=1)
        looks = bool(((x >= 0).all() & ((sums - 1.0).abs() <= 1e-3).all()).item())
        if looks:
            self._say_once(
                "probabilities",
                "EntropyMeter(inputs='auto') read rows that are already "
                "probabilities (non-negative, summing to 1) and measures them as "
                "such, without a softmax; pass inputs='probabilities' to say so, or "
                "inputs='logits' to apply the softmax anyway; shown once per meter",
                stacklevel=stacklevel,
            )
        return looks

    def log_probabilities(self, x: Tensor) -> Tensor:
        """The log-probability rows the discrete metrics read, shape (N, K).

        log_softmax(x / temperature) for logits, log(x) for probabilities (as
        ``inputs`` says or detects); the rows are detached, in float32, flattened
        to (N, -1). Used to compare a teacher's and a student's distributions
        (:func:`lightly_er.functional.mean_kl_divergence`).

        Raises:
            ValueError: If the meter's support is not discrete.
        """
        if self.support != "discrete":
            raise ValueError(
                "log_probabilities needs a meter with support='discrete', this one "
                f"has support={self.support!r}"
            )
        with torch.no_grad():
            return self._distributions(_as_rows(x, "x"), stacklevel=3)[1]


def _as_rows(x: Tensor, name: str) -> Tensor:
    """x detached, in float32, flattened to (N, -1)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape (batch_size, dim, ...), got shape {tuple(x.shape)}"
        )
    x = x.detach().to(torch.float32)
    # flatten, not reshape(N, -1): a batch of 0 rows has no -1 to infer.
    return x.flatten(start_dim=1) if x.ndim > 2 else x


__all__ = [
    "DISCRETE_METRICS",
    "SPHERE_METRICS",
    "DiscreteInputs",
    "EntropyMeter",
    "MetricName",
    "Support",
]
