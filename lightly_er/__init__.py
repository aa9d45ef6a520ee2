"""lightly-er: entropy and reconstruction (ER) objectives for lightly.

The ER bound of Rodriguez-Galvez et al. (ICML 2023, https://arxiv.org/abs/2307.10907)
lower-bounds the mutual information between two views by an entropy term and a
reconstruction term. This package provides the estimators (``lightly_er.functional``),
drop-in ER versions of lightly's losses (``lightly_er.loss``) and heads
(``lightly_er.models``), and entropy monitoring (``lightly_er.monitoring``).

The names below are imported on first use: ``import lightly_er`` loads nothing
heavy, and ``import lightly_er.functional`` needs neither lightly's losses (which
import torchvision, and through it ``torch._dynamo``) nor Lightning.
"""

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    from lightly_er import experimental, functional, loss, models, monitoring, utils
    from lightly_er.functional import (
        alignment,
        collapse_score,
        discrete_entropy,
        discrete_reconstruction,
        effective_rank,
        knn_sphere_entropy,
        log_bessel_iv,
        log_sphere_area,
        log_vmf_normalizer,
        logdet_sphere_entropy,
        min_sphere_entropy,
        sphere_entropy,
        uniformity,
        vmf_reconstruction,
    )
    from lightly_er.loss import (
        ERComponents,
        ERDINOLoss,
        ERKoLeoLoss,
        ERLoss,
        ERMSNLoss,
        ERNegativeCosineSimilarity,
        ERNTXentLoss,
        ERPMSNLoss,
        ERSwaVLoss,
    )
    from lightly_er.models import (
        ERBYOLPredictionHead,
        ERBYOLProjectionHead,
        ERDINOProjectionHead,
        ERSimCLRProjectionHead,
        ERSwaVProjectionHead,
        ERSwaVPrototypes,
    )
    from lightly_er.monitoring import EntropyMeter
    from lightly_er.monitoring.callback import EntropyMonitor
    from lightly_er.monitoring.rules import CollapseAlarm, CollapseWarning

__version__ = "0.1.0.dev0"

_SUBMODULES = ("experimental", "functional", "loss", "models", "monitoring", "utils")
# Where each re-exported name lives. The Lightning callback loads Lightning: only
# when it is asked for.
_HOMES: Dict[str, str] = {
    "alignment": "lightly_er.functional",
    "collapse_score": "lightly_er.functional",
    "discrete_entropy": "lightly_er.functional",
    "discrete_reconstruction": "lightly_er.functional",
    "effective_rank": "lightly_er.functional",
    "log_bessel_iv": "lightly_er.functional",
    "log_vmf_normalizer": "lightly_er.functional",
    "log_sphere_area": "lightly_er.functional",
    "knn_sphere_entropy": "lightly_er.functional",
    "logdet_sphere_entropy": "lightly_er.functional",
    "min_sphere_entropy": "lightly_er.functional",
    "sphere_entropy": "lightly_er.functional",
    "uniformity": "lightly_er.functional",
    "vmf_reconstruction": "lightly_er.functional",
    "ERComponents": "lightly_er.loss",
    "ERDINOLoss": "lightly_er.loss",
    "ERKoLeoLoss": "lightly_er.loss",
    "ERLoss": "lightly_er.loss",
    "ERMSNLoss": "lightly_er.loss",
    "ERNegativeCosineSimilarity": "lightly_er.loss",
    "ERNTXentLoss": "lightly_er.loss",
    "ERPMSNLoss": "lightly_er.loss",
    "ERSwaVLoss": "lightly_er.loss",
    "ERBYOLPredictionHead": "lightly_er.models",
    "ERBYOLProjectionHead": "lightly_er.models",
    "ERDINOProjectionHead": "lightly_er.models",
    "ERSimCLRProjectionHead": "lightly_er.models",
    "ERSwaVProjectionHead": "lightly_er.models",
    "ERSwaVPrototypes": "lightly_er.models",
    "EntropyMeter": "lightly_er.monitoring",
    "CollapseAlarm": "lightly_er.monitoring.rules",
    "CollapseWarning": "lightly_er.monitoring.rules",
    "EntropyMonitor": "lightly_er.monitoring.callback",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"lightly_er.{name}")
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    "experimental",
    "functional",
    "loss",
    "models",
    "monitoring",
    "utils",
    "alignment",
    "collapse_score",
    "discrete_entropy",
    "discrete_reconstruction",
    "effective_rank",
    "log_bessel_iv",
    "log_vmf_normalizer",
    "log_sphere_area",
    "knn_sphere_entropy",
    "logdet_sphere_entropy",
    "min_sphere_entropy",
    "sphere_entropy",
    "uniformity",
    "vmf_reconstruction",
    "ERComponents",
    "ERDINOLoss",
    "ERKoLeoLoss",
    "ERLoss",
    "ERMSNLoss",
    "ERNegativeCosineSimilarity",
    "ERNTXentLoss",
    "ERPMSNLoss",
    "ERSwaVLoss",
    "ERBYOLPredictionHead",
    "ERBYOLProjectionHead",
    "ERDINOProjectionHead",
    "ERSimCLRProjectionHead",
    "ERSwaVProjectionHead",
    "ERSwaVPrototypes",
    "CollapseAlarm",
    "CollapseWarning",
    "EntropyMeter",
    "EntropyMonitor",
]
