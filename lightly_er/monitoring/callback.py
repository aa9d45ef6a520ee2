"""EntropyMonitor: the Lightning callback that decides when to measure, logs and alarms."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from lightly.utils import dist
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from lightly_er import functional
from lightly_er.monitoring import report
from lightly_er.monitoring._measure import (
    Measured,
    Row,
    criterion_rows,
    mean_of_local_rows,
    measure_watches,
    teacher_student_rows,
)
from lightly_er.monitoring._watch import (
    CONVENTIONAL_BACKBONES,
    CONVENTIONAL_HEADS,
    MeterSettings,
    ModuleSpec,
    Watch,
    check_modules,
    find_watches,
    first_tensor,
    teacher_center,
    teacher_temperature,
    trainable,
)
from lightly_er.monitoring.meter import EntropyMeter
from lightly_er.monitoring.rules import (
    DEFAULT_RULES,
    AlarmRule,
    AlarmTracker,
    check_rules,
    extra_rules,
)
from lightly_er.utils.checks import (
    check_choice,
    check_estimator,
    check_int,
    check_positive,
)

OnCollapse = str
ON_COLLAPSE: Tuple[str, ...] = ("warn", "stop")
DEFAULT_COLLAPSE_THRESHOLD = 0.5
"""The collapse-score threshold of the earlier default alarm, calibrated at N = 256
(collapse_calibration.py); off by default since the rules per family replaced it."""


class CollapseWarning(UserWarning):
    """Issued by :class:`EntropyMonitor` when a watched representation collapses."""


@dataclass(frozen=True)
class CollapseAlarm:
    """One collapse alarm of :class:`EntropyMonitor`.

    Attributes:
        step: The global step of the check that raised the alarm.
        module: The name of the watched module.
        metric: The metric below its threshold (``"dimension_score"``,
            ``"normalized_mutual_information"``, ...).
        value: Its value at that check.
        threshold: Its threshold.
    """

    step: int
    module: str
    metric: str
    value: float
    threshold: float


class EntropyMonitor(Callback):
    """Logs label-free diagnostics of a model's heads, backbone and teacher; alarms.

    Works on any LightningModule without touching its code. Every
    ``every_n_steps`` training steps, forward hooks keep the outputs of the
    watched modules (their first two calls in the step, the two views); after the
    batch an :class:`EntropyMeter` measures them and the callback logs
    ``entropy/<module>/<metric>`` to every logger of the trainer, labeled with the
    step that was measured, and the alarm metric of each student on the progress
    bar (``proj.dim``, ``head.mi``: the value of the last check).

    Watched by default: ER heads, modules named like lightly's heads
    (:data:`CONVENTIONAL_HEADS`) and backbones (``backbone``, ``student_backbone``)
    and like their EMA copies (``teacher_head``, ``projection_head_momentum``, ...).
    A module with parameters none of which trains is a teacher, observed read-only
    (its no-grad calls too; ``watch_teachers=False`` skips them): DINO's at the
    teacher temperature, after the center, and compared with its student
    (``kl_teacher_student``). Students are measured on their calls with gradient.
    κ and temperatures follow ``pl_module.criterion``
    (:func:`lightly_er.loss.entropy_settings`) unless ``kappa``/``temperature`` or
    an ER head say otherwise. An ER criterion's terms are logged as
    ``entropy/criterion/...`` (``entropy``, ``reconstruction``, ``er`` and, for
    DINO-ER and SwAV-ER, the lower bound ``bound``).

    Alarm: the ``rules`` (default :data:`DEFAULT_RULES`, one per family, not yet
    validated: docs/reading_the_numbers.md), plus ``collapse_threshold`` (collapse score)
    and ``rank_threshold`` (effective rank) if set, flag a module whose metric is
    below its threshold; after ``patience`` consecutive flagged checks one
    :class:`CollapseWarning` names the module, metric, value and step, and
    ``on_collapse="stop"`` stops training cleanly. Streaks and alarms survive a
    checkpoint and resume.

    Files: ``entropy_monitor.csv`` and ``.png`` in ``log_dir``, or else in the
    folder of every logger, written atomically at the end of fit (the CSV also when
    training raises; the PNG needs matplotlib). docs/monitoring.md has the details.

    Attributes:
        modules, every_n_steps, kappa, estimator, temperature, collapse_threshold,
        rank_threshold, patience, on_collapse, log_dir, prog_bar,
        gather_distributed, pair_views, rules, watch_teachers:
            The arguments (see docs/monitoring.md).
        history:
            Every logged value, as (step, module, metric, value) tuples.
        alarms:
            The alarms raised, in order.
        csv_paths, png_paths:
            The files written at the end of fit, one per folder (empty when nothing
            is written); ``csv_path`` and ``png_path`` are the first of each.

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
        collapse_threshold: Optional[float] = None,
        rank_threshold: Optional[float] = None,
        patience: int = 3,
        on_collapse: OnCollapse = "warn",
        log_dir: Optional[Union[str, os.PathLike[str]]] = None,
        prog_bar: bool = True,
        gather_distributed: bool = True,
        pair_views: bool = True,
        rules: Optional[Sequence[AlarmRule]] = None,
        watch_teachers: bool = True,
    ) -> None:
        """Initializes the callback; see the class docstring for the arguments."""
        super().__init__()
        check_modules(modules)
        check_int(every_n_steps, "every_n_steps", 1)
        if kappa is not None:
            check_positive(kappa, "kappa")
        if estimator is not None:
            check_estimator(estimator)
        if temperature is not None:
            check_positive(temperature, "temperature")
        check_choice(on_collapse, "on_collapse", ON_COLLAPSE)
        self.rules: Tuple[AlarmRule, ...] = (
            DEFAULT_RULES if rules is None else tuple(check_rules(rules))
        )
        # Checks the thresholds and patience too (an error naming the argument).
        self._tracker = AlarmTracker(
            (*self.rules, *extra_rules(collapse_threshold, rank_threshold)), patience
        )
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
        self.watch_teachers = watch_teachers
        self.history: List[report.HistoryRow] = []
        self.alarms: List[CollapseAlarm] = []
        self.csv_paths: List[Path] = []
        self.png_paths: List[Path] = []
        self._watches: List[Watch] = []
        self._capturing = False
        self._batch_step = -1
        self._last_captured_step = -1
        self._pending_stop = False
        self._teacher_temperature: Optional[float] = None
        self._teacher_center: Optional[torch.Tensor] = None
        # The first captured output of every module at this check (for the KL).
        self._first: Dict[str, torch.Tensor] = {}

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

    @property
    def roles(self) -> Dict[str, str]:
        """``"student"`` or ``"teacher"`` for every watched module (at fit start)."""
        return {watch.name: watch.role for watch in self._watches}

    @property
    def csv_path(self) -> Optional[Path]:
        """The first CSV written at the end of fit (None when none is)."""
        return self.csv_paths[0] if self.csv_paths else None

    @property
    def png_path(self) -> Optional[Path]:
        """The first PNG written at the end of fit (None when none is)."""
        return self.png_paths[0] if self.png_paths else None

    # -- state ------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Starts a fresh history for fit; a checkpoint restored afterwards replaces it."""
        if stage != "fit":
            # validate/test/predict after fit keep what fit recorded.
            return
        self.history = []
        self.alarms = []
        self._tracker.streaks = {}
        self._pending_stop = False
        self._last_captured_step = -1

    def state_dict(self) -> Dict[str, Any]:
        """The alarm state and history, saved in Lightning checkpoints."""
        return {
            "streaks": dict(self._tracker.streaks),
            "alarms": [asdict(alarm) for alarm in self.alarms],
            "history": [list(row) for row in self.history],
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores the alarm state and history of a checkpoint."""
        self._tracker.streaks = {
            str(k): int(v) for k, v in state_dict["streaks"].items()
        }
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
            watch_teachers=self.watch_teachers,
        )
        for watch in self._watches:
            watch.handle = watch.module.register_forward_hook(self._hook(watch))
        if not self._watches:
            names = ", ".join(CONVENTIONAL_HEADS + CONVENTIONAL_BACKBONES)
            rank_zero_warn(
                "EntropyMonitor watches no module: none was named, no submodule of "
                f"{type(pl_module).__name__} owns an entropy_meter, and none is named "
                f"like a lightly head or backbone ({names}) or their EMA copies"
            )
        directories = self._directories(trainer)
        self.csv_paths = [d / self.CSV_NAME for d in directories]
        self.png_paths = [d / self.PNG_NAME for d in directories]
        if not directories:
            rank_zero_warn(
                "EntropyMonitor has no log directory (no log_dir and no logger): it "
                "logs through the module but writes no CSV or PNG"
            )

    def _directories(self, trainer: Trainer) -> List[Path]:
        """log_dir, or the folder of every logger (rank zero; others write nothing)."""
        if self.log_dir is not None:
            return [self.log_dir]
        return report.logger_folders(trainer.loggers) if dist.rank() == 0 else []

    def _hook(self, watch: Watch) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self._capturing or len(watch.outputs) >= 2:
                return
            # Students are measured on their trained calls; teachers are observed
            # whatever the grad mode (they usually run under no_grad).
            if watch.role == "student" and (
                not torch.is_grad_enabled() or not trainable(module)
            ):
                return
            tensor = first_tensor(output)
            if tensor is not None and tensor.is_floating_point():
                tensor = tensor.detach()
                if watch.pool and tensor.ndim == 4:
                    tensor = tensor.mean(dim=(2, 3))
                # A copy: a later in-place operation must not change what is measured.
                watch.outputs.append(tensor.to(torch.float32, copy=True))

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
            # Before the loss updates it: the center and temperature the teacher's
            # targets of this step are computed with.
            criterion = getattr(pl_module, "criterion", None)
            self._teacher_temperature = teacher_temperature(
                criterion, trainer.current_epoch
            )
            self._teacher_center = teacher_center(criterion)

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
            measured = self._measure_all()
            rows = [
                (watch.name, metric, value)
                for watch, metrics in measured
                for metric, value in metrics.items()
            ]
            rows += self._pairs(measured)
            rows += self._criterion_rows(pl_module)
            rows = self._synchronised(trainer, rows, measured)
            self._record(trainer, pl_module, rows, measured)
            by_module: Dict[str, Dict[str, float]] = {}
            for module, metric, value in rows:
                by_module.setdefault(module, {})[metric] = value
            for watch, _ in measured:
                self._check(watch, by_module[watch.name])
        self._maybe_stop(trainer, due)

    def _measure_all(self) -> List[Measured]:
        measured, first = measure_watches(
            self._watches,
            self._teacher_temperature,
            self._teacher_center,
            self.pair_views,
        )
        self._first = first
        return measured

    def _pairs(self, measured: Sequence[Measured]) -> List[Row]:
        return teacher_student_rows(measured, self._first, self.meters)

    def _criterion_rows(self, pl_module: LightningModule) -> List[Row]:
        return criterion_rows(getattr(pl_module, "criterion", None))

    def _synchronised(
        self, trainer: Trainer, rows: List[Row], measured: Sequence[Measured]
    ) -> List[Row]:
        """Per-process values averaged over processes (gathered ones are global)."""
        if trainer.world_size <= 1:
            return rows
        gathered = {w.name for w, _ in measured if w.meter.gather_distributed}
        # A collective on the due steps, which every process shares.
        return mean_of_local_rows(
            rows,
            gathered,
            lambda t: trainer.strategy.reduce(
                t.to(trainer.strategy.root_device), reduce_op="mean"
            ),
        )

    def _record(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        rows: Sequence[Row],
        measured: Sequence[Measured],
    ) -> None:
        step = self._batch_step
        self.history += [
            (step, module, metric, value) for module, metric, value in rows
        ]
        if rows and trainer.loggers:
            # Straight to every logger, labeled with the measured step: through
            # LightningModule.log they would wait for the next flush (labeled with
            # its step, or dropped at an epoch end).
            metrics = {f"entropy/{m}/{k}": v for m, k, v in rows}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
                logger.save()
        if not self.prog_bar:
            return
        for watch, metrics in measured:
            if watch.role != "student":
                continue
            metric = self._bar_metric(watch)
            if metric in metrics:
                # The value of the last check, held until the next one.
                pl_module.log(
                    watch.short_name,
                    metrics[metric],
                    prog_bar=True,
                    logger=False,
                    on_step=True,
                    on_epoch=False,
                )

    def _bar_metric(self, watch: Watch) -> str:
        for rule in self.rules:
            if rule.applies(watch.meter.support, watch.role):
                return rule.metric
        return "collapse_score"

    def _check(self, watch: Watch, metrics: Dict[str, float]) -> None:
        flag = self._tracker.check(watch.name, watch.meter.support, watch.role, metrics)
        if flag is None:
            return
        alarm = CollapseAlarm(
            self._batch_step, watch.name, flag.metric, flag.value, flag.threshold
        )
        self.alarms.append(alarm)
        message = (
            f"EntropyMonitor: representation collapse in {watch.role} module "
            f"{watch.name!r} at global step {alarm.step}: {flag.metric} = "
            f"{flag.value:.4g} < {flag.threshold:g} for {self.patience} consecutive "
            "checks"
        )
        if self.on_collapse == "stop":
            message += "; stopping training"
            self._pending_stop = True
        # One message per alarm: a warning (also shown in notebooks), on rank zero.
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
        if dist.rank() != 0 or not self.history:
            return
        thresholds = {
            rule.metric: float(rule.threshold) for rule in self._tracker.rules
        }
        for path in self.png_paths:
            try:
                report.write_png(
                    path,
                    self.history,
                    [(a.module, a.step) for a in self.alarms],
                    thresholds,
                )
            except ModuleNotFoundError as error:
                # The plot is a convenience: the CSV (written above) has the data.
                rank_zero_warn(f"EntropyMonitor wrote no plot: {error}")
                return

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Writes the CSV of what was logged so far and removes the hooks."""
        self._remove_hooks()
        self._write_csv()

    def _write_csv(self) -> None:
        if dist.rank() == 0:
            for path in self.csv_paths:
                report.write_csv(path, self.history)


__all__ = ["CollapseAlarm", "CollapseWarning", "EntropyMonitor"]
