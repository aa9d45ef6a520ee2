"""ER versions of lightly's projection and prediction heads.

Each ER head subclasses its lightly parent with the parent's constructor arguments
unchanged, so that swapping the class is the whole change, and adds:

- an output on the support of the ER objective [0]: the heads whose embeddings live on
  the unit sphere (SimCLR, BYOL, SwAV projection) return them L2-normalised; the
  prototype heads (DINO, SwAV prototypes) return the parent's prototype scores, the
  logits of a discrete distribution;
- an :class:`lightly_er.monitoring.EntropyMeter` in ``entropy_meter``, updated (detached,
  without autograd) on every ``meter_every_n``-th forward pass in training mode, which
  :class:`lightly_er.monitoring.EntropyMonitor` picks up automatically. The meter is a
  plain attribute, not a submodule: the ``state_dict`` is the parent's. It measures
  the batch of its own process (no collective inside ``forward``).

What the normalised output changes in lightly's training code: lightly's
``NTXentLoss`` (SimCLR, MoCo), ``NegativeCosineSimilarity`` (BYOL, SimSiam) and the
``SwaVPrototypes`` input (lightly's SwAV normalises the projection before it) are
invariant to the norm of their inputs, so the losses compute the same values. One
place does see the difference: BYOL feeds the projection z into the prediction head,
``p = prediction_head(projection_head(y))``, which with :class:`ERBYOLProjectionHead`
receives the unit vector z / ||z|| instead of z. The predictor starts with a linear
layer and batch norm, which absorbs a common scale but not the per-sample norms; use
lightly's ``BYOLProjectionHead`` with an ``ERBYOLPredictionHead`` where the predictor
must see the raw projection.

- [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in Multi-View
  Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
"""

from __future__ import annotations

from typing import List, Optional, Union

from lightly.models.modules.heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    SimCLRProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
)
from torch import Tensor, nn
from torch.nn import functional as F

from lightly_er.monitoring import EntropyMeter


def _sphere_meter(kappa: float, meter_every_n: int) -> EntropyMeter:
    return EntropyMeter("sphere", kappa=kappa, every_n=meter_every_n)


def _discrete_meter(temperature: float, meter_every_n: int) -> EntropyMeter:
    return EntropyMeter(
        "discrete", inputs="logits", temperature=temperature, every_n=meter_every_n
    )


def _meter(module: nn.Module, meter: EntropyMeter, out: Tensor) -> None:
    """Feeds out to the meter in training mode; a counter increment when not due."""
    if module.training:
        meter.update(out)


class ERSimCLRProjectionHead(SimCLRProjectionHead):  # type: ignore[misc]
    """SimCLR projection head with L2-normalised output and an entropy meter.

    The parent's MLP [1], followed by L2 normalisation: the output lies on the unit
    sphere, the support of the ER objective [0]. ``NTXentLoss`` normalises its inputs,
    so it computes the same loss as with the parent's output.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        input_dim, hidden_dim, output_dim, num_layers, batch_norm:
            As :class:`lightly.models.modules.heads.SimCLRProjectionHead`.
        kappa:
            Concentration of the vMF kernel of the meter's entropy estimate.
        meter_every_n:
            The meter measures every n-th forward pass in training mode.

    Attributes:
        entropy_meter:
            The :class:`lightly_er.monitoring.EntropyMeter` (sphere support).

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERSimCLRProjectionHead
        >>> head = ERSimCLRProjectionHead(32, 64, 16, meter_every_n=1)
        >>> z = head(torch.randn(8, 32))
        >>> torch.allclose(z.norm(dim=1), torch.ones(8))
        True
        >>> sorted(head.entropy_meter.latest)[:2]
        ['effective_rank', 'entropy']
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        *,
        kappa: float = 10.0,
        meter_every_n: int = 50,
    ) -> None:
        """Initialises the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim, num_layers, batch_norm)
        self.entropy_meter = _sphere_meter(kappa, meter_every_n)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the L2-normalised projection of x, shape (batch_size, output_dim)."""
        z = F.normalize(super().forward(x), dim=1)
        _meter(self, self.entropy_meter, z)
        return z


class ERBYOLProjectionHead(BYOLProjectionHead):  # type: ignore[misc]
    """BYOL projection head with L2-normalised output and an entropy meter.

    The parent's MLP [1], followed by L2 normalisation onto the unit sphere, the
    support of the ER objective [0]. BYOL's loss is a cosine similarity and does not
    see the norm, but BYOL's prediction head takes this output as its input: see the
    module docstring.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Args:
        input_dim, hidden_dim, output_dim:
            As :class:`lightly.models.modules.heads.BYOLProjectionHead`.
        kappa:
            Concentration of the vMF kernel of the meter's entropy estimate.
        meter_every_n:
            The meter measures every n-th forward pass in training mode.

    Attributes:
        entropy_meter:
            The :class:`lightly_er.monitoring.EntropyMeter` (sphere support).

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERBYOLProjectionHead
        >>> head = ERBYOLProjectionHead(32, 64, 16)
        >>> head(torch.randn(8, 32)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 4096,
        output_dim: int = 256,
        *,
        kappa: float = 10.0,
        meter_every_n: int = 50,
    ) -> None:
        """Initialises the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim)
        self.entropy_meter = _sphere_meter(kappa, meter_every_n)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the L2-normalised projection of x, shape (batch_size, output_dim)."""
        z = F.normalize(super().forward(x), dim=1)
        _meter(self, self.entropy_meter, z)
        return z


class ERBYOLPredictionHead(BYOLPredictionHead):  # type: ignore[misc]
    """BYOL prediction head with L2-normalised output and an entropy meter.

    The parent's MLP [1], followed by L2 normalisation onto the unit sphere: the
    predicted mean direction of the vMF reconstruction density of ER [0]. BYOL's
    negative cosine similarity computes the same loss as with the parent's output.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Args:
        input_dim, hidden_dim, output_dim:
            As :class:`lightly.models.modules.heads.BYOLPredictionHead`.
        kappa:
            Concentration of the vMF kernel of the meter's entropy estimate.
        meter_every_n:
            The meter measures every n-th forward pass in training mode.

    Attributes:
        entropy_meter:
            The :class:`lightly_er.monitoring.EntropyMeter` (sphere support).

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERBYOLPredictionHead
        >>> head = ERBYOLPredictionHead(16, 64, 16)
        >>> head(torch.randn(8, 16)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        input_dim: int = 256,
        hidden_dim: int = 4096,
        output_dim: int = 256,
        *,
        kappa: float = 10.0,
        meter_every_n: int = 50,
    ) -> None:
        """Initialises the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim)
        self.entropy_meter = _sphere_meter(kappa, meter_every_n)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the L2-normalised prediction, shape (batch_size, output_dim)."""
        p = F.normalize(super().forward(x), dim=1)
        _meter(self, self.entropy_meter, p)
        return p


class ERDINOProjectionHead(DINOProjectionHead):  # type: ignore[misc]
    """DINO projection head with an entropy meter on its prototype scores.

    The output is the parent's [1]: the scores of the ``output_dim`` prototypes,
    the logits of the discrete distribution on which DINO-ER [0] estimates the
    entropy. The meter measures softmax(scores / temperature), the student's
    distribution of :class:`lightly_er.loss.dino_er_loss.ERDINOLoss` at its default
    ``student_temp`` of 0.1.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] DINO, 2021, https://arxiv.org/abs/2104.14294

    Args:
        input_dim, hidden_dim, bottleneck_dim, output_dim, batch_norm,
        freeze_last_layer, norm_last_layer:
            As :class:`lightly.models.modules.heads.DINOProjectionHead`.
        temperature:
            Softmax temperature with which the meter turns scores into distributions.
        meter_every_n:
            The meter measures every n-th forward pass in training mode.

    Attributes:
        entropy_meter:
            The :class:`lightly_er.monitoring.EntropyMeter` (discrete support).

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERDINOProjectionHead
        >>> head = ERDINOProjectionHead(32, 64, 16, output_dim=128, meter_every_n=1)
        >>> head(torch.randn(8, 32)).shape
        torch.Size([8, 128])
        >>> 0.0 <= head.entropy_meter.latest["normalized_entropy"] <= 1.0
        True
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        output_dim: int = 65536,
        batch_norm: bool = False,
        freeze_last_layer: int = -1,
        norm_last_layer: bool = True,
        *,
        temperature: float = 0.1,
        meter_every_n: int = 50,
    ) -> None:
        """Initialises the head; see the class docstring for the arguments."""
        super().__init__(
            input_dim,
            hidden_dim,
            bottleneck_dim,
            output_dim,
            batch_norm,
            freeze_last_layer,
            norm_last_layer,
        )
        self.entropy_meter = _discrete_meter(temperature, meter_every_n)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the prototype scores, shape (batch_size, output_dim)."""
        scores: Tensor = super().forward(x)
        _meter(self, self.entropy_meter, scores)
        return scores


class ERSwaVProjectionHead(SwaVProjectionHead):  # type: ignore[misc]
    """SwAV projection head with L2-normalised output and an entropy meter.

    The parent's MLP [1], followed by the L2 normalisation that SwAV applies before
    the prototypes anyway: the output lies on the unit sphere.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SwAV, 2020, https://arxiv.org/abs/2006.09882

    Args:
        input_dim, hidden_dim, output_dim:
            As :class:`lightly.models.modules.heads.SwaVProjectionHead`.
        kappa:
            Concentration of the vMF kernel of the meter's entropy estimate.
        meter_every_n:
            The meter measures every n-th forward pass in training mode.

    Attributes:
        entropy_meter:
            The :class:`lightly_er.monitoring.EntropyMeter` (sphere support).

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERSwaVProjectionHead
        >>> head = ERSwaVProjectionHead(32, 64, 16)
        >>> head(torch.randn(8, 32)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        *,
        kappa: float = 10.0,
        meter_every_n: int = 50,
    ) -> None:
        """Initialises the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim)
        self.entropy_meter = _sphere_meter(kappa, meter_every_n)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the L2-normalised projection of x, shape (batch_size, output_dim)."""
        z = F.normalize(super().forward(x), dim=1)
        _meter(self, self.entropy_meter, z)
        return z


class ERSwaVPrototypes(SwaVPrototypes):  # type: ignore[misc]
    """SwAV prototypes with an entropy meter on the prototype scores.

    The output is the parent's [1]: the scores of the prototypes, one tensor, or a
    list of tensors with several prototype heads; ``step`` freezes the prototypes as
    in the parent. The meter measures softmax(scores / temperature) of the first
    prototype head, the distribution of :class:`lightly_er.loss.swav_er_loss.ERSwaVLoss`
    at its default temperature of 0.1.

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SwAV, 2020, https://arxiv.org/abs/2006.09882

    Args:
        input_dim, n_prototypes, n_steps_frozen_prototypes:
            As :class:`lightly.models.modules.heads.SwaVPrototypes`.
        temperature:
            Softmax temperature with which the meter turns scores into distributions.
        meter_every_n:
            The meter measures every n-th forward pass in training mode.

    Attributes:
        entropy_meter:
            The :class:`lightly_er.monitoring.EntropyMeter` (discrete support).

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERSwaVPrototypes
        >>> prototypes = ERSwaVPrototypes(16, n_prototypes=[32, 8])
        >>> [scores.shape[1] for scores in prototypes(torch.randn(4, 16))]
        [32, 8]
    """

    def __init__(
        self,
        input_dim: int = 128,
        n_prototypes: Union[List[int], int] = 3000,
        n_steps_frozen_prototypes: int = 0,
        *,
        temperature: float = 0.1,
        meter_every_n: int = 50,
    ) -> None:
        """Initialises the prototypes; see the class docstring for the arguments."""
        super().__init__(input_dim, n_prototypes, n_steps_frozen_prototypes)
        self.entropy_meter = _discrete_meter(temperature, meter_every_n)

    def forward(
        self, x: Tensor, step: Optional[int] = None
    ) -> Union[Tensor, List[Tensor]]:
        """Returns the prototype scores, as the parent."""
        out: Union[Tensor, List[Tensor]] = super().forward(x, step)
        _meter(self, self.entropy_meter, out if isinstance(out, Tensor) else out[0])
        return out


__all__ = [
    "ERBYOLPredictionHead",
    "ERBYOLProjectionHead",
    "ERDINOProjectionHead",
    "ERSimCLRProjectionHead",
    "ERSwaVProjectionHead",
    "ERSwaVPrototypes",
]
