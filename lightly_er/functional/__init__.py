"""Stateless estimators of the ER bound on the mutual information between two views.

Everything here is a pure PyTorch function: no state, no distributed communication,
differentiable, in float32 or float64. Loss modules, heads and callbacks call these
functions; they never re-derive the math.

The ER bound [0] on the mutual information between two views Z1 and Z2 reads

    I(Z1; Z2) >= H(Z1) + E[log q(Z2 | Z1)]

an entropy term and a reconstruction term. Every function returns nats, and higher is
better: ER = entropy + reconstruction.

The implementation is split by concern into private modules: ``_special`` (Bessel
and vMF-normalizer numerics), ``_vmf`` and ``_kde`` (the plug-in vMF kernel entropy
and the vMF reconstruction, the authors' settings), ``_discrete`` (the ER terms on a
discrete support), ``_sphere`` (the ``estimator`` choice of the sphere entropy),
``_kernel_estimators`` and ``_samples`` (the other estimators: joe, Renyi-2,
leave-one-out, nearest neighbors, log-determinant), ``_diagnostics`` (label-free
monitors of embeddings), ``_prototypes`` (label-free monitors of prototype
assignments) and ``_checks`` (input checks). Import from here.

- [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in Multi-View
  Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
"""

from lightly_er.functional._checks import Kappa as Kappa
from lightly_er.functional._diagnostics import (
    alignment,
    collapse_score,
    dimension_score,
    effective_rank,
    participation_ratio,
    uniformity,
)
from lightly_er.functional._discrete import discrete_entropy, discrete_reconstruction
from lightly_er.functional._prototypes import (
    conditional_entropy,
    mean_kl_divergence,
    prototype_mutual_information,
    prototype_usage,
)
from lightly_er.functional._samples import log_sphere_area
from lightly_er.functional._special import log_bessel_iv, log_vmf_normalizer
from lightly_er.functional._sphere import SphereEstimator as SphereEstimator
from lightly_er.functional._sphere import (
    knn_sphere_entropy,
    logdet_sphere_entropy,
    sphere_entropy,
)
from lightly_er.functional._vmf import min_sphere_entropy, vmf_reconstruction

__all__ = [
    "log_bessel_iv",
    "log_vmf_normalizer",
    "log_sphere_area",
    "sphere_entropy",
    "knn_sphere_entropy",
    "logdet_sphere_entropy",
    "discrete_entropy",
    "vmf_reconstruction",
    "discrete_reconstruction",
    "min_sphere_entropy",
    "collapse_score",
    "effective_rank",
    "participation_ratio",
    "dimension_score",
    "alignment",
    "uniformity",
    "conditional_entropy",
    "prototype_mutual_information",
    "prototype_usage",
    "mean_kl_divergence",
]
