"""ER objectives as drop-in subclasses of lightly's loss modules.

Each loss keeps its lightly parent's constructor arguments, ``forward`` signature and
anti-collapse device, and adds the entropy term with at most three keyword
arguments: ``kappa``, ``entropy_weight`` and ``estimator``.
"""

import warnings
from typing import Any

from lightly_er.loss._base import ERComponents
from lightly_er.loss.dino_er_loss import ERDINOLoss
from lightly_er.loss.er_loss import ERLoss
from lightly_er.loss.koleo_er_loss import ERKoLeoLoss
from lightly_er.loss.msn_er_loss import ERMSNLoss
from lightly_er.loss.negative_cosine_similarity_er import ERNegativeCosineSimilarity
from lightly_er.loss.ntx_ent_er_loss import ERNTXentLoss
from lightly_er.loss.pmsn_er_loss import ERPMSNLoss
from lightly_er.loss.swav_er_loss import ERSwaVLoss

# Names this package exported in 0.1 that are not losses: where they live now.
_MOVED = {
    "DEFAULT_ESTIMATOR": "lightly_er.loss._kappa",
    "DEFAULT_KAPPA": "lightly_er.loss._kappa",
    "default_kappa": "lightly_er.loss._kappa",
    "entropy_settings": "lightly_er.monitoring",
    "resolve_kappa": "lightly_er.monitoring",
}


def __getattr__(name: str) -> Any:
    # The old names keep working for one release, with one warning each.
    if name not in _MOVED:
        raise AttributeError(f"module 'lightly_er.loss' has no attribute {name!r}")
    import importlib

    where = _MOVED[name]
    warnings.warn(
        f"lightly_er.loss.{name} is deprecated and will be removed in the next "
        f"release; import it from {where}",
        DeprecationWarning,
        stacklevel=2,
    )
    value = getattr(importlib.import_module("lightly_er.loss._kappa"), name)
    globals()[name] = value
    return value


__all__ = [
    "ERComponents",
    "ERDINOLoss",
    "ERKoLeoLoss",
    "ERLoss",
    "ERMSNLoss",
    "ERNegativeCosineSimilarity",
    "ERNTXentLoss",
    "ERPMSNLoss",
    "ERSwaVLoss",
]
