"""lightly-er: entropy and reconstruction (ER) objectives for lightly.

The ER bound of Rodriguez-Galvez et al. (ICML 2023, https://arxiv.org/abs/2307.10907)
lower-bounds the mutual information between two views by an entropy term and a
reconstruction term. This package provides the estimators (``lightly_er.functional``),
drop-in ER versions of lightly's losses (``lightly_er.loss``) and heads
(``lightly_er.models``), and entropy monitoring (``lightly_er.monitoring``).
"""

from lightly_er import functional, loss, models, monitoring
from lightly_er.functional import (
    alignment,
    discrete_entropy,
    discrete_reconstruction,
    effective_rank,
    log_bessel_iv,
    log_vmf_normalizer,
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
from lightly_er.monitoring import (
    CollapseAlarm,
    CollapseWarning,
    EntropyMeter,
    EntropyMonitor,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "__version__",
    "functional",
    "loss",
    "models",
    "monitoring",
    "alignment",
    "discrete_entropy",
    "discrete_reconstruction",
    "effective_rank",
    "log_bessel_iv",
    "log_vmf_normalizer",
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
