"""ER objectives as drop-in subclasses of lightly's loss modules.

Each adapter keeps its lightly parent's constructor arguments and ``forward``
signature, so swapping the class name in a lightly training script is the whole change.
:func:`resolve_kappa` is the one rule for the vMF concentration, and
:func:`entropy_settings` applies it to a criterion for the meters and the monitor.
"""

from lightly_er.loss._base import ERComponents
from lightly_er.loss._kappa import (
    DEFAULT_ESTIMATOR,
    DEFAULT_KAPPA,
    default_kappa,
    entropy_settings,
    resolve_kappa,
)
from lightly_er.loss.dino_er_loss import ERDINOLoss
from lightly_er.loss.er_loss import ERLoss
from lightly_er.loss.koleo_er_loss import ERKoLeoLoss
from lightly_er.loss.msn_er_loss import ERMSNLoss
from lightly_er.loss.negative_cosine_similarity_er import ERNegativeCosineSimilarity
from lightly_er.loss.ntx_ent_er_loss import ERNTXentLoss
from lightly_er.loss.pmsn_er_loss import ERPMSNLoss
from lightly_er.loss.swav_er_loss import ERSwaVLoss

__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_KAPPA",
    "ERComponents",
    "default_kappa",
    "entropy_settings",
    "resolve_kappa",
    "ERDINOLoss",
    "ERKoLeoLoss",
    "ERLoss",
    "ERMSNLoss",
    "ERNegativeCosineSimilarity",
    "ERNTXentLoss",
    "ERPMSNLoss",
    "ERSwaVLoss",
]
