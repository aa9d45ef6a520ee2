"""The per-epoch metrics of a run, in both benchmarks: lightly's MetricCallback.

lightly's :class:`~lightly.utils.benchmarking.MetricCallback` keeps, after every
validation epoch, the value of every logged metric (``val_metrics``: name -> one value
per epoch); :func:`best_metrics` reads the best of each. The ImageNet benchmarks use it
as lightly's ``main.py`` does; the CIFAR-10 benchmark, whose run record holds every
epoch's values, uses :class:`EpochHistory`, the same callback with what a record needs
on top.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from lightly.utils.benchmarking import MetricCallback
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor

Probe = Callable[[Trainer, LightningModule], Optional[Dict[str, float]]]
"""Values measured after a validation epoch; None skips the epoch."""


class EpochHistory(MetricCallback):
    """lightly's MetricCallback, read once validation has ended, kept in checkpoints.

    Three things on top of its parent:

    - It reads the metrics in ``on_validation_end``, after the module's own
      ``on_validation_epoch_end`` (where lightly's ``BenchmarkModule`` logs
      ``kNN_accuracy``): Lightning calls the callbacks' ``on_validation_epoch_end``
      first, so there the parent sees the previous epoch's value.
    - ``probe`` adds values that no module logs (the entropy metrics of a held-out
      batch) to ``val_metrics`` after every epoch; when it returns None the epoch is
      not recorded.
    - Its state travels in Lightning checkpoints, so a resumed run keeps its history.

    Args:
        probe: Called with the trainer and the module after every validation epoch
            (not in the sanity check).
    """

    def __init__(self, probe: Optional[Probe] = None) -> None:
        super().__init__()
        self.probe = probe

    def on_validation_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        """Nothing: the metrics are read in :meth:`on_validation_end`."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Appends every logged scalar and the probe's values to ``val_metrics``."""
        if trainer.sanity_checking:
            return
        extra = {} if self.probe is None else self.probe(trainer, pl_module)
        if extra is None:
            return
        for name, value in trainer.callback_metrics.items():
            if isinstance(value, Tensor) and value.numel() != 1:
                continue  # as the parent: scalars only
            self.val_metrics.setdefault(name, []).append(float(value))
        for name, number in extra.items():
            self.val_metrics.setdefault(name, []).append(float(number))

    def state_dict(self) -> Dict[str, Any]:
        return {
            "train_metrics": {k: list(v) for k, v in self.train_metrics.items()},
            "val_metrics": {k: list(v) for k, v in self.val_metrics.items()},
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if "val_metrics" not in state_dict:
            # A checkpoint written by lightly_er.benchmarking (before the move to
            # benchmarks/): the held-out history alone, one list per record key.
            state_dict = {"train_metrics": {}, "val_metrics": state_dict}
        self.train_metrics = _lists(state_dict["train_metrics"])
        self.val_metrics = _lists(state_dict["val_metrics"])


def _lists(metrics: Dict[str, Any]) -> Dict[str, List[float]]:
    return {name: [float(v) for v in values] for name, values in metrics.items()}


def best_metrics(callback: MetricCallback, prefixes: Sequence[str]) -> Dict[str, float]:
    """The maximum over the validation epochs of each metric with a given prefix.

    A ``/dataloader_idx_<i>`` suffix that Lightning adds is dropped.

    Examples:
        >>> from lightly.utils.benchmarking import MetricCallback
        >>> callback = MetricCallback()
        >>> callback.val_metrics = {"val_top1/dataloader_idx_1": [0.2, 0.5, 0.4]}
        >>> best_metrics(callback, ["val_top"])
        {'val_top1': 0.5}
    """
    out: Dict[str, float] = {}
    for name, values in callback.val_metrics.items():
        if values and any(name.startswith(p) for p in prefixes):
            out[name.split("/")[0]] = float(max(values))
    return out
