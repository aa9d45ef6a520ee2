"""Label-free monitoring of the entropy and collapse of representations.

Three layers, each usable alone:

- :mod:`lightly_er.monitoring.meter`: :class:`EntropyMeter`, plain PyTorch (no
  Lightning), measures a batch;
- :mod:`lightly_er.monitoring.callback`: :class:`EntropyMonitor`, the Lightning
  callback that decides when to measure, logs, and raises the collapse alarm;
- :mod:`lightly_er.monitoring.rules`: the alarm's rules (:class:`AlarmRule`,
  :data:`DEFAULT_RULES`) and streaks, plain Python;
- :mod:`lightly_er.monitoring.report`: the monitor's CSV and plot.

:func:`entropy_settings` answers how a loss's ER entropy is measured (its support,
kappa, estimator and temperature). The callback is imported on first use, so that
``import lightly_er.monitoring`` (and the heads, which import the meter) do not load
Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lightly_er.loss._kappa import entropy_settings, resolve_kappa
from lightly_er.monitoring._names import MonitorMetric
from lightly_er.monitoring.meter import EntropyMeter, MetricName, Support
from lightly_er.monitoring.rules import (
    DEFAULT_RULES,
    AlarmRule,
    CollapseAlarm,
    CollapseWarning,
)

if TYPE_CHECKING:
    from lightly_er.monitoring.callback import EntropyMonitor

_LAZY = {"EntropyMonitor"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("lightly_er.monitoring.callback"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_RULES",
    "AlarmRule",
    "CollapseAlarm",
    "CollapseWarning",
    "EntropyMeter",
    "EntropyMonitor",
    "MetricName",
    "MonitorMetric",
    "Support",
    "entropy_settings",
    "resolve_kappa",
]
