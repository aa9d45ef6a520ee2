"""EntropyMeter: label-free measurements of a batch of representations, plain PyTorch.

This module imports neither Lightning nor anything that does, so that heads and
plain PyTorch training loops can use it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import Tensor
from torch import distributed as torch_dist
from torch.nn import functional as F

from lightly_er import functional
from lightly_er.functional._special import log_vmf_normalizer_constant
from lightly_er.functional._sphere import relative_sphere_entropy
from lightly_er.loss._kappa import (
    DEFAULT_ESTIMATOR,
    DEFAULT_TEMPERATURE,
    entropy_settings,
    resolve_kappa,
)
from lightly_er.utils.checks import (
    check_bool,
    check_choice,
    check_estimator,
    check_positive,
    check_real,
)
from lightly_er.utils.dist import gather_rows_no_grad

Support = Literal["sphere", "discrete"]
DiscreteInputs = Literal["logits", "probabilities"]

SUPPORTS: Tuple[str, ...] = ("sphere", "discrete")
DISCRETE_INPUTS: Tuple[str, ...] = ("logits", "probabilities")


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
    ``participation_ratio`` (the number of directions used), both from N >= 4;
    ``collapse_score`` (:func:`lightly_er.functional.collapse_score`, which depends
    on the batch size), ``effective_rank`` (RankMe), ``std`` (lightly's std of
    L2-normalized outputs), ``uniformity`` and, given second views ``x2``,
    ``alignment``.

    ``support="discrete"`` (prototype scores as ``"logits"``, turned into
    softmax(x / temperature), or ``"probabilities"``): ``entropy`` = H(E[p]), the
    entropy of the batch marginal, and ``normalized_entropy`` = entropy / log K;
    ``conditional_entropy`` = E[H(p)]; ``mutual_information`` = H(E[p]) - E[H(p)]
    between input and prototype, and ``normalized_mutual_information`` = that over
    log K (the default alarm reads it); ``prototype_usage``, the perplexity of the
    argmax histogram; and ``collapse_score``, ``effective_rank`` and ``std`` of the
    probability rows. docs/reading_the_numbers.md says how to read each one and
    what it cannot see.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907

    Attributes:
        support:
            ``"sphere"`` or ``"discrete"``.
        kappa:
            Concentration of the vMF kernel (sphere); None means 10, the authors'
            default, until the monitor binds it to the loss's kappa.
        estimator:
            ``"plugin"`` (default) or ``"joe"``.
        temperature:
            Softmax temperature of discrete logits; None means 0.1.
        inputs:
            ``"logits"`` or ``"probabilities"`` (discrete).
        momentum:
            Momentum of the moving averages in ``running``, in [0, 1).
        resolution:
            The ``resolution`` of the collapse score.
        gather_distributed:
            Whether to measure the batch gathered from all processes (a collective:
            all processes must then call :meth:`update` together).
        latest, running:
            The metrics of the last batch, and their moving averages.
        num_updates:
            How many batches were measured.

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
        inputs: DiscreteInputs = "logits",
        momentum: float = 0.9,
        resolution: float = 1e-3,
        gather_distributed: bool = False,
    ) -> None:
        """Initializes the meter; see the class docstring for the arguments."""
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

    @classmethod
    def for_loss(cls, criterion: object, **overrides: object) -> EntropyMeter:
        """A meter that measures what criterion's ER term sees, at its kappa.

        Uses :func:`lightly_er.loss.entropy_settings`, so an original lightly loss
        and its ER version give the same meter; ``support``, ``kappa``,
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
                f"no entropy settings are known for {type(criterion).__name__}; "
                "pass support= (and kappa= or temperature=)"
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

    def reset(self) -> None:
        """Forgets the metrics and their moving averages."""
        self.latest = {}
        self.running = {}
        self.num_updates = 0

    def update(
        self, x: Tensor, x2: Optional[Tensor] = None
    ) -> Optional[Dict[str, float]]:
        """Measures a batch and folds it into ``latest`` and ``running``.

        Args:
            x:
                Outputs for a batch, shape (N, ...): embeddings (sphere), logits or
                probabilities (discrete); flattened to (N, -1).
            x2:
                Optional outputs for second views of the same inputs, same shape
                (sphere only), for the alignment.

        Returns:
            The metrics (a new dict), or None if the batch has fewer than 2 samples
            or non-finite values (then with a warning); the state is then unchanged.

        Raises:
            TypeError: If x or x2 is not a floating point tensor.
            ValueError: If x has fewer than 2 dimensions, x2 another shape or is
                given for the discrete support, or probabilities are not
                distributions.
        """
        metrics = self.compute(x, x2)
        if metrics is None:
            return None
        self.latest = metrics
        self.num_updates += 1
        for name, value in metrics.items():
            previous = self.running.get(name)
            self.running[name] = (
                value
                if previous is None
                else self.momentum * previous + (1.0 - self.momentum) * value
            )
        return dict(metrics)

    @torch.no_grad()
    def compute(
        self, x: Tensor, x2: Optional[Tensor] = None
    ) -> Optional[Dict[str, float]]:
        """Measures one batch without changing the state; see :meth:`update`."""
        x = _as_rows(x, "x")
        if x2 is not None:
            if self.support != "sphere":
                raise ValueError(
                    "x2 (second views, for the alignment) is only supported for the "
                    "sphere support"
                )
            x2 = _as_rows(x2, "x2")
            if x2.shape != x.shape:
                raise ValueError(
                    f"x and x2 must have the same shape, got {tuple(x.shape)} and "
                    f"{tuple(x2.shape)}"
                )
        if self.gather_distributed:
            # Without gradient, and padded: a last batch may be smaller on one rank.
            x = gather_rows_no_grad(x)
            x2 = None if x2 is None else gather_rows_no_grad(x2)
        # One sample has no spread to measure (its gap is 0 by construction).
        if x.shape[0] < 2:
            return None
        finite = bool(torch.isfinite(x).all()) and (
            x2 is None or bool(torch.isfinite(x2).all())
        )
        if not finite:
            # A diagnostic must not stop training: the loss's own check reports it.
            warnings.warn(
                "EntropyMeter skipped a batch with NaN or Inf values", stacklevel=2
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
        return {name: float(v) for name, v in zip(names, numbers)}  # noqa: B905

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
        if n >= 4:
            # The U-statistics behind them need 4 distinct rows.
            values["dimension_score"] = functional.dimension_score(z, self.resolution)
            values["participation_ratio"] = functional.participation_ratio(z)
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
        return values

    def _discrete_metrics(self, x: Tensor) -> Dict[str, Tensor]:
        num_classes = x.shape[1]
        if num_classes < 2:
            raise ValueError(
                f"discrete outputs must have >= 2 classes, got shape {tuple(x.shape)}"
            )
        if self.inputs == "logits":
            p = torch.softmax(x / self.effective_temperature, dim=1)
            entropy = functional.discrete_entropy(p, validate=False)
        else:
            p = x
            entropy = functional.discrete_entropy(p)
        from lightly.utils.debug import std_of_l2_normalized  # see _sphere_metrics

        log_k = math.log(num_classes)
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

    @torch.no_grad()
    def log_probabilities(self, x: Tensor) -> Tensor:
        """The log-probability rows the discrete metrics read, shape (N, K).

        log_softmax(x / temperature) for logits, log(x) for probabilities; the
        rows are detached, in float32, flattened to (N, -1). Used to compare a
        teacher's and a student's distributions
        (:func:`lightly_er.functional.mean_kl_divergence`).

        Raises:
            ValueError: If the meter's support is not discrete.
        """
        if self.support != "discrete":
            raise ValueError("log_probabilities needs a meter of the discrete support")
        x = _as_rows(x, "x")
        if self.inputs == "logits":
            return torch.log_softmax(x / self.effective_temperature, dim=1)
        return torch.log(x)


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
    return x.reshape(x.shape[0], -1) if x.ndim > 2 else x


__all__ = ["EntropyMeter", "Support"]
