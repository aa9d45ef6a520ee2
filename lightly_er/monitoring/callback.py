"""EntropyMonitor: the Lightning callback that decides when to measure, logs and alarms."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from lightly.utils import dist
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from lightly_er import functional
from lightly_er.monitoring import report
from lightly_er.monitoring._watch import (
    CONVENTIONAL_HEADS,
    MeterSettings,
    ModuleSpec,
    Watch,
    find_watches,
    first_tensor,
    trainable,
)
from lightly_er.monitoring.meter import SUPPORTS, EntropyMeter
from lightly_er.utils.checks import (
    check_choice,
    check_estimator,
    check_int,
    check_positive,
    check_real,
)

OnCollapse = str
ON_COLLAPSE: Tuple[str, ...] = ("warn", "stop")
DEFAULT_COLLAPSE_THRESHOLD = 0.5
"""A collapse score below it flags a check (docs/reading_the_numbers.md)."""

_logger = logging.getLogger(__name__)


class CollapseWarning(UserWarning):
    """Issued by :class:`EntropyMonitor` when a watched representation collapses."""


@dataclass(frozen=True)
class CollapseAlarm:
    """One collapse alarm of :class:`EntropyMonitor`.

    Attributes:
        step: The global step of the check that raised the alarm.
        module: The name of the watched module.
        metric: The metric below its threshold (``"collapse_score"`` or
            ``"effective_rank"``).
        value: Its value at that check.
        threshold: Its threshold.
    """

    step: int
    module: str
    metric: str
    value: float
    threshold: float


class EntropyMonitor(Callback):
    """Logs the entropy and collapse score of a model's heads, and raises an alarm.

    Works on any LightningModule without touching its code. Every
    ``every_n_steps`` training steps, forward hooks keep the outputs of the
    watched modules (their first two calls in the step, the two views); after the
    batch an :class:`EntropyMeter` measures them and the callback logs
    ``entropy/<module>/<metric>``. Only trained copies are measured: calls under
    ``torch.no_grad`` and modules without trainable parameters (EMA teachers) are
    skipped.

    Watched modules: those named in ``modules``; by default every ER head (a module
    with an ``entropy_meter``) and every module named like lightly's trained heads
    (``projection_head``, ``prediction_head``, ``head``, ``student_head``,
    ``student_projection_head``, ``prototypes``). The meters measure at the kappa
    (or softmax temperature) of ``pl_module.criterion`` by the rule of
    :func:`lightly_er.loss.entropy_settings`, unless ``kappa``/``temperature`` or
    the head's own meter say otherwise.

    Alarm: a check flags a module whose collapse score is below
    ``collapse_threshold`` (embedding heads only; the score is not calibrated on
    prototype scores) or whose effective rank is below ``rank_threshold``; after
    ``patience`` consecutive flagged checks a :class:`CollapseWarning` names the
    module, metric, value and step, and ``on_collapse="stop"`` stops training
    cleanly. The streaks and alarms are saved in checkpoints and survive a resume.

    Files: ``entropy_monitor.csv`` and ``entropy_monitor.png`` in ``log_dir`` (or the
    logger's directory), written atomically at the end of fit, and the CSV also when
    training raises. The PNG needs matplotlib (optional): without it the monitor
    writes the CSV and says so once. With no ``log_dir`` and no logger it writes nothing, and says
    so once.

    Attributes:
        modules, every_n_steps, kappa, estimator, temperature, collapse_threshold,
        rank_threshold, patience, on_collapse, log_dir, prog_bar,
        gather_distributed, pair_views:
            The arguments (see docs/monitoring.md).
        history:
            Every logged value, as (step, module, metric, value) tuples.
        alarms:
            The alarms raised, in order.
        csv_path, png_path:
            The files written at the end of fit (None when nothing is written).

    Examples:
        >>> from lightly_er.monitoring import EntropyMonitor
        >>> monitor = EntropyMonitor(every_n_steps=50, on_collapse="stop")
        >>> # trainer = pytorch_lightning.Trainer(callbacks=[monitor], ...)
    """

    CSV_NAME = "entropy_monitor.csv"
    PNG_NAME = "entropy_monitor.png"

    def __init__(
        self,
        modules: Optional[Mapping[str, ModuleSpec]] = None,
        every_n_steps: int = 50,
        kappa: Optional[float] = None,
        estimator: Optional[functional.SphereEstimator] = None,
        temperature: Optional[float] = None,
        collapse_threshold: Optional[float] = DEFAULT_COLLAPSE_THRESHOLD,
        rank_threshold: Optional[float] = None,
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
                    check_choice(spec, f"the support of module {name!r}", SUPPORTS)
        check_int(every_n_steps, "every_n_steps", 1)
        if kappa is not None:
            check_positive(kappa, "kappa")
        if estimator is not None:
            check_estimator(estimator)
        if temperature is not None:
            check_positive(temperature, "temperature")
        for value, name in (
            (collapse_threshold, "collapse_threshold"),
            (rank_threshold, "rank_threshold"),
        ):
            if value is not None:
                check_real(value, name)
        check_int(patience, "patience", 1)
        check_choice(on_collapse, "on_collapse", ON_COLLAPSE)
        self.modules: Optional[Dict[str, ModuleSpec]] = (
            None if modules is None else dict(modules)
        )
        self.every_n_steps = every_n_steps
        self.kappa = kappa
        self.estimator: Optional[functional.SphereEstimator] = estimator
        self.temperature = temperature
        self.collapse_threshold = collapse_threshold
        self.rank_threshold = rank_threshold
        self.patience = patience
        self.on_collapse = on_collapse
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.prog_bar = prog_bar
        self.gather_distributed = gather_distributed
        self.pair_views = pair_views
        self.history: List[report.HistoryRow] = []
        self.alarms: List[CollapseAlarm] = []
        self.csv_path: Optional[Path] = None
        self.png_path: Optional[Path] = None
        self._streaks: Dict[str, int] = {}
        self._watches: List[Watch] = []
        self._capturing = False
        self._batch_step = -1
        self._last_captured_step = -1
        self._pending_stop = False

    @property
    def state_key(self) -> str:
        """Tells monitors of other modules or cadences apart in a checkpoint."""
        modules = None if self.modules is None else sorted(self.modules)
        return self._generate_state_key(
            modules=modules, every_n_steps=self.every_n_steps
        )

    @property
    def meters(self) -> Dict[str, EntropyMeter]:
        """The meter of every watched module, by name (filled at fit start)."""
        return {watch.name: watch.meter for watch in self._watches}

    # -- state ------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Starts a fresh history for fit; a checkpoint restored afterwards replaces it."""
        if stage != "fit":
            # validate/test/predict after fit keep what fit recorded.
            return
        self.history = []
        self.alarms = []
        self._streaks = {}
        self._pending_stop = False
        self._last_captured_step = -1

    def state_dict(self) -> Dict[str, Any]:
        """The alarm state and history, saved in Lightning checkpoints."""
        return {
            "streaks": dict(self._streaks),
            "alarms": [asdict(alarm) for alarm in self.alarms],
            "history": [list(row) for row in self.history],
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores the alarm state and history of a checkpoint."""
        self._streaks = {str(k): int(v) for k, v in state_dict["streaks"].items()}
        self.alarms = [CollapseAlarm(**alarm) for alarm in state_dict["alarms"]]
        self.history = [
            (int(s), str(m), str(k), float(v)) for s, m, k, v in state_dict["history"]
        ]

    # -- setup and teardown ------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resolves the watched modules, registers the hooks and the file paths."""
        self._remove_hooks()
        self._capturing = False
        self._watches = find_watches(
            pl_module,
            self.modules,
            MeterSettings(
                self.kappa, self.temperature, self.estimator, self.gather_distributed
            ),
        )
        for watch in self._watches:
            watch.handle = watch.module.register_forward_hook(self._hook(watch))
        if not self._watches:
            rank_zero_warn(
                "EntropyMonitor watches no module: none was named, no submodule of "
                f"{type(pl_module).__name__} owns an entropy_meter, and none is named "
                f"like a lightly head ({', '.join(CONVENTIONAL_HEADS)})"
            )
        directory = self.log_dir
        if directory is None and trainer.loggers:
            # trainer.log_dir broadcasts from rank zero: every process asks.
            directory = None if trainer.log_dir is None else Path(trainer.log_dir)
        if directory is None:
            self.csv_path = self.png_path = None
            rank_zero_warn(
                "EntropyMonitor has no log directory (no log_dir and no logger): it "
                "logs through the module but writes no CSV or PNG"
            )
        else:
            self.csv_path = directory / self.CSV_NAME
            self.png_path = directory / self.PNG_NAME

    def _hook(self, watch: Watch) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self._capturing or len(watch.outputs) >= 2:
                return
            # Teachers never meter: they run without gradient or have no trainable
            # parameters (EMA copies).
            if not torch.is_grad_enabled() or not trainable(module):
                return
            tensor = first_tensor(output)
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
        if due:
            for watch in self._watches:
                metrics = self._measure(watch)
                if metrics:
                    self._log(watch, metrics, pl_module)
                    self._check(watch, metrics)
        self._maybe_stop(trainer, due)

    def _measure(self, watch: Watch) -> Optional[Dict[str, float]]:
        outputs, watch.outputs = watch.outputs, []
        if not outputs:
            return None
        # The first two captured calls of a step are the two views of one batch in
        # lightly's training steps: the alignment pairs them if their shapes agree.
        x2 = None
        if (
            self.pair_views
            and watch.meter.support == "sphere"
            and len(outputs) > 1
            and outputs[1].shape == outputs[0].shape
        ):
            x2 = outputs[1]
        return watch.meter.update(outputs[0], x2)

    def _log(
        self, watch: Watch, metrics: Dict[str, float], pl_module: LightningModule
    ) -> None:
        # A gathered meter already measured the global batch: no second reduction.
        sync = dist.world_size() > 1 and not watch.meter.gather_distributed
        for metric, value in metrics.items():
            self.history.append((self._batch_step, watch.name, metric, value))
            pl_module.log(
                f"entropy/{watch.name}/{metric}",
                value,
                on_step=True,
                on_epoch=False,
                prog_bar=self.prog_bar and metric == "collapse_score",
                sync_dist=sync,
            )

    def _check(self, watch: Watch, metrics: Dict[str, float]) -> None:
        flagged: Optional[Tuple[str, float, float]] = None
        for metric, threshold in (
            ("collapse_score", self.collapse_threshold),
            ("effective_rank", self.rank_threshold),
        ):
            # The collapse score is calibrated on embeddings; on prototype scores
            # healthy DINO runs read 0.20-0.55 (docs/reading_the_numbers.md).
            if metric == "collapse_score" and watch.meter.support == "discrete":
                continue
            value = metrics.get(metric)
            if threshold is not None and value is not None and value < threshold:
                flagged = (metric, value, float(threshold))
                break
        if flagged is None:
            self._streaks[watch.name] = 0
            return
        streak = self._streaks.get(watch.name, 0) + 1
        self._streaks[watch.name] = streak
        # Alarm once per streak, when it reaches patience, not on every later check.
        if streak != self.patience:
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
        if dist.rank() == 0 and self.png_path is not None and self.history:
            try:
                report.write_png(
                    self.png_path,
                    self.history,
                    [(a.module, a.step) for a in self.alarms],
                    self.collapse_threshold,
                )
            except ModuleNotFoundError as error:
                # The plot is a convenience: the CSV (written above) has the data.
                rank_zero_warn(f"EntropyMonitor wrote no plot: {error}")

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Writes the CSV of what was logged so far and removes the hooks."""
        self._remove_hooks()
        self._write_csv()

    def _write_csv(self) -> None:
        if dist.rank() == 0 and self.csv_path is not None:
            report.write_csv(self.csv_path, self.history)


__all__ = ["CollapseAlarm", "CollapseWarning", "EntropyMonitor"]
