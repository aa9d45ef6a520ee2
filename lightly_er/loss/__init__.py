"""ER objectives as drop-in subclasses of lightly's loss modules.

Each adapter keeps its lightly parent's constructor arguments and ``forward``
signature, so swapping the class name in a lightly training script is the whole change.
"""

from lightly_er.loss._base import (
    DEFAULT_ESTIMATOR,
    DEFAULT_KAPPA,
    ERComponents,
    default_kappa,
    entropy_settings,
)
from lightly_er.loss.dino_er_loss import ERDINOLoss
from lightly_er.loss.er_loss import ERLoss
from lightly_er.loss.negative_cosine_similarity_er import ERNegativeCosineSimilarity
from lightly_er.loss.ntx_ent_er_loss import ERNTXentLoss
from lightly_er.loss.swav_er_loss import ERSwaVLoss

__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_KAPPA",
    "ERComponents",
    "default_kappa",
    "entropy_settings",
    "ERDINOLoss",
    "ERLoss",
    "ERNegativeCosineSimilarity",
    "ERNTXentLoss",
    "ERSwaVLoss",
]
