"""The LightningModule pieces that every method of the ImageNet benchmarks shares.

A method is one module with the benchmarks' objective switch
(:class:`benchmarks.common.objective.ObjectiveSwitch`): ``"original"`` builds lightly's
loss and heads, ``"er"`` their lightly-er versions, so the two objectives start from
the same weights under one seed. Everything else (backbone, augmentation, optimizer,
schedules, teacher updates, online classifier) is lightly's, written out in each
method's module.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Iterable, List, Optional

from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.benchmarking import OnlineLinearClassifier
from lightly.utils.scheduler import CosineWarmupScheduler, cosine_schedule
from torch import Tensor, nn
from torch.optim import Optimizer

from benchmarks.common.objective import Objective, ObjectiveSwitch

from ._common import warmup_steps


class SSLMethod(ObjectiveSwitch):
    """Objective switch, online classifier, logging and schedules of every method.

    A subclass builds its backbone, loss and heads (the classes chosen with
    :meth:`pick` and :meth:`make_loss`; the loss before the ER heads, whose meters
    take its kappa, which changes no weight: lightly's losses draw no random numbers)
    and then :meth:`add_online_classifier`; it implements ``training_step`` and
    ``configure_optimizers`` as lightly's script does.

    Attributes:
        name:
            The method's name on the command line (``"simclr"``; the ER objective is
            ``"simclr_er"``), also the name of its optimizer's parameter groups.
        has_teacher:
            Whether the method has an EMA teacher (``--ema`` applies).
        sphere:
            Whether its ER loss measures the entropy on the sphere (it then takes
            ``--kappa`` and ``--estimator``); a discrete one takes the weight only.
        batch_size_per_device:
            Batch size of one process.
        objective:
            ``"original"`` or ``"er"``.
        ema:
            Constant EMA coefficient of the teacher instead of lightly's schedule, or
            None for lightly's.
        online_classifier:
            lightly's linear classifier on detached backbone features (its validation
            accuracy is logged as ``val_online_cls_top1``).

    Args:
        batch_size_per_device: Batch size of one process.
        num_classes: Number of classes of the online classifier.
        objective: ``"original"`` or ``"er"``.
        ema: Constant EMA coefficient in [0, 1), or None.
        er_kwargs: Keyword arguments of the method's ER losses (``kappa``,
            ``entropy_weight``, ``estimator``: the command line's, by
            :func:`benchmarks.common.er_options.er_loss_kwargs`); ER objective only.

    Raises:
        ValueError: If an argument is out of range.
    """

    name: ClassVar[str] = ""
    has_teacher: ClassVar[bool] = False
    sphere: ClassVar[bool] = False
    online_classifier: OnlineLinearClassifier

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
        objective: Objective = "original",
        ema: Optional[float] = None,
        er_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.init_objective(objective, er_kwargs)
        if ema is not None and not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        if batch_size_per_device < 1 or num_classes < 1:
            raise ValueError(
                "batch_size_per_device and num_classes must be >= 1, got "
                f"{batch_size_per_device} and {num_classes}"
            )
        self.batch_size_per_device = batch_size_per_device
        self.num_classes = num_classes
        self.ema = ema

    # -- building ---------------------------------------------------------------------
    def add_online_classifier(self, feature_dim: int) -> None:
        """lightly's online linear classifier, built last as in lightly's scripts."""
        self.online_classifier = OnlineLinearClassifier(
            feature_dim=feature_dim, num_classes=self.num_classes
        )

    # -- training ---------------------------------------------------------------------
    def teacher_momentum(self, start_value: float) -> float:
        """This step's EMA coefficient: lightly's cosine schedule to 1, or ``ema``."""
        if self.ema is not None:
            return self.ema
        return float(
            cosine_schedule(
                step=self.trainer.global_step,
                max_steps=self.trainer.estimated_stepping_batches,
                start_value=start_value,
                end_value=1.0,
            )
        )

    def log_loss(
        self, loss: Tensor, batch_size: int, extra: Optional[Dict[str, Any]] = None
    ) -> None:
        """Logs ``train_loss`` (and extra values) as lightly, and the ER terms.

        An ER loss also logs its two terms, ``train_entropy`` and
        ``train_reconstruction``.
        """
        self.log_dict(
            {"train_loss": loss, **(extra or {})},
            prog_bar=True,
            sync_dist=True,
            batch_size=batch_size,
        )
        self.log_er_terms(batch_size, sync_dist=True)

    def online_step(self, features: Tensor, targets: Tensor, batch_idx: int) -> Tensor:
        """Trains the online classifier on detached features; returns its loss."""
        cls_loss: Tensor
        cls_loss, cls_log = self.online_classifier.training_step(
            (features.detach(), targets), batch_idx
        )
        self.log_dict(cls_log, sync_dist=True, batch_size=len(targets))
        return cls_loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The online classifier's loss and accuracy on a validation batch."""
        images, targets = batch[0], batch[1]
        features = self.forward(images).flatten(start_dim=1)
        cls_loss: Tensor
        cls_loss, cls_log = self.online_classifier.validation_step(
            (features.detach(), targets), batch_idx
        )
        self.log_dict(cls_log, prog_bar=True, sync_dist=True, batch_size=len(targets))
        return cls_loss

    # -- optimization -----------------------------------------------------------------
    @property
    def global_batch_size(self) -> int:
        """The batch size summed over the processes."""
        return int(self.batch_size_per_device * self.trainer.world_size)

    def param_groups(
        self,
        modules: Iterable[nn.Module],
        weight_decay: Optional[float] = None,
    ) -> List[Dict[str, Any]]:
        """lightly's three parameter groups.

        ``<name>`` holds the weights of the trained modules; ``<name>_no_weight_decay``
        their norm layers and biases; ``online_classifier`` the classifier. The last
        two have no weight decay; the first has the optimizer's, or ``weight_decay``.
        """
        params, params_no_weight_decay = get_weight_decay_parameters(list(modules))
        first: Dict[str, Any] = {"name": self.name, "params": params}
        if weight_decay is not None:
            first["weight_decay"] = weight_decay
        return [
            first,
            {
                "name": f"{self.name}_no_weight_decay",
                "params": params_no_weight_decay,
                "weight_decay": 0.0,
            },
            {
                "name": "online_classifier",
                "params": list(self.online_classifier.parameters()),
                "weight_decay": 0.0,
            },
        ]

    def cosine_warmup(
        self,
        optimizer: Optimizer,
        warmup_epochs: float,
        end_value: float = 0.001,
    ) -> Dict[str, Any]:
        """lightly's per-step CosineWarmupScheduler, as a Lightning scheduler dict.

        Args:
            optimizer: The optimizer.
            warmup_epochs: Linear warmup in epochs (capped at the run, see
                :func:`benchmarks.imagenet._common.warmup_steps`).
            end_value: Final learning rate as a factor of the peak (lightly's
                scheduler default 0.001).
        """
        scheduler = CosineWarmupScheduler(
            optimizer=optimizer,
            warmup_epochs=warmup_steps(self.trainer, warmup_epochs),
            max_epochs=int(self.trainer.estimated_stepping_batches),
            end_value=end_value,
        )
        return {"scheduler": scheduler, "interval": "step"}
