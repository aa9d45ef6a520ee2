"""Label-free monitoring of the entropy of representations during training.

Two layers, as everywhere in lightly-er:

- :class:`EntropyMeter`, plain PyTorch: fed batches of embeddings (or prototype
  scores), it computes the entropy the ER objective sees and the label-free monitors
  of :mod:`lightly_er.functional` every n-th call, under ``torch.no_grad``, and keeps
  the latest values and their moving averages. The ER heads
  (:mod:`lightly_er.models.modules.heads`) own one.
- :class:`EntropyMonitor`, a PyTorch Lightning callback: it watches submodules of a
  LightningModule through forward hooks (or reads the meters the ER heads own), logs
  the values, raises an alarm when a representation collapses, and writes a CSV and a
  plot of everything it logged.

A collapsed representation maps every input to (nearly) the same point. Its entropy
then drops to its minimum, its normalised entropy to 0 and its effective rank to 1,
while the training loss of a non-contrastive method may look perfectly healthy.

- [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in Multi-View
  Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

import csv
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Literal,
    Mapping,
    Optional,
    Tuple,
    Union,
)

import torch
from lightly.utils import dist
from lightly.utils.debug import std_of_l2_normalized
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch import distributed as torch_dist
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from lightly_er import functional

Support = Literal["sphere", "discrete"]
DiscreteInputs = Literal["logits", "probabilities"]
OnCollapse = Literal["warn", "stop"]

_SUPPORTS: Tuple[str, ...] = ("sphere", "discrete")
_DISCRETE_INPUTS: Tuple[str, ...] = ("logits", "probabilities")
_ON_COLLAPSE: Tuple[str, ...] = ("warn", "stop")

_logger = logging.getLogger(__name__)


class EntropyMeter:
    """Measures the entropy of a representation every n-th batch, without autograd.

    Call :meth:`update` with every batch of outputs; on every ``every_n``-th call
    (the first, the (n+1)-th, ...) it computes, on the batch as the ER objective
    sees it, the following metrics and returns them (it returns None on the other
    calls, at the cost of a counter increment):

    ``support="sphere"`` (embeddings; the rows are L2-normalised here, z = x / ||x||):

    - ``entropy``: the vMF kernel-density estimate of H(z) in nats
      (:func:`lightly_er.functional.sphere_entropy` with ``kappa`` and ``estimator``);
    - ``normalized_entropy``: (H - H_min) / log N in [0, 1], where
      H_min = -log C_d(kappa) - kappa is the estimate for N identical points and
      H_min + log N its maximum, for N points whose kernels do not overlap. 0 means
      a collapsed batch. The scale depends on N, d and kappa: compare runs with the
      same batch size and kappa;
    - ``effective_rank``: RankMe of z (:func:`lightly_er.functional.effective_rank`),
      in [1, min(N, d)];
    - ``std``: the mean per-dimension standard deviation of z, 0 for a collapsed
      batch and about 1 / sqrt(d) for isotropic embeddings
      (:func:`lightly.utils.debug.std_of_l2_normalized`);
    - ``uniformity``: :func:`lightly_er.functional.uniformity` of z (lower is more
      uniform), averaged over both views when ``x2`` is given;
    - ``alignment``: only when ``x2``, the embeddings of second views of the same
      inputs, is given: :func:`lightly_er.functional.alignment` (lower is better).

    ``support="discrete"`` (prototype scores or assignments): the rows are turned
    into probabilities p, softmax(x / temperature) for ``inputs="logits"`` or taken
    as they are for ``inputs="probabilities"`` (which must then be non-negative rows
    summing to 1), and

    - ``entropy``: H(mean_i p_i) in nats, the entropy of the batch marginal
      (:func:`lightly_er.functional.discrete_entropy`);
    - ``normalized_entropy``: H / log K in [0, 1]; 0 when every sample picks the same
      prototype;
    - ``effective_rank`` and ``std``: as above, of the probability rows p. The rank
      also catches the other discrete collapse, in which every sample predicts the
      same (for example uniform) distribution: the marginal entropy is then maximal
      but the rank is 1.

    The meter also keeps ``latest``, the metrics of the last computed batch, and
    ``running``, their exponential moving averages (each initialised with its first
    value, then running = momentum * running + (1 - momentum) * value).

    Inputs are detached and cast to float32; nothing flows back into training. Inputs
    of shape (N, ...) are flattened to (N, -1). A batch with fewer than 2 samples
    (over all processes), or with NaN or Inf values, is skipped: the call returns
    None and the state is unchanged (non-finite batches also issue a warning).

    With ``gather_distributed=True`` and torch.distributed initialised, the batches of
    all processes are gathered (without gradient; batch sizes may differ) and every
    process computes the same metrics on the global batch. The gather is a
    collective: all processes must then call :meth:`update` equally often.

    Attributes:
        support:
            ``"sphere"`` or ``"discrete"``.
        kappa:
            Concentration of the vMF kernel (sphere).
        estimator:
            ``"joe"`` or ``"plugin"``, the sphere entropy estimator.
        every_n:
            Compute on every n-th call of :meth:`update`.
        momentum:
            Momentum of the moving averages in ``running``, in [0, 1).
        inputs:
            ``"logits"`` or ``"probabilities"``, what discrete inputs hold.
        temperature:
            Softmax temperature of discrete logits (0.1, as the DINO student and
            SwAV, and :class:`lightly_er.loss.er_loss.ERLoss`).
        gather_distributed:
            Whether to compute on the batches of all processes.
        latest:
            The metrics of the last computed batch (empty before the first).
        running:
            The moving averages of the metrics.
        num_calls:
            How often :meth:`update` was called.
        num_updates:
            How many batches were computed.

    Raises:
        ValueError: If support, estimator or inputs is unknown, kappa or temperature
            is not positive, every_n < 1, or momentum is not in [0, 1).

    Examples:
        >>> import torch
        >>> from lightly_er.monitoring import EntropyMeter
        >>> meter = EntropyMeter("sphere", kappa=10.0, every_n=2)
        >>> metrics = meter.update(torch.randn(64, 32))  # first call: computed
        >>> sorted(metrics)
        ['effective_rank', 'entropy', 'normalized_entropy', 'std', 'uniformity']
        >>> meter.update(torch.randn(64, 32)) is None  # second call: skipped
        True
        >>> collapsed = torch.ones(64, 32)
        >>> round(meter.update(collapsed)["normalized_entropy"], 4)
        0.0
        >>> round(meter.latest["effective_rank"], 3)
        1.0
    """

    METRICS: Tuple[str, ...] = (
        "entropy",
        "normalized_entropy",
        "effective_rank",
        "std",
        "uniformity",
        "alignment",
    )

    def __init__(
        self,
        support: Support = "sphere",
        kappa: float = 10.0,
        estimator: functional.SphereEstimator = "joe",
        every_n: int = 1,
        momentum: float = 0.9,
        inputs: DiscreteInputs = "logits",
        temperature: float = 0.1,
        gather_distributed: bool = False,
    ) -> None:
        """Initialises the meter; see the class docstring for the arguments."""
        _check_choice(support, "support", _SUPPORTS)
        _check_positive(kappa, "kappa")
        functional._check_estimator(estimator)
        _check_count(every_n, "every_n")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise TypeError(f"momentum must be a float, got {type(momentum).__name__}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        _check_choice(inputs, "inputs", _DISCRETE_INPUTS)
        _check_positive(temperature, "temperature")
        if gather_distributed and not torch_dist.is_available():
            raise ValueError(
                "gather_distributed is True but torch.distributed is not available"
            )
        self.support: Support = support
        self.kappa = float(kappa)
        self.estimator: functional.SphereEstimator = estimator
        self.every_n = every_n
        self.momentum = float(momentum)
        self.inputs: DiscreteInputs = inputs
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed
        self.latest: Dict[str, float] = {}
        self.running: Dict[str, float] = {}
        self.num_calls = 0
        self.num_updates = 0

    def __repr__(self) -> str:
        details = (
            f"kappa={self.kappa}, estimator={self.estimator!r}"
            if self.support == "sphere"
            else f"inputs={self.inputs!r}, temperature={self.temperature}"
        )
        return (
            f"{type(self).__name__}(support={self.support!r}, {details}, "
            f"every_n={self.every_n}, momentum={self.momentum}, "
            f"gather_distributed={self.gather_distributed})"
        )

    @property
    def is_due(self) -> bool:
        """Whether the next call of :meth:`update` computes the metrics."""
        return self.num_calls % self.every_n == 0

    def reset(self) -> None:
        """Forgets the metrics, the moving averages and the call count."""
        self.latest = {}
        self.running = {}
        self.num_calls = 0
        self.num_updates = 0

    def update(
        self, x: Tensor, x2: Optional[Tensor] = None
    ) -> Optional[Dict[str, float]]:
        """Counts a call and, on every ``every_n``-th, measures the batch.

        Args:
            x:
                Outputs for a batch, shape (N, ...): embeddings (sphere), logits or
                probabilities (discrete).
            x2:
                Optional outputs for second views of the same N inputs, same shape
                as x (sphere only), for the alignment.

        Returns:
            The metrics of this batch (a new dict), or None if this call is not due
            or the batch was skipped.

        Raises:
            TypeError: If x or x2 is not a floating point tensor.
            ValueError: If x has fewer than 2 dimensions, x2 has another shape or is
                given for the discrete support, or discrete probabilities are not
                distributions.
        """
        due = self.is_due
        self.num_calls += 1
        if not due:
            return None
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
        """Measures one batch, leaving the state (counts, averages) unchanged.

        Args and Raises: as :meth:`update`.

        Returns:
            The metrics, or None if the batch has fewer than 2 samples (over all
            processes) or non-finite values.
        """
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
            x = gather_rows_no_grad(x)
            x2 = None if x2 is None else gather_rows_no_grad(x2)
        if x.shape[0] < 2:
            return None
        finite = bool(torch.isfinite(x).all()) and (
            x2 is None or bool(torch.isfinite(x2).all())
        )
        if not finite:
            warnings.warn(
                "EntropyMeter skipped a batch with NaN or Inf values", stacklevel=2
            )
            return None
        if self.support == "sphere":
            values = self._sphere_metrics(x, x2)
        else:
            values = self._discrete_metrics(x)
        names = list(values)
        numbers = torch.stack([values[n].reshape(()) for n in names]).tolist()
        return dict(zip(names, (float(v) for v in numbers), strict=True))

    def _sphere_metrics(self, x: Tensor, x2: Optional[Tensor]) -> Dict[str, Tensor]:
        n, dim = x.shape
        if dim < 2:
            raise ValueError(
                f"sphere embeddings must have dim >= 2, got shape {tuple(x.shape)}"
            )
        z = F.normalize(x, dim=1)
        entropy = functional.sphere_entropy(z, self.kappa, estimator=self.estimator)
        log_norm = functional.log_vmf_normalizer(dim, self.kappa).item()
        minimum = -log_norm - self.kappa
        normalized = ((entropy - minimum) / math.log(n)).clamp(0.0, 1.0)
        values = {
            "entropy": entropy,
            "normalized_entropy": normalized,
            "effective_rank": functional.effective_rank(z),
            "std": std_of_l2_normalized(z),
            "uniformity": functional.uniformity(z),
        }
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
            p = torch.softmax(x / self.temperature, dim=1)
        else:
            p = x
        entropy = functional.discrete_entropy(p)
        return {
            "entropy": entropy,
            "normalized_entropy": (entropy / math.log(num_classes)).clamp(0.0, 1.0),
            "effective_rank": functional.effective_rank(p),
            "std": std_of_l2_normalized(p),
        }


def gather_rows_no_grad(x: Tensor) -> Tensor:
    """Concatenates x from all processes along dim 0, without gradient.

    Unlike :func:`lightly.utils.dist.gather`, the processes may hold different
    numbers of rows (for example a smaller last batch): the sizes are exchanged
    first and the rows padded to the largest. Returns x itself when
    torch.distributed is not initialised or has one process.

    Args:
        x:
            A tensor of shape (N, ...), with the same trailing shape and dtype on
            every process.

    Returns:
        The rows of all processes, in rank order.
    """
    world_size = dist.world_size()
    if world_size == 1:
        return x
    x = x.detach().contiguous()
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    torch_dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x
    chunks = [torch.empty_like(padded) for _ in range(world_size)]
    torch_dist.all_gather(chunks, padded)
    return torch.cat(
        [chunk[:count] for chunk, count in zip(chunks, counts, strict=True)], dim=0
    )


# ---------------------------------------------------------------------------------------
# The Lightning callback.
# ---------------------------------------------------------------------------------------
class CollapseWarning(UserWarning):
    """Issued by :class:`EntropyMonitor` when a watched representation collapses."""


@dataclass(frozen=True)
class CollapseAlarm:
    """One collapse alarm of :class:`EntropyMonitor`.

    Attributes:
        step:
            The global step of the check that raised the alarm.
        module:
            The name of the watched module.
        metric:
            ``"normalized_entropy"`` or ``"effective_rank"``, the first metric below
            its threshold.
        value:
            Its value at that check.
        threshold:
            Its threshold.
    """

    step: int
    module: str
    metric: str
    value: float
    threshold: float


@dataclass
class _Watch:
    """A watched module, its meter and the state of its collapse check."""

    name: str
    module: nn.Module
    meter: EntropyMeter
    owned: bool
    handle: Optional[RemovableHandle] = None
    outputs: List[Tensor] = field(default_factory=list)
    seen_updates: int = 0
    streak: int = 0


ModuleSpec = Union[Support, EntropyMeter]


class EntropyMonitor(Callback):
    """Logs the entropy of watched representations and raises a collapse alarm.

    Watches submodules of the LightningModule (projection and prediction heads,
    prototype layers) without touching its code:

    - A module named in ``modules`` is watched through a forward hook. On a due
      training step (``trainer.global_step % every_n_steps == 0``) the hook keeps a
      detached float32 copy of the module's output (the first tensor if the output is
      a tuple or list) for its first two calls in the step; on all other steps and
      outside training it does nothing but test a flag. After the batch, an
      :class:`EntropyMeter` of the given support measures the first output; with
      ``pair_views`` and a sphere support, a second output of the same shape is taken
      as the second views of the same inputs (the usual two-view training step: BYOL,
      SimCLR) for the alignment and the uniformity.
    - A module that owns an ``entropy_meter`` (the ER heads of
      :mod:`lightly_er.models.modules.heads`) is not hooked: its meter measures it at
      its own cadence (every ``meter_every_n``-th forward in training), and the
      callback reads each new result after the training batch. With
      ``modules=None`` every submodule that owns an ``entropy_meter`` is watched.

    Each result is logged with ``pl_module.log`` as ``entropy/<module>/<metric>``
    (``on_step=True``; the normalised entropy also on the progress bar) and kept in
    :attr:`history`. Values measured on the gathered batch (``gather_distributed``)
    are equal on all processes and logged without a reduction; values measured per
    process are averaged over the processes (``sync_dist``).

    Collapse alarm: a check flags a module when its normalised entropy is below
    ``collapse_threshold`` or its effective rank below ``rank_threshold``. After
    ``patience`` consecutive flagged checks of a module, the callback issues a
    :class:`CollapseWarning` (and logs it, on rank zero) naming the module, the
    metric, its value and the global step, records a :class:`CollapseAlarm` in
    :attr:`alarms` and, with ``on_collapse="stop"``, sets ``trainer.should_stop`` so
    that training ends cleanly after the batch (checkpoint callbacks and the end of
    fit still run). A streak raises one alarm; a check that is not flagged ends it.
    With several processes the stop decision is combined over the processes (any
    process stops all) on the due steps.

    Files: at the end of fit, rank zero writes ``entropy_monitor.csv`` (columns step,
    module, metric, value: every logged value) and ``entropy_monitor.png`` (entropy
    and effective rank over the steps, one row per module, alarms marked) to
    ``log_dir``. Both are written to a temporary file in the same directory and then
    renamed, so an interrupted run never leaves a half-written file; the CSV is also
    written at the end of training and when training raises an exception.

    Attributes:
        modules:
            The modules to watch, by their name in ``pl_module.named_modules()``
            (``"backbone.head"`` for nested ones), each with its support
            (``"sphere"`` or ``"discrete"``, measured by a meter with the callback's
            kappa, estimator and temperature) or with an :class:`EntropyMeter` to
            use instead (it is fed on the due steps and applies its own
            ``every_n`` on top). None watches every module with an
            ``entropy_meter``.
        every_n_steps:
            Measure the hooked modules on every n-th global step.
        kappa, estimator, temperature:
            Passed to the meters the callback creates (see :class:`EntropyMeter`).
        collapse_threshold:
            A normalised entropy below it flags a check; None disables the test.
        rank_threshold:
            An effective rank below it flags a check; None disables the test.
        patience:
            The number of consecutive flagged checks that raise an alarm.
        on_collapse:
            ``"warn"`` or ``"stop"``.
        log_dir:
            Where the CSV and PNG go; None for ``trainer.log_dir``.
        prog_bar:
            Whether to show the normalised entropy on the progress bar.
        gather_distributed:
            Whether the meters the callback creates measure the gathered batch.
        pair_views:
            Whether a second call of a hooked sphere module in a step provides
            second views (alignment).
        history:
            Every logged value, as (step, module, metric, value) tuples.
        alarms:
            The alarms raised, in order.
        csv_path, png_path:
            The files written at the end of fit (None before fit starts).

    Raises:
        ValueError: If an argument is out of range or a support is unknown; at fit
            start, if a named module does not exist or owns a meter of another
            support.

    Examples:
        >>> from lightly_er.monitoring import EntropyMonitor
        >>> monitor = EntropyMonitor(
        ...     {"projection_head": "sphere", "prediction_head": "sphere"},
        ...     every_n_steps=50,
        ...     on_collapse="stop",
        ... )
        >>> # trainer = pytorch_lightning.Trainer(callbacks=[monitor], ...)
    """

    CSV_NAME = "entropy_monitor.csv"
    PNG_NAME = "entropy_monitor.png"

    def __init__(
        self,
        modules: Optional[Mapping[str, ModuleSpec]] = None,
        every_n_steps: int = 50,
        kappa: float = 10.0,
        estimator: functional.SphereEstimator = "joe",
        temperature: float = 0.1,
        collapse_threshold: Optional[float] = 0.05,
        rank_threshold: Optional[float] = 1.5,
        patience: int = 3,
        on_collapse: OnCollapse = "warn",
        log_dir: Optional[Union[str, os.PathLike[str]]] = None,
        prog_bar: bool = True,
        gather_distributed: bool = True,
        pair_views: bool = True,
    ) -> None:
        """Initialises the callback; see the class docstring for the arguments."""
        super().__init__()
        if modules is not None:
            if not isinstance(modules, Mapping):
                raise TypeError(
                    "modules must be a mapping from module names to 'sphere', "
                    f"'discrete' or an EntropyMeter, got {type(modules).__name__}"
                )
            for name, spec in modules.items():
                if not isinstance(name, str):
                    raise TypeError(f"module names must be strings, got {name!r}")
                if not isinstance(spec, EntropyMeter):
                    _check_choice(spec, f"the support of module {name!r}", _SUPPORTS)
        _check_count(every_n_steps, "every_n_steps")
        _check_positive(kappa, "kappa")
        functional._check_estimator(estimator)
        _check_positive(temperature, "temperature")
        for value, name in (
            (collapse_threshold, "collapse_threshold"),
            (rank_threshold, "rank_threshold"),
        ):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a finite float or None, got {value}")
        _check_count(patience, "patience")
        _check_choice(on_collapse, "on_collapse", _ON_COLLAPSE)
        self.modules: Optional[Dict[str, ModuleSpec]] = (
            None if modules is None else dict(modules)
        )
        self.every_n_steps = every_n_steps
        self.kappa = float(kappa)
        self.estimator: functional.SphereEstimator = estimator
        self.temperature = float(temperature)
        self.collapse_threshold = collapse_threshold
        self.rank_threshold = rank_threshold
        self.patience = patience
        self.on_collapse: OnCollapse = on_collapse
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.prog_bar = prog_bar
        self.gather_distributed = gather_distributed
        self.pair_views = pair_views
        self.history: List[Tuple[int, str, str, float]] = []
        self.alarms: List[CollapseAlarm] = []
        self.csv_path: Optional[Path] = None
        self.png_path: Optional[Path] = None
        self._watches: List[_Watch] = []
        self._capturing = False
        self._batch_step = -1
        self._last_captured_step = -1
        self._pending_stop = False

    @property
    def meters(self) -> Dict[str, EntropyMeter]:
        """The meter of every watched module, by name (filled at fit start)."""
        return {watch.name: watch.meter for watch in self._watches}

    # -- setup and teardown ------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resolves the watched modules, registers the hooks and the file paths."""
        self._remove_hooks()
        self.history = []
        self.alarms = []
        self._capturing = False
        self._last_captured_step = -1
        self._pending_stop = False
        self._watches = self._resolve(pl_module)
        for watch in self._watches:
            if not watch.owned:
                watch.handle = watch.module.register_forward_hook(self._hook(watch))
            else:
                watch.seen_updates = watch.meter.num_updates
        if not self._watches:
            rank_zero_warn(
                "EntropyMonitor watches no module: no module was named and no "
                f"submodule of {type(pl_module).__name__} owns an entropy_meter"
            )
        # trainer.log_dir broadcasts from rank zero: every process must ask for it.
        directory = self.log_dir if self.log_dir is not None else trainer.log_dir
        directory = Path(
            directory if directory is not None else trainer.default_root_dir
        )
        self.csv_path = directory / self.CSV_NAME
        self.png_path = directory / self.PNG_NAME

    def _resolve(self, pl_module: LightningModule) -> List[_Watch]:
        watches: List[_Watch] = []
        if self.modules is None:
            for name, module in pl_module.named_modules():
                meter = getattr(module, "entropy_meter", None)
                if name and isinstance(meter, EntropyMeter):
                    watches.append(_Watch(name, module, meter, owned=True))
            return watches
        for name, spec in self.modules.items():
            try:
                module = pl_module.get_submodule(name)
            except AttributeError:
                children = ", ".join(n for n, _ in pl_module.named_children())
                raise ValueError(
                    f"EntropyMonitor: {type(pl_module).__name__} has no submodule "
                    f"{name!r}; its top-level submodules are: {children or '(none)'}"
                ) from None
            owned = getattr(module, "entropy_meter", None)
            if isinstance(owned, EntropyMeter):
                if (isinstance(spec, EntropyMeter) and spec is not owned) or (
                    isinstance(spec, str) and spec != owned.support
                ):
                    raise ValueError(
                        f"EntropyMonitor: module {name!r} owns an entropy_meter with "
                        f"support {owned.support!r}, which the callback reads; got "
                        f"{spec!r} for it"
                    )
                watches.append(_Watch(name, module, owned, owned=True))
                continue
            meter = (
                spec
                if isinstance(spec, EntropyMeter)
                else EntropyMeter(
                    spec,
                    kappa=self.kappa,
                    estimator=self.estimator,
                    temperature=self.temperature,
                    gather_distributed=self.gather_distributed,
                )
            )
            watches.append(_Watch(name, module, meter, owned=False))
        return watches

    def _hook(self, watch: _Watch) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self._capturing or len(watch.outputs) >= 2:
                return
            tensor = _first_tensor(output)
            if tensor is not None and tensor.is_floating_point():
                # A copy: a later in-place operation must not change what is measured.
                watch.outputs.append(tensor.detach().to(torch.float32, copy=True))

        return hook

    def _remove_hooks(self) -> None:
        for watch in self._watches:
            if watch.handle is not None:
                watch.handle.remove()
                watch.handle = None
            watch.outputs.clear()
        self._capturing = False

    def teardown(
        self, trainer: Trainer, pl_module: LightningModule, stage: str
    ) -> None:
        """Removes the forward hooks."""
        self._remove_hooks()

    # -- training ---------------------------------------------------------------------
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Decides whether the hooks capture outputs in this batch."""
        step = trainer.global_step
        self._batch_step = step
        # With gradient accumulation a step spans several batches: measure the first.
        self._capturing = (
            step % self.every_n_steps == 0 and step != self._last_captured_step
        )
        if self._capturing:
            self._last_captured_step = step

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Measures the captured outputs, logs, and checks for collapse."""
        due = self._capturing
        self._capturing = False
        for watch in self._watches:
            metrics = self._measure(watch, due)
            if metrics:
                self._log(watch, metrics, pl_module)
                self._check(watch, metrics)
        self._maybe_stop(trainer, due)

    def _measure(self, watch: _Watch, due: bool) -> Optional[Dict[str, float]]:
        if watch.owned:
            if watch.meter.num_updates == watch.seen_updates:
                return None
            watch.seen_updates = watch.meter.num_updates
            return dict(watch.meter.latest)
        if not due:
            return None
        outputs, watch.outputs = watch.outputs, []
        if not outputs:
            return None
        x = outputs[0]
        x2 = None
        if (
            self.pair_views
            and watch.meter.support == "sphere"
            and len(outputs) > 1
            and outputs[1].shape == x.shape
        ):
            x2 = outputs[1]
        # The callback's own meters have every_n=1: the callback sets the cadence.
        return watch.meter.update(x, x2)

    def _log(
        self, watch: _Watch, metrics: Dict[str, float], pl_module: LightningModule
    ) -> None:
        sync = dist.world_size() > 1 and not watch.meter.gather_distributed
        for metric, value in metrics.items():
            self.history.append((self._batch_step, watch.name, metric, value))
            pl_module.log(
                f"entropy/{watch.name}/{metric}",
                value,
                on_step=True,
                on_epoch=False,
                prog_bar=self.prog_bar and metric == "normalized_entropy",
                sync_dist=sync,
            )

    def _check(self, watch: _Watch, metrics: Dict[str, float]) -> None:
        flagged: Optional[Tuple[str, float, float]] = None
        for metric, threshold in (
            ("normalized_entropy", self.collapse_threshold),
            ("effective_rank", self.rank_threshold),
        ):
            value = metrics.get(metric)
            if threshold is not None and value is not None and value < threshold:
                flagged = (metric, value, float(threshold))
                break
        if flagged is None:
            watch.streak = 0
            return
        watch.streak += 1
        if watch.streak != self.patience:
            return
        metric, value, threshold = flagged
        alarm = CollapseAlarm(self._batch_step, watch.name, metric, value, threshold)
        self.alarms.append(alarm)
        message = (
            f"EntropyMonitor: representation collapse in module {watch.name!r} at "
            f"global step {alarm.step}: {metric} = {value:.4g} < {threshold:g} for "
            f"{self.patience} consecutive checks"
        )
        if self.on_collapse == "stop":
            message += "; stopping training"
            self._pending_stop = True
        if dist.rank() == 0:
            _logger.warning(message)
        rank_zero_warn(message, category=CollapseWarning)

    def _maybe_stop(self, trainer: Trainer, due: bool) -> None:
        if self.on_collapse != "stop":
            return
        if trainer.world_size > 1:
            # A collective: taken on the due steps, which every process shares.
            if not due:
                return
            stop = trainer.strategy.reduce_boolean_decision(
                self._pending_stop, all=False
            )
        else:
            stop = self._pending_stop
        if stop:
            trainer.should_stop = True
            self._pending_stop = False

    # -- files ------------------------------------------------------------------------
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Writes the CSV (rank zero)."""
        self._write_csv()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Writes the CSV and the PNG (rank zero)."""
        self._write_csv()
        self._write_png()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Writes the CSV of what was logged so far and removes the hooks."""
        self._remove_hooks()
        self._write_csv()

    def _write_csv(self) -> None:
        if dist.rank() != 0 or self.csv_path is None:
            return

        def write(path: str) -> None:
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(("step", "module", "metric", "value"))
                for step, module, metric, value in self.history:
                    writer.writerow((step, module, metric, repr(value)))

        _write_atomically(self.csv_path, write)

    def _write_png(self) -> None:
        if dist.rank() != 0 or self.png_path is None or not self.history:
            return
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = list(dict.fromkeys(module for _, module, _, _ in self.history))
        panels = (("entropy", "entropy (nats)"), ("effective_rank", "effective rank"))
        figure = Figure(figsize=(10, 3 * len(names)), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(len(names), len(panels), squeeze=False)
        for row, name in enumerate(names):
            for column, (metric, label) in enumerate(panels):
                ax = axes[row][column]
                points = [
                    (s, v) for s, m, k, v in self.history if m == name and k == metric
                ]
                if points:
                    steps, values = zip(*points, strict=True)
                    ax.plot(steps, values, marker=".")
                for alarm in self.alarms:
                    if alarm.module == name:
                        ax.axvline(alarm.step, color="red", linestyle="--")
                ax.set_title(f"{name}: {label}")
                ax.set_xlabel("global step")
                ax.set_ylabel(label)
                ax.grid(alpha=0.3)

        def write(path: str) -> None:
            figure.savefig(path, format="png", dpi=100)

        _write_atomically(self.png_path, write)


# ---------------------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------------------
def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Writes to a temporary file next to path and renames it to path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _first_tensor(output: Any) -> Optional[Tensor]:
    """The output if it is a tensor, else the first tensor of a tuple or list."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in _iter_flat(output):
            return item
    return None


def _iter_flat(items: Union[Tuple[Any, ...], List[Any]]) -> Iterator[Tensor]:
    for item in items:
        if isinstance(item, Tensor):
            yield item
        elif isinstance(item, (tuple, list)):
            yield from _iter_flat(item)


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


def _check_choice(value: Any, name: str, choices: Tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )


def _check_positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


__all__ = [
    "CollapseAlarm",
    "CollapseWarning",
    "EntropyMeter",
    "EntropyMonitor",
    "gather_rows_no_grad",
]
