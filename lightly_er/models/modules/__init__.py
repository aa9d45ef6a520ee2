"""ER versions of lightly's model modules (mirrors ``lightly.models.modules``)."""

from lightly_er.models.modules.heads import (
    ERBYOLPredictionHead,
    ERBYOLProjectionHead,
    ERDINOProjectionHead,
    ERSimCLRProjectionHead,
    ERSwaVProjectionHead,
    ERSwaVPrototypes,
)

__all__ = [
    "ERBYOLPredictionHead",
    "ERBYOLProjectionHead",
    "ERDINOProjectionHead",
    "ERSimCLRProjectionHead",
    "ERSwaVProjectionHead",
    "ERSwaVPrototypes",
]
