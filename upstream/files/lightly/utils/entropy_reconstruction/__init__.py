"""Stateless estimators of the entropy and reconstruction (ER) bound [0].

The ER bound on the mutual information between two views Z1 and Z2 reads

    I(Z1; Z2) >= H(Z1) + E[log q(Z2 | Z1)]

an entropy term and a reconstruction term. Every function returns nats, and higher is
better: ER = entropy + reconstruction. The ER losses of ``lightly.loss`` call these
functions.

- [0] Rodriguez-Galvez et al., The Role of Entropy and Reconstruction in Multi-View
  Self-Supervised Learning, ICML 2023, https://arxiv.org/abs/2307.10907
"""

from lightly_er.functional._checks import Kappa as Kappa
from lightly_er.functional._discrete import discrete_entropy, discrete_reconstruction
from lightly_er.functional._special import log_vmf_normalizer
from lightly_er.functional._vmf import (
    min_sphere_entropy,
    sphere_entropy,
    vmf_reconstruction,
)

__all__ = [
    "log_vmf_normalizer",
    "sphere_entropy",
    "min_sphere_entropy",
    "vmf_reconstruction",
    "discrete_entropy",
    "discrete_reconstruction",
]
