"""lightly-er: entropy and reconstruction (ER) objectives for lightly.

The ER bound of Rodriguez-Galvez et al. (ICML 2023, https://arxiv.org/abs/2307.10907)
lower-bounds the mutual information between two views by an entropy term and a
reconstruction term. This package provides the estimators (``lightly_er.functional``),
drop-in ER versions of lightly's losses (``lightly_er.loss``) and heads
(``lightly_er.models``), and entropy monitoring (``lightly_er.monitoring``).
"""

import importlib
from typing import TYPE_CHECKING, Any

from lightly_er import functional, loss, models, monitoring, utils
from lightly_er.functional import (
    alignment,
    collapse_score,
    discrete_entropy,
    discrete_reconstruction,
    effective_rank,
    log_bessel_iv,
    log_vmf_normalizer,
    min_sphere_entropy,
    sphere_entropy,
    uniformity,
    vmf_reconstruction,
)
from lightly_er.loss import (
    ERComponents,
    ERDINOLoss,
    ERLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
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

if TYPE_CHECKING:
    from lightly_er.monitoring.callback import (
        CollapseAlarm,
        CollapseWarning,
        EntropyMonitor,
    )


def __getattr__(name: str) -> Any:
    # The Lightning callback loads Lightning: only when it is asked for.
    if name in ("CollapseAlarm", "CollapseWarning", "EntropyMonitor"):
        return getattr(importlib.import_module("lightly_er.monitoring.callback"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0.dev0"

__all__ = [
    "__version__",
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
    "min_sphere_entropy",
    "sphere_entropy",
    "uniformity",
    "vmf_reconstruction",
    "ERComponents",
    "ERDINOLoss",
    "ERLoss",
    "ERNegativeCosineSimilarity",
    "ERNTXentLoss",
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
