"""EntropyMonitor: the Lightning callback that decides when to measure, logs and alarms."""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import torch
from lightly.utils import dist
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from lightly_er import functional
from lightly_er.monitoring import report
from lightly_er.monitoring._measure import (
    Measured,
    Row,
    criterion_rows,
    mean_of_local_rows,
    measure_watches,
    progress_bar,
    teacher_student_rows,
)
from lightly_er.monitoring._select import (
    MetricSelection,
    check_metrics,
    logged_rows,
)
from lightly_er.monitoring._watch import (
    CONVENTIONAL_HEADS,
    MeterSettings,
    ModuleSpec,
    Watch,
    capture_hook,
    check_modules,
    find_watches,
    no_watch_message,
    remove_hooks,
    teacher_center,
    teacher_temperature,
)
from lightly_er.monitoring.meter import EntropyMeter
from lightly_er.monitoring.rules import (
    DEFAULT_RULES,
    AlarmRule,
    AlarmTracker,
    CollapseAlarm,
    CollapseWarning,
    alarm_message,
    check_rules,
    extra_rules,
)
from lightly_er.utils.checks import (
    check_choice,
    check_estimator,
    check_int,
    check_positive,
)

OnCollapse = Literal["warn", "stop"]
ON_COLLAPSE: Tuple[str, ...] = ("warn", "stop")
DEFAULT_COLLAPSE_THRESHOLD = 0.5
"""The collapse-score threshold of the earlier default alarm, calibrated at N = 256
(docs/reading_the_numbers.md); off by default since the rules per family replaced it."""


class EntropyMonitor(Callback):
    """Logs label-free diagnostics of a model's heads, backbone and teacher; alarms.

    Works on any LightningModule without touching its code. Every
    ``every_n_steps`` training steps, forward hooks keep the first two outputs
    (the two views) of the watched modules; after the batch an
    :class:`EntropyMeter` measures them. The callback logs
    ``entropy/<module>/<metric>`` to every logger, labeled with the measured step
    (by default two series per module: its alarm metric and its entropy gap; see
    ``metrics``), and each student's alarm metric on the progress bar
    (``proj.dim``, ``head.mi``). ``history`` and the CSV keep every metric.

    Watched by default: ER heads, and modules named like lightly's heads
    (:data:`CONVENTIONAL_HEADS`), backbones (``backbone``, ``student_backbone``)
    and their EMA copies (``teacher_head``, ``projection_head_momentum``, ...). A
    module whose parameters are all frozen is a teacher, observed read-only: DINO's
    at the teacher temperature, after the center, and compared with its student
    (``kl_teacher_student``). The loss ``pl_module.criterion`` says which modules
    output prototype scores and the κ or temperature to measure at
    (:func:`lightly_er.monitoring.entropy_settings`), unless an argument or an ER
    head says otherwise. An ER criterion's terms are recorded under ``criterion``
    (``entropy``, ``reconstruction``, ``er``, and ``bound`` for DINO-ER, SwAV-ER).

    Alarm: after ``patience`` consecutive checks at which a rule's metric is below
    its threshold, one :class:`CollapseWarning` says what the rule saw (metric,
    value, threshold, step, module) and whether the rule is validated (no default
    rule is yet: docs/monitoring.md). It reads one statistic of a module's outputs
    and does not judge the backbone's features. Streaks and alarms survive a
    checkpoint and resume.

    Files: ``entropy_monitor.csv`` and ``.png`` in ``log_dir``, or else in every
    logger's folder, written atomically at the end of fit (the CSV also when
    training raises; the PNG needs matplotlib) and named in one line of
    Lightning's info log (rank zero). docs/monitoring.md has the details.

    Args:
        modules: The modules to watch, by name (``"backbone.layer4"``), each with
            the support of its outputs (``"sphere"``, ``"discrete"``) or its own
            :class:`EntropyMeter`; None (default) finds them as above.
        every_n_steps: Measure every this many training steps, >= 1.
        kappa, estimator, temperature: The meters' settings
            (:class:`EntropyMeter`); None follows the ER head, else the loss.
        collapse_threshold, rank_threshold: Add a rule on the collapse score
            (sphere) or the effective rank (both supports); None adds none.
        patience: Consecutive flagged checks that raise an alarm, >= 1.
        on_collapse: ``"warn"`` (default) or ``"stop"`` (stop training cleanly).
        log_dir: The folder of the CSV and PNG; None: every logger's folder.
        prog_bar: Whether to show each student's alarm metric on the progress bar.
        gather_distributed: Whether to measure the batch of all processes.
        pair_views: Whether to pair a module's first two calls as two views.
        rules: The alarm's rules; None: :data:`DEFAULT_RULES`, one per support.
        watch_teachers: Whether to watch EMA copies (read-only).
        metrics: What goes to the loggers: ``"compact"`` (default), the metric of
            each module's alarm rules and its entropy gap (``entropy_gap``, or
            ``entropy`` for discrete outputs); ``"all"``; or a list of names
            (:data:`lightly_er.monitoring.MonitorMetric`: the meter's
            metrics, ``"kl_teacher_student"``, ``"criterion"`` for the loss's
            terms), logged for every module that has them.

    Attributes:
        modules, every_n_steps, ..., metrics: The arguments.
        history: Every measured value, as (step, module, metric, value) tuples,
            whatever ``metrics`` says.
        alarms: The alarms raised, in order.
        csv_paths, png_paths: The files written at the end of fit, one per folder
            (empty when none is); ``csv_path`` and ``png_path``: the first of each.

    Raises:
        TypeError, ValueError: If an argument is invalid (the error names it).

    Examples:
        >>> from lightly_er.monitoring import EntropyMonitor
        >>> monitor = EntropyMonitor(every_n_steps=50, on_collapse="stop")
        >>> everything = EntropyMonitor(metrics="all")
        >>> chosen = EntropyMonitor(metrics=["dimension_score", "effective_rank"])
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
        metrics: MetricSelection = "compact",
    ) -> None:
        super().__init__()
        check_modules(modules)
        check_int(every_n_steps, "every_n_steps", 1)
        for value, name in ((kappa, "kappa"), (temperature, "temperature")):
            if value is not None:
                check_positive(value, name)
        if estimator is not None:
            check_estimator(estimator)
        check_choice(on_collapse, "on_collapse", ON_COLLAPSE)
        self._selection = check_metrics(metrics)
        self.rules: Tuple[AlarmRule, ...] = (
            DEFAULT_RULES if rules is None else tuple(check_rules(rules))
        )
        # Checks the thresholds and patience too (an error naming the argument).
        self._tracker = AlarmTracker(
            (*self.rules, *extra_rules(collapse_threshold, rank_threshold)), patience
        )
        self.modules = None if modules is None else dict(modules)
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
        self.metrics = metrics if isinstance(metrics, str) else tuple(metrics)
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
            hook = capture_hook(watch, lambda: self._capturing)
            watch.handle = watch.module.register_forward_hook(hook)
        if not self._watches:
            rank_zero_warn(no_watch_message(pl_module))
        # log_dir, or the folder of every logger (rank zero; others write nothing).
        directories = (
            [self.log_dir]
            if self.log_dir is not None
            else report.logger_folders(trainer.loggers)
            if dist.rank() == 0
            else []
        )
        self.csv_paths = [d / self.CSV_NAME for d in directories]
        self.png_paths = [d / self.PNG_NAME for d in directories]
        if not directories:
            rank_zero_warn(
                "EntropyMonitor has no log directory (no log_dir and no logger): it "
                "measures but writes no CSV or PNG; pass "
                "EntropyMonitor(log_dir='logs') or give the Trainer a logger"
            )

    def _remove_hooks(self) -> None:
        remove_hooks(self._watches)
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
            measured, self._first = measure_watches(
                self._watches,
                self._teacher_temperature,
                self._teacher_center,
                self.pair_views,
            )
            rows = [
                (watch.name, metric, value)
                for watch, metrics in measured
                for metric, value in metrics.items()
            ]
            rows += teacher_student_rows(measured, self._first, self.meters)
            rows += criterion_rows(getattr(pl_module, "criterion", None))
            if trainer.world_size > 1:
                # Per-process values averaged (gathered ones are global already):
                # a collective on the due steps, which every process shares.
                rows = mean_of_local_rows(
                    rows,
                    {w.name for w, _ in measured if w.meter.gather_distributed},
                    lambda t: trainer.strategy.reduce(
                        t.to(trainer.strategy.root_device), reduce_op="mean"
                    ),
                )
            # What a meter could not measure (NaN, said once by the meter) is not kept.
            rows = [row for row in rows if not math.isnan(row[2])]
            self._record(trainer, pl_module, rows, measured)
            by_module: Dict[str, Dict[str, float]] = {}
            for module, metric, value in rows:
                by_module.setdefault(module, {})[metric] = value
            for watch, _ in measured:
                self._check(watch, by_module[watch.name])
        self._maybe_stop(trainer, due)

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
        logged = logged_rows(
            rows,
            {w.name: (w.meter.support, w.role) for w in self._watches},
            self._tracker.rules,
            self._selection,
        )
        if logged and trainer.loggers:
            # Straight to every logger, labeled with the measured step: through
            # LightningModule.log they would wait for the next flush (labeled with
            # its step, or dropped at an epoch end).
            metrics = {f"entropy/{m}/{k}": v for m, k, v in logged}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
                logger.save()
        if not self.prog_bar:
            return
        for name, value in progress_bar(measured, self.rules).items():
            # The value of the last check, held until the next one.
            pl_module.log(
                name, value, prog_bar=True, logger=False, on_step=True, on_epoch=False
            )

    def _check(self, watch: Watch, metrics: Dict[str, float]) -> None:
        w = watch
        flag = self._tracker.check(w.name, w.meter.support, w.role, metrics, w.backbone)
        if flag is None:
            return
        alarm = CollapseAlarm(
            self._batch_step, watch.name, flag.metric, flag.value, flag.threshold
        )
        self.alarms.append(alarm)
        message = alarm_message(
            flag, watch.name, watch.role, alarm.step, self.patience, self.every_n_steps
        )
        if self.on_collapse == "stop":
            message += " Stopping training (on_collapse='stop')."
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
        """Writes the CSV and the PNG, and names them in one line (rank zero)."""
        written = self._write_csv()  # [] on the other ranks
        if written and self.history:
            pngs, missing = report.write_pngs(
                self.png_paths,
                self.history,
                [(a.module, a.step) for a in self.alarms],
                {rule.metric: float(rule.threshold) for rule in self._tracker.rules},
            )
            if missing is not None:
                # The plot is a convenience: the CSV (written above) has the data.
                rank_zero_warn(f"EntropyMonitor wrote no plot: {missing}")
            written += pngs
        if written:
            rank_zero_info(report.wrote_message(written))

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Writes the CSV of what was logged so far and removes the hooks."""
        self._remove_hooks()
        written = self._write_csv()
        if written:
            rank_zero_info(report.wrote_message(written))

    def _write_csv(self) -> List[Path]:
        if dist.rank() != 0:
            return []
        for path in self.csv_paths:
            report.write_csv(path, self.history)
        return list(self.csv_paths)


__all__ = [
    "CONVENTIONAL_HEADS",
    "CollapseAlarm",
    "CollapseWarning",
    "EntropyMonitor",
]
