"""lightly-er: entropy and reconstruction (ER) objectives for lightly.

The ER bound of Rodriguez-Galvez et al. (ICML 2023, https://arxiv.org/abs/2307.10907)
lower-bounds the mutual information between two views by an entropy term and a
reconstruction term. This package provides the estimators (``lightly_er.functional``),
drop-in ER versions of lightly's losses and heads, and entropy monitoring.
"""

from lightly_er import functional
from lightly_er.functional import (
    discrete_entropy,
    discrete_reconstruction,
    log_bessel_iv,
    log_vmf_normalizer,
    sphere_entropy,
    vmf_reconstruction,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "__version__",
    "functional",
    "discrete_entropy",
    "discrete_reconstruction",
    "log_bessel_iv",
    "log_vmf_normalizer",
    "sphere_entropy",
    "vmf_reconstruction",
]
