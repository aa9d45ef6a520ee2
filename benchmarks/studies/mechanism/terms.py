"""Anti-collapse terms added to an arm's loss: lightly's regularizers and uniformity.

A *term* is added, with a fixed weight, to the loss of an arm at entropy weight 0,
so that it stands where the ER objective's entropy term stands at weight 1. Each
term reads the online (student) branch's head output of both views, unnormalized,
and does with it what its paper does (KoLeo and uniformity L2-normalize, SIGReg and
VICReg do not):

- BYOL: the prediction head's output (the projection head's without a predictor);
- SimSiam: the prediction head's output;
- DINO: the student head's bottleneck, before its L2 normalization and the
  prototype layer (``head.layers``);
- SwAV: the projection head's output, before its L2 normalization.

The weights are the published defaults, relative to the paper's main (invariance)
loss, with the method's own loss standing in for that loss at weight 1; nothing
is tuned (``benchmarks/studies/rescue_preregistration.md`` states the rule):

- ``koleo``: lightly's ``KoLeoLoss()`` per view, mean of the two views, weight 0.1
  (DINOv2's ``koleo_loss_weight``);
- ``sigreg``: lightly's ``SIGReg()`` on the two views stacked (V, N, D), weight
  0.05 / 0.95 (LeJEPA's λ = 0.05 against the invariance term's 1 - λ);
- ``vicreg``: lightly's ``VICRegLoss(lambda_param=0, mu_param=1, nu_param=0.04)``
  on the two views: VICReg's 25 / 25 / 1 divided by the invariance weight 25;
- ``uniformity``: Wang & Isola's U(z; t = 2) on the L2-normalized output
  (:func:`lightly_er.functional.uniformity`), mean of the two views, weight 1
  (lightly's ``HypersphereLoss``, alignment + lam x uniformity, default
  ``lam = 1``: alignment and uniformity weighted equally).

A forward hook on the head keeps its outputs in training mode only (the snapshots
run the heads in eval mode); :meth:`Term.pop_loss` turns the kept outputs of one
step into the weighted term and forgets them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, cast

import torch
from lightly.loss import KoLeoLoss, SIGReg, VICRegLoss
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from benchmarks.cifar.methods import BYOL, DINO, SimSiam, SwAV
from lightly_er.functional import uniformity

TermName = Literal["koleo", "sigreg", "vicreg", "uniformity"]
TERMS: Tuple[str, ...] = ("koleo", "sigreg", "vicreg", "uniformity")
"""The comparator terms, in the order of the tables."""
TERM_WEIGHTS: Dict[str, float] = {
    "koleo": 0.1,
    "sigreg": 0.05 / 0.95,
    "vicreg": 1.0,
    "uniformity": 1.0,
}
"""The weight of each term (VICReg's relative weights are inside its loss)."""
VICREG_MU = 25.0 / 25.0
VICREG_NU = 1.0 / 25.0
UNIFORMITY_T = 2.0
VIEWS = 2


def _koleo() -> Callable[[List[Tensor]], Tensor]:
    loss = KoLeoLoss()
    return lambda views: torch.stack([loss(v) for v in views]).mean()


def _sigreg() -> Callable[[List[Tensor]], Tensor]:
    loss = SIGReg()
    return lambda views: loss(torch.stack(views))


def _vicreg() -> Callable[[List[Tensor]], Tensor]:
    loss = VICRegLoss(lambda_param=0.0, mu_param=VICREG_MU, nu_param=VICREG_NU)
    return lambda views: loss(views[0], views[1])


def _uniformity() -> Callable[[List[Tensor]], Tensor]:
    def value(views: List[Tensor]) -> Tensor:
        spread = [uniformity(F.normalize(v, dim=1), t=UNIFORMITY_T) for v in views]
        return torch.stack(spread).mean()

    return value


_FACTORIES: Dict[str, Callable[[], Callable[[List[Tensor]], Tensor]]] = {
    "koleo": _koleo,
    "sigreg": _sigreg,
    "vicreg": _vicreg,
    "uniformity": _uniformity,
}


def term_input(model: nn.Module) -> nn.Module:
    """The head whose (training-mode) outputs a term reads, as the module docstring.

    Raises:
        TypeError: If the model is none of BYOL, SimSiam, DINO, SwAV.
    """
    if isinstance(model, DINO):
        return cast(nn.Module, model.head.layers)
    if isinstance(model, SwAV):
        return cast(nn.Module, model.projection_head)
    if isinstance(model, (BYOL, SimSiam)):
        prediction = getattr(model, "prediction_head", None)  # none: BYOL-nopred
        if isinstance(prediction, nn.Module):
            return prediction
        return model.projection_head
    raise TypeError(f"no comparator term for a {type(model).__name__} model")


class Term(nn.Module):
    """One comparator term of an arm: weight x value on the kept head outputs.

    Args:
        name: ``koleo``, ``sigreg``, ``vicreg`` or ``uniformity``.

    Raises:
        ValueError: For an unknown name.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in _FACTORIES:
            raise ValueError(f"term must be one of {TERMS}, got {name!r}")
        self.name = name
        self.weight = TERM_WEIGHTS[name]
        self._value = _FACTORIES[name]()
        self._kept: List[Tensor] = []
        self._handle: Optional[RemovableHandle] = None

    def attach(self, head: nn.Module) -> None:
        """Keeps the outputs of ``head`` while it is in training mode."""

        def keep(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if module.training:
                self._kept.append(output)

        self._handle = head.register_forward_hook(keep)

    def pop_loss(self) -> Tensor:
        """weight x value on the outputs kept since the last call; forgets them.

        Raises:
            RuntimeError: If the step did not run the head on exactly two views.
        """
        kept, self._kept = self._kept, []
        if len(kept) != VIEWS:
            raise RuntimeError(
                f"the {self.name} term expects the head's outputs of {VIEWS} views "
                f"per step, got {len(kept)}"
            )
        return self.weight * self._value(kept)


def attach_term(model: nn.Module, name: str) -> Term:
    """Builds the term ``name``, hooks it to the model's head, keeps it on the model.

    It is kept as ``model.rescue_term`` (no parameters; SIGReg's fixed buffers go
    into the checkpoint with the model).
    """
    term = Term(name)
    term.attach(term_input(model))
    model.rescue_term = term
    return term


def pop_term_loss(model: nn.Module) -> Optional[Tensor]:
    """The model's weighted term for the step just run, or None without a term."""
    term = getattr(model, "rescue_term", None)
    return term.pop_loss() if isinstance(term, Term) else None
