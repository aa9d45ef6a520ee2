"""ER versions of lightly's projection and prediction heads.

Each ER head subclasses its lightly parent with the parent's constructor arguments and
``forward`` unchanged: it returns exactly what the parent returns, bit for bit, and
its ``state_dict`` is the parent's. What it adds (:class:`MeteredHead`) is an
:class:`lightly_er.monitoring.EntropyMeter` in ``entropy_meter`` (a plain attribute,
not a submodule) that says how the head's output is measured: on the unit sphere at
a vMF concentration ``kappa`` (projection and prediction heads), or as a discrete
distribution softmax(scores / temperature) (DINO's head, SwAV's prototypes).
:class:`lightly_er.monitoring.EntropyMonitor` finds the ER heads of a model and
measures them at its cadence; a plain PyTorch loop can call
``head.entropy_meter.update(output)`` itself. ``kappa=None`` (the default) lets the
monitor take the kappa of the model's loss, by the rule of
:func:`lightly_er.loss.resolve_kappa`, and means 10 otherwise; ``temperature=None``
likewise takes the loss's softmax temperature, and means 0.1 otherwise.
docs/architecture.md says why the heads are kept now that the monitor also finds
lightly's own heads by name.

- [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
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

from lightly_er.monitoring.meter import EntropyMeter, Support


class MeteredHead:
    """What every ER head adds to its lightly parent: an ``entropy_meter``.

    Attributes:
        entropy_meter:
            The :class:`lightly_er.monitoring.EntropyMeter` of the head's output.
    """

    entropy_meter: EntropyMeter

    def _attach_meter(
        self,
        support: Support,
        kappa: Optional[float] = None,
        temperature: Optional[float] = None,
    ) -> None:
        # A plain attribute (EntropyMeter is no nn.Module): the parameters, buffers,
        # submodules and state_dict stay exactly the parent's.
        self.entropy_meter = EntropyMeter(support, kappa=kappa, temperature=temperature)


class ERSimCLRProjectionHead(MeteredHead, SimCLRProjectionHead):
    """SimCLR projection head [1] with an entropy meter on the unit sphere [0].

    Arguments as :class:`lightly.models.modules.heads.SimCLRProjectionHead`, plus
    ``kappa``, the vMF concentration of the meter (None: the loss's; see the module).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERSimCLRProjectionHead
        >>> head = ERSimCLRProjectionHead(32, 64, 16, kappa=10.0)
        >>> z = head(torch.randn(8, 32))  # what SimCLRProjectionHead returns
        >>> metrics = head.entropy_meter.update(z)
        >>> 0.0 <= metrics["collapse_score"] <= 1.0
        True
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        *,
        kappa: Optional[float] = None,
    ) -> None:
        """Initializes the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim, num_layers, batch_norm)
        self._attach_meter("sphere", kappa=kappa)


class ERBYOLProjectionHead(MeteredHead, BYOLProjectionHead):
    """BYOL projection head [1] with an entropy meter on the unit sphere [0].

    Arguments as :class:`lightly.models.modules.heads.BYOLProjectionHead`, plus
    ``kappa`` (see :class:`ERSimCLRProjectionHead`).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERBYOLProjectionHead
        >>> ERBYOLProjectionHead(32, 64, 16)(torch.randn(8, 32)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 4096,
        output_dim: int = 256,
        *,
        kappa: Optional[float] = None,
    ) -> None:
        """Initializes the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim)
        self._attach_meter("sphere", kappa=kappa)


class ERBYOLPredictionHead(MeteredHead, BYOLPredictionHead):
    """BYOL prediction head [1] with an entropy meter on the unit sphere [0].

    The prediction is what BYOL-ER's entropy term is estimated on. Arguments as
    :class:`lightly.models.modules.heads.BYOLPredictionHead`, plus ``kappa`` (see
    :class:`ERSimCLRProjectionHead`).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERBYOLPredictionHead
        >>> ERBYOLPredictionHead(16, 64, 16)(torch.randn(8, 16)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        input_dim: int = 256,
        hidden_dim: int = 4096,
        output_dim: int = 256,
        *,
        kappa: Optional[float] = None,
    ) -> None:
        """Initializes the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim)
        self._attach_meter("sphere", kappa=kappa)


class ERDINOProjectionHead(MeteredHead, DINOProjectionHead):
    """DINO projection head [1] with an entropy meter on its prototype scores [0].

    The meter measures softmax(scores / temperature), the student's distribution of
    :class:`lightly_er.loss.ERDINOLoss`. Arguments as
    :class:`lightly.models.modules.heads.DINOProjectionHead`, plus ``temperature``,
    the softmax temperature of the meter (None: the loss's student temperature, see
    the module).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] DINO, 2021, https://arxiv.org/abs/2104.14294

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERDINOProjectionHead
        >>> head = ERDINOProjectionHead(32, 64, 16, output_dim=128)
        >>> head(torch.randn(8, 32)).shape
        torch.Size([8, 128])
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
        temperature: Optional[float] = None,
    ) -> None:
        """Initializes the head; see the class docstring for the arguments."""
        super().__init__(
            input_dim,
            hidden_dim,
            bottleneck_dim,
            output_dim,
            batch_norm,
            freeze_last_layer,
            norm_last_layer,
        )
        self._attach_meter("discrete", temperature=temperature)


class ERSwaVProjectionHead(MeteredHead, SwaVProjectionHead):
    """SwAV projection head [1] with an entropy meter on the unit sphere [0].

    Arguments as :class:`lightly.models.modules.heads.SwaVProjectionHead`, plus
    ``kappa`` (see :class:`ERSimCLRProjectionHead`).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SwAV, 2020, https://arxiv.org/abs/2006.09882

    Examples:
        >>> import torch
        >>> from lightly_er.models.modules import ERSwaVProjectionHead
        >>> ERSwaVProjectionHead(32, 64, 16)(torch.randn(8, 32)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        *,
        kappa: Optional[float] = None,
    ) -> None:
        """Initializes the head; see the class docstring for the arguments."""
        super().__init__(input_dim, hidden_dim, output_dim)
        self._attach_meter("sphere", kappa=kappa)


class ERSwaVPrototypes(MeteredHead, SwaVPrototypes):
    """SwAV prototypes [1] with an entropy meter on the prototype scores [0].

    The meter measures softmax(scores / temperature), the prediction of
    :class:`lightly_er.loss.ERSwaVLoss` (of the first prototype set when there are
    several). Arguments as :class:`lightly.models.modules.heads.SwaVPrototypes`,
    plus ``temperature`` (see :class:`ERDINOProjectionHead`).

    - [0] Rodriguez-Galvez et al., ICML 2023, https://arxiv.org/abs/2307.10907
    - [1] SwAV, 2020, https://arxiv.org/abs/2006.09882

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
        temperature: Optional[float] = None,
    ) -> None:
        """Initializes the prototypes; see the class docstring for the arguments."""
        super().__init__(input_dim, n_prototypes, n_steps_frozen_prototypes)
        self._attach_meter("discrete", temperature=temperature)


__all__ = [
    "ERBYOLPredictionHead",
    "ERBYOLProjectionHead",
    "ERDINOProjectionHead",
    "ERSimCLRProjectionHead",
    "ERSwaVProjectionHead",
    "ERSwaVPrototypes",
]
