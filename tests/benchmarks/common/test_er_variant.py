"""Which variant of its ER loss a benchmark run trains, read from the loss."""

from __future__ import annotations

import pytest
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss

from benchmarks.common.er_options import er_variant
from lightly_er.loss import (
    ERDINOLoss,
    ERNegativeCosineSimilarity,
    ERNTXentLoss,
    ERSwaVLoss,
)


@pytest.mark.parametrize(
    "loss, variant",
    [
        (DINOLoss(), "-"),
        (SwaVLoss(), "-"),
        (NTXentLoss(), "-"),
        (NegativeCosineSimilarity(), "-"),
        (ERDINOLoss(), "centering kept"),
        (ERDINOLoss(centering=False), "paper: centering off"),
        (ERSwaVLoss(), "Sinkhorn kept"),
        (ERSwaVLoss(use_sinkhorn=False), "paper: Sinkhorn off"),
        (ERNegativeCosineSimilarity(prediction="x0"), "prediction x0"),
        (ERNTXentLoss(), "term added"),
    ],
)
def test_er_variant(loss: object, variant: str) -> None:
    assert er_variant(loss) == variant
