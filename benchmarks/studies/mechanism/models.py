"""The arms as models: lightly's method modules with one intervention each.

Every arm is a module of ``benchmarks/cifar/methods.py`` (lightly's CIFAR-10
benchmark, value for value) on the ER objective at the arm's entropy weight, or a
small subclass of it that makes the intervention (no predictor, no stop-gradient,
the uniformity control); lightly's SimCLR is the original objective. The ER losses
at weight 0 are their lightly parents (same gradient; DINO with centering and SwAV
with Sinkhorn the same loss), so within an arm and seed only the entropy term
differs. :func:`head_outputs` gives the outputs the collapse corpus keeps.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Type, cast

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import heads
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from benchmarks.cifar.methods import BYOL, DINO, SimCLR, SimSiam, SSLMethod, SwAV
from benchmarks.studies.mechanism import terms
from benchmarks.studies.mechanism.config import ARMS, WIDE, RunSpec, is_wide
from lightly_er.functional import uniformity
from lightly_er.loss import ERNegativeCosineSimilarity
from lightly_er.models.modules import ERBYOLProjectionHead

FEATURE_DIM = 128
KAPPA = 10.0
"""κ of BYOL(-ER) and of the matched uniformity term (the authors' default)."""


class S2Backbone(nn.Sequential):
    """``s2``: three 3 x 3 convolutions (32, 64, 128 channels), each stride 2.

    28 -> 14 -> 7 -> 4 px, batch norm and ReLU after each, global average
    pooling: 128 features. The sweep's ``small`` CNN with a stride-2 first layer.

    Args:
        features: The last convolution's channels (the features); the others are
            a quarter and a half of it. 256 is the wide backbone (64, 128, 256).
    """

    def __init__(self, features: int = FEATURE_DIM) -> None:
        layers: List[nn.Module] = []
        channels = [3, features // 4, features // 2, features]
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(*layers)


def feature_dim(wide: bool = False) -> int:
    """The backbone's features: 128, or 256 on the wide backbone."""
    return 2 * FEATURE_DIM if wide else FEATURE_DIM


def build_backbone(seed: int, wide: bool = False) -> nn.Module:
    """The seed's backbone: built first after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    backbone = S2Backbone(feature_dim(wide))
    return backbone.to(memory_format=torch.channels_last)


class BYOLNoPredictor(BYOL):
    """BYOL without its prediction head: the projection goes to the loss."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # BYOL's constructor without the prediction head (none is built).
        super(BYOL, self).__init__(*args, **kwargs)
        self.criterion = self.make_loss(
            NegativeCosineSimilarity,
            ERNegativeCosineSimilarity,
            er_only={"prediction": "x0"},
        )
        projection = self.pick(heads.BYOLProjectionHead, ERBYOLProjectionHead)
        meter = self.meter_kwargs("sphere")
        self.projection_head = projection(self.feature_dim, 1024, 256, **meter)
        self._init_momentum()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.projection_head(self.features(x))
        return out

    def configure_optimizers(self) -> Any:
        params = list(self.backbone.parameters()) + list(
            self.projection_head.parameters()
        )
        return self.sgd(params, 6e-2 * self.lr_factor())


class UniformityRegularised(ERNegativeCosineSimilarity):
    """BYOL-ER's loss at weight 0 plus (1/κ)·U(p; κ/2) on the prediction ``x0``.

    Wang & Isola's uniformity at t = κ/2 and weight 1/κ is the kernel of BYOL-ER's
    entropy term at the same scale in the same loss units (the pre-registration
    derives it); BYOL's two loss calls make it the mean over the two views.
    """

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        loss = super().forward(x0, x1)
        spread: Tensor = uniformity(F.normalize(x0, dim=1), t=self.kappa / 2)
        return loss + spread / self.kappa


class BYOLUniformity(BYOL):
    """Intact BYOL (ER loss at weight 0) with the matched uniformity regularizer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The loss draws no random numbers: replacing it keeps BYOL's weights.
        self.criterion = UniformityRegularised(
            kappa=KAPPA, entropy_weight=0.0, prediction="x0"
        )


class SimSiamNoStopGradient(SimSiam):
    """SimSiam whose projection is not detached: both loss inputs carry gradient."""

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.projection_head(self.features(x))
        p = self.prediction_head(z)
        return z, p


class SimSiamNoPredictorNoStopGradient(SimSiam):
    """SimSiam without its prediction head and without stop-gradient.

    The loss is 0.5 (L(z0, z1) + L(z1, z0)) on the two views' projections, both
    carrying gradient (the alarm study's ``simsiam-nosg-nopred``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # SimSiam's constructor without the prediction head (none is built).
        super(SimSiam, self).__init__(*args, **kwargs)
        self.projection_head = self.build_projection_head()
        self.criterion = self.make_loss(
            NegativeCosineSimilarity,
            ERNegativeCosineSimilarity,
            er_only={"prediction": "both"},
        )

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.projection_head(self.features(x))
        return z, z

    def objective_output(self, x: Tensor) -> Tensor:
        out: Tensor = self(x)[0]
        return out


def model_recipe(
    arm_id: str, weight: Optional[float]
) -> Tuple[Type[SSLMethod], str, Dict[str, Any]]:
    """(module class, objective, ER loss keyword arguments) of an arm at a weight
    (a ``-wide`` arm's are its narrow twin's)."""
    arm_id = arm_id.removesuffix(WIDE)
    arm = ARMS[arm_id]
    er: Dict[str, Any] = {} if weight is None else {"entropy_weight": float(weight)}
    if arm.method == "byol":
        cls = {
            "byol-nopred": BYOLNoPredictor,
            "byol-nopred-ema0": BYOLNoPredictor,
            "byol-unif": BYOLUniformity,
        }.get(arm_id, BYOL)
        return cls, "er", er or {"entropy_weight": 0.0}
    if arm.method == "simsiam":
        if arm_id == "simsiam-nosg":
            # Both inputs carry gradient: both entropies, as the registered runs had.
            return SimSiamNoStopGradient, "er", {**er, "prediction": "both"}
        if arm_id == "simsiam-nosg-nopred":
            return SimSiamNoPredictorNoStopGradient, "er", er
        return SimSiam, "er", er
    if arm.method == "dino":
        er["centering"] = "nocenter" not in arm_id
        if arm_id == "dino-nosharpen":
            er.update(warmup_teacher_temp=0.1, teacher_temp=0.1)
        return DINO, "er", er
    if arm.method == "swav":
        er["use_sinkhorn"] = arm_id == "swav"
        return SwAV, "er", er
    if arm_id == "simclr":
        return SimCLR, "original", {}
    return SimCLR, "er", er


def build_model(spec: RunSpec, num_classes: int = 10) -> SSLMethod:
    """The run's model: the seed's backbone first, then the arm's module.

    The cosine schedule of ``configure_optimizers`` runs over the run's own steps
    (``max_epochs = steps``; the loop steps it every step). A spec with a ``term``
    gets that comparator term hooked to its head (:func:`terms.attach_term`), after
    the model is built, so that its weights are those of the arm without it.
    """
    backbone = build_backbone(spec.seed, is_wide(spec.arm))
    cls, objective, er_kwargs = model_recipe(spec.arm, spec.weight)
    ema = spec.ema
    model = cls(
        backbone,
        feature_dim(is_wide(spec.arm)),
        None,  # type: ignore[arg-type]  # no kNN loader: the study evaluates itself
        num_classes,
        max_epochs=spec.steps,
        batch_size=spec.batch,
        objective=objective,  # type: ignore[arg-type]
        ema=0.99 if ema is None else ema,
        er_kwargs=er_kwargs or None,
    )
    if spec.term is not None:
        terms.attach_term(model, spec.term)
    return model.to(memory_format=torch.channels_last)


@torch.no_grad()
def head_outputs(model: SSLMethod, x: Tensor) -> Dict[str, Tensor]:
    """The outputs of every head on ``x`` (the caller puts the model in eval mode).

    Keys as the corpus format: ``backbone``, ``projection``, ``prediction``,
    ``target_backbone``, ``target_projection`` (BYOL), ``student_logits``,
    ``teacher_logits``, ``teacher_backbone``, ``center`` (DINO),
    ``prototype_scores`` (SwAV); a key only where the model has that head.
    """
    out: Dict[str, Tensor] = {"backbone": model.features(x)}
    b = out["backbone"]
    if isinstance(model, DINO):
        projection = F.normalize(model.head.layers(b), dim=-1, p=2)
        out["projection"] = projection
        out["student_logits"] = model.head.last_layer(projection)
        out["teacher_backbone"] = model.teacher_backbone(x).flatten(start_dim=1)
        out["teacher_logits"] = model.teacher_head(out["teacher_backbone"])
        center = cast(Tensor, model.criterion.center)
        out["center"] = center.reshape(-1).float()
    elif isinstance(model, SwAV):
        out["projection"] = F.normalize(model.projection_head(b), dim=1, p=2)
        out["prototype_scores"] = model.prototypes(out["projection"])
    elif isinstance(model, BYOL):
        out["projection"] = model.projection_head(b)
        if hasattr(model, "prediction_head"):
            out["prediction"] = model.prediction_head(out["projection"])
        out["target_backbone"] = model.backbone_momentum(x).flatten(start_dim=1)
        out["target_projection"] = model.projection_head_momentum(
            out["target_backbone"]
        )
    elif isinstance(model, SimSiam):
        out["projection"] = model.projection_head(b)
        if hasattr(model, "prediction_head"):
            out["prediction"] = model.prediction_head(out["projection"])
    else:
        out["projection"] = cast(nn.Module, model.projection_head)(b)
    return out


def optimiser(model: SSLMethod) -> Tuple[Optimizer, LRScheduler]:
    """The method's optimizer and cosine schedule (over its ``max_epochs`` steps)."""
    optimizers: Any = model.configure_optimizers()
    (optimizer,), (scheduler,) = optimizers
    return cast(Optimizer, optimizer), cast(LRScheduler, scheduler)


def training_loss(model: SSLMethod, views: List[Tensor], step: int) -> Tensor:
    """The method's ``training_step`` on one batch of views, plus its comparator
    term where the run has one (:func:`terms.pop_term_loss`)."""
    loss = cast(Tensor, model.training_step((views, None, None), step))
    term = terms.pop_term_loss(model)
    return loss if term is None else loss + term


def loss_description(model: SSLMethod) -> Dict[str, Any]:
    """The loss's class and settings, for the corpus index."""
    c = model.criterion
    centering = getattr(c, "centering", None)
    if type(c).__name__ == "DINOLoss":
        centering = True
    sinkhorn = getattr(c, "use_sinkhorn", None)
    if type(c).__name__ == "SwaVLoss":
        sinkhorn = True

    def number(name: str) -> Optional[float]:
        value = getattr(c, name, None)
        return None if value is None else float(value)

    is_dino = isinstance(model, DINO)
    is_swav = isinstance(model, SwAV)
    term = getattr(model, "rescue_term", None)
    # Only runs with a comparator term carry its keys (the mechanism's are as before).
    extra = {} if term is None else {"term": term.name, "term_weight": term.weight}
    return {
        **extra,
        "class": type(c).__name__,
        "entropy_weight": number("entropy_weight"),
        "student_temp": number("student_temp") if is_dino else None,
        "teacher_temp": number("teacher_temp") if is_dino else None,
        "centering": centering if is_dino else None,
        "center_momentum": number("center_momentum") if is_dino else None,
        "kappa": number("kappa"),
        "sinkhorn": sinkhorn if is_swav else None,
        "epsilon": number("sinkhorn_epsilon") if is_swav else None,
        "temperature": number("temperature")
        if (is_swav or isinstance(model, SimCLR))
        else None,
    }
