"""ER versions of lightly's models and modules (mirrors ``lightly.models``)."""

from lightly_er.models import modules
from lightly_er.models.modules import (
    ERBYOLPredictionHead,
    ERBYOLProjectionHead,
    ERDINOProjectionHead,
    ERSimCLRProjectionHead,
    ERSwaVProjectionHead,
    ERSwaVPrototypes,
)

__all__ = [
    "modules",
    "ERBYOLPredictionHead",
    "ERBYOLProjectionHead",
    "ERDINOProjectionHead",
    "ERSimCLRProjectionHead",
    "ERSwaVProjectionHead",
    "ERSwaVPrototypes",
]
